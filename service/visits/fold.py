"""Fold visit events into additions to the aggregates, in memory (no I/O).

A ``Delta`` is what one batch of stream entries adds to the SQL aggregates:
its visits counted per (link, day, kind of client), where a kind is what the
aggregates tell apart (referrer, country, browser, OS, device type, bot, and
the source: ``qr`` for a visit through the link's QR code, else ``link``), the
visitor hashes seen per (link, day), orphan visits (404, 410) per (day,
status) and each link's total. aggregates.py hands the groups to SQL, which
adds them up per day and per (day, dimension, value) in a few set-based
statements: a long tail of links visited once makes a few rows per visit,
and SQL adds those up in C, not Python. The (month, dimension, value) rows
are added up from the daily ones once a month closes (aggregates.roll_up).

Every figure of a link is also added to link id 0, the whole service, so
``GET /api/v1/stats`` reads as few rows as a link's stats. Days are UTC. A
visit costs one dictionary update here; the rest is per distinct kind.
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
DIMENSIONS = ("referrer", "country", "browser", "os", "device", "source")
# The values of "source": how the visitor came, by the link's QR code or any other way.
QR, LINK = "qr", "link"
DIRECT = "direct"  # the referrer of visits that had none
_MS_PER_DAY = 86_400_000
KIND_CACHE_SIZE = 100_000


def _counter() -> list[int]:
    return [0, 0]


@dataclass
class Delta:
    """What a batch adds to the aggregates, as rows SQL adds up (aggregates.add).

    ``groups``: (link id, day, month, referrer, country, browser, os, device,
    bot, visits), one per link, day and kind of client (and per day and kind
    for link 0, the whole service); ``visitors``: (link id, day, visitor hash,
    bot), each once; ``orphans``: (day, status) -> [visits, bots];
    ``totals``: link id -> [visits, bots].
    """

    groups: list = field(default_factory=list)
    visitors: list = field(default_factory=list)
    orphans: dict = field(default_factory=dict)
    totals: defaultdict = field(default_factory=lambda: defaultdict(_counter))
    visits: int = 0

    @property
    def empty(self) -> bool:
        return not self.visits


class Folder:
    """Adds envelopes to a Delta; `resolve` maps a code to its link id for events that lack one."""

    def __init__(self, enricher: Enricher) -> None:
        self._enricher = enricher
        self._dates: dict[int, tuple[date, date]] = {}
        self._kinds: dict[tuple, tuple] = {}

    def _days(self, day: int) -> tuple[date, date]:
        known = self._dates.get(day)
        if known is None:
            on = day_date(day)
            known = self._dates[day] = (on, on.replace(day=1))
        return known

    def count(self, envelope: Envelope, groups: defaultdict, orphans: defaultdict,
              link_of_code: dict[str, int | None], visitors: dict | None = None) -> int:
        """Count one envelope's visits into `groups` ((link, day, client kind) -> visits), `orphans`
        ((day, status) -> [visits, bots]) and `visitors` ((link, day, visitor) -> bot).

        A client kind is what the aggregates tell apart (referrer, country,
        browser, OS, device, bot), so visitors alike fold into one group.
        Raises InvalidEntry if the envelope is malformed; then nothing of it is counted.
        """
        agent, country = self._enricher.agent, self._enricher.country
        local_groups: defaultdict = defaultdict(int)
        local_orphans: defaultdict = defaultdict(_counter)
        local_visitors: dict = {}
        try:
            kinds, qr_kinds, hashes = [], [], []
            for network, visitor, user_agent, referrer_host, _path, *_ in envelope.clients:
                seen = agent(user_agent if isinstance(user_agent, str) else "")
                where = country(network)
                kinds.append(self._kind(referrer_host or DIRECT, where, seen, LINK))
                qr_kinds.append(self._kind(referrer_host or DIRECT, where, seen, QR))
                hashes.append(None if visitor is None else int.from_bytes(bytes.fromhex(visitor), "big", signed=True))
            for ts, link_id, code, status, _method, at, qr, *_ in envelope.visits:
                if at < 0:
                    raise IndexError(f"client {at}")
                kind = qr_kinds[at] if qr else kinds[at]
                day = ts // _MS_PER_DAY
                if status in ORPHAN:
                    local_orphans[(day, status)][kind[0]] += 1
                    continue
                if link_id is None:
                    link_id = link_of_code.get(code)
                    if link_id is None:  # a code no link has any more: nothing to count it against
                        continue
                local_groups[(link_id, day, kind)] += 1
                visitor = hashes[at]
                if visitor is not None:
                    local_visitors[(link_id, day, visitor)] = kind[0]
        except (TypeError, ValueError, IndexError, AttributeError) as exc:
            raise InvalidEntry(f"malformed visit: {exc}") from None
        for key, count in local_groups.items():
            groups[key] += count
        for key, (humans, bots) in local_orphans.items():
            orphans[key][0] += humans
            orphans[key][1] += bots
        if visitors is not None:
            visitors.update(local_visitors)
        return len(envelope.visits)

    def _kind(self, referrer: str, country: str, agent, source: str) -> tuple:
        """(bot, (referrer, country, browser, os, device, source)): one shared tuple per distinct kind of client."""
        key = (referrer, country, agent, source)
        kind = self._kinds.get(key)
        if kind is None:
            if len(self._kinds) > KIND_CACHE_SIZE:
                self._kinds.clear()
            values = (referrer, country, agent.browser, agent.os, agent.device, source)
            kind = self._kinds[key] = (1 if agent.bot else 0, tuple(value or UNKNOWN for value in values))
        return kind

    def delta(self, groups: defaultdict, orphans: defaultdict, visits: int, visitors: dict | None = None) -> Delta:
        """The rows of counted groups: each link's, and the whole service's."""
        out = Delta(visits=visits)
        rows, totals = out.groups, out.totals
        service: defaultdict = defaultdict(int)
        for (link_id, day, kind), count in groups.items():
            on, month = self._days(day)
            bot, values = kind
            totals[link_id][bot] += count
            service[(day, kind)] += count
            rows.append((link_id, on, month, *values, bot, count))
        for (day, (bot, values)), count in service.items():
            on, month = self._days(day)
            rows.append((SERVICE, on, month, *values, bot, count))
        if visitors:
            seen: dict = {}
            for (link_id, day, visitor), bot in visitors.items():
                on = self._days(day)[0]
                out.visitors.append((link_id, on, visitor, bot))
                seen[(on, visitor)] = bot
            out.visitors.extend((SERVICE, on, visitor, bot) for (on, visitor), bot in seen.items())
        out.orphans = {(self._days(day)[0], status): counts for (day, status), counts in orphans.items()}
        return out
