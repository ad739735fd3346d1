"""Which visitors do not count toward a link's visit limit: crawlers and link previewers.

Chat apps fetch every link posted to show a preview (Slack, WhatsApp,
Telegram, Discord, Facebook), and a limited link shared once would be used
up by them. The detector is `crawlerdetect` (its pattern list is kept up to
date upstream); it costs ~160 us per new User-Agent, so answers are
remembered per User-Agent string. Only visits of links with ``max_visits``
ask: everything else about visitors happens in the visit consumer.
"""

from __future__ import annotations

import functools

from crawlerdetect import CrawlerDetect

_DETECTOR = CrawlerDetect()


@functools.lru_cache(maxsize=10_000)
def is_bot(user_agent: str) -> bool:
    if not user_agent:
        return True  # no User-Agent at all: no browser sends none
    return bool(_DETECTOR.isCrawler(user_agent[:512]))


def user_agent_of(scope) -> str:
    for name, value in scope["headers"]:
        if name == b"user-agent":
            return value.decode("latin-1")
    return ""
