"""Fold visit events into additions to the aggregates, in memory (no I/O).

A ``Delta`` is what one batch of stream entries adds to the SQL aggregates
(aggregates.py applies it):

- per (link, day): visits, bot visits; unique visitors come from SQL, which
  alone knows whether a visitor was seen before that day;
- per (link, day, dimension, value) and per (link, month, dimension, value):
  visits and bot visits, for the dimensions referrer, country, browser, os,
  device (the monthly rows make a year of stats a few thousand rows to add up,
  not a hundred thousand);
- per (day, status): orphan visits (404, 410) and bot ones;
- per link: visits and bot visits so far;
- the (link, day, visitor) triples seen, with whether the visitor is a bot.

Every figure of a link is also added to link id 0, the whole service, so
``GET /api/v1/stats`` reads as few rows as a link's stats. Days are UTC.
Visits are first counted per distinct (link, day, client), so the cost per
visit is one dictionary update; the per-dimension rows are made per distinct
client.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from .anonymise import day_date
from .enrich import UNKNOWN, Enricher
from .schema import Envelope, InvalidEntry

SERVICE = 0  # the link id of the whole service's aggregates
ORPHAN = frozenset({404, 410})
DIMENSIONS = ("referrer", "country", "browser", "os", "device")
DIRECT = "direct"  # the referrer of visits that had none
_MS_PER_DAY = 86_400_000


def _counter() -> list[int]:
    return [0, 0]


@dataclass
class Delta:
    """What a batch adds to the aggregates: [visits, bots] per key."""

    days: defaultdict = field(default_factory=lambda: defaultdict(_counter))
    breakdowns: defaultdict = field(default_factory=lambda: defaultdict(_counter))
    months: defaultdict = field(default_factory=lambda: defaultdict(_counter))
    orphans: defaultdict = field(default_factory=lambda: defaultdict(_counter))
    totals: defaultdict = field(default_factory=lambda: defaultdict(_counter))
    visitors: dict = field(default_factory=dict)  # (link id, day, visitor as int64) -> bot
    visits: int = 0

    @property
    def empty(self) -> bool:
        return not self.visits


class Folder:
    """Adds envelopes to a Delta; `resolve` maps a code to its link id for events that lack one."""

    def __init__(self, enricher: Enricher) -> None:
        self._enricher = enricher
        self._dates: dict[int, tuple[date, date]] = {}

    def _days(self, day: int) -> tuple[date, date]:
        known = self._dates.get(day)
        if known is None:
            on = day_date(day)
            known = self._dates[day] = (on, on.replace(day=1))
        return known

    def count(self, envelope: Envelope, groups: defaultdict, orphans: defaultdict,
              link_of_code: dict[str, int | None]) -> int:
        """Count one envelope's visits into `groups` ((link, day, client) -> [visits, bots]) and `orphans`.

        Raises InvalidEntry if the envelope is malformed; then nothing of it is counted.
        """
        agent, country = self._enricher.agent, self._enricher.country
        local_groups: defaultdict = defaultdict(int)
        local_orphans: defaultdict = defaultdict(_counter)
        try:
            clients = []
            for network, visitor, user_agent, referrer_host, _path, *_ in envelope.clients:
                seen = agent(user_agent if isinstance(user_agent, str) else "")
                clients.append((referrer_host or DIRECT, country(network), seen,
                                None if visitor is None else int.from_bytes(bytes.fromhex(visitor), "big", signed=True)))
            for ts, link_id, code, status, _method, at, *_ in envelope.visits:
                day = ts // _MS_PER_DAY
                if status in ORPHAN:
                    local_orphans[(day, status)][clients[at][2].bot] += 1
                    continue
                if link_id is None:
                    link_id = link_of_code.get(code)
                    if link_id is None:  # a code no link has any more: nothing to count it against
                        continue
                local_groups[(link_id, day, at)] += 1
            merged = []
            for (link_id, day, at), count in local_groups.items():
                if at < 0:
                    raise IndexError(f"client {at}")
                merged.append(((link_id, day, clients[at]), count))
        except (TypeError, ValueError, IndexError, AttributeError) as exc:
            raise InvalidEntry(f"malformed visit: {exc}") from None
        for key, count in merged:
            groups[key] += count
        for key, (humans, bots) in local_orphans.items():
            orphans[key][0] += humans
            orphans[key][1] += bots
        return len(envelope.visits)

    def delta(self, groups: defaultdict, orphans: defaultdict, visits: int) -> Delta:
        """The aggregate rows of counted groups."""
        out = Delta(visits=visits)
        days, breakdowns, months, totals, visitors = out.days, out.breakdowns, out.months, out.totals, out.visitors
        for (link_id, day, (referrer, country, agent, visitor)), count in groups.items():
            on, month = self._days(day)
            bot = 1 if agent.bot else 0
            values = (referrer, country, agent.browser, agent.os, agent.device)
            totals[link_id][bot] += count
            for target in (link_id, SERVICE):
                days[(target, on)][bot] += count
                for dimension, value in zip(DIMENSIONS, values):
                    breakdowns[(target, on, dimension, value or UNKNOWN)][bot] += count
                    months[(target, month, dimension, value or UNKNOWN)][bot] += count
                if visitor is not None:
                    visitors[(target, on, visitor)] = bool(bot)
        for (day, status), counts in orphans.items():
            out.orphans[(self._days(day)[0], status)] = counts
        return out
