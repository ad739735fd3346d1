"""Which visitors do not count toward a link's visit limit: crawlers, link previewers, scripts.

Chat apps fetch every link posted to show a preview (Slack, WhatsApp,
Telegram, Discord, Facebook), and a limited link shared once would be used
up by them. The decision is the visit consumer's own (service.visits.enrich:
ua-parser, crawlerdetect and a few rules of ours), so a link's counted visits
and its visit limit count the same visitors. It is remembered per
User-Agent string; only visits of links with ``max_visits`` ask for it here,
everything else about visitors happens in the consumer.
"""

from __future__ import annotations

from ..visits.enrich import Enricher

_ENRICHER = Enricher()


def is_bot(user_agent: str) -> bool:
    return _ENRICHER.agent(user_agent[:512]).bot


def user_agent_of(scope) -> str:
    for name, value in scope["headers"]:
        if name == b"user-agent":
            return value.decode("latin-1")
    return ""
