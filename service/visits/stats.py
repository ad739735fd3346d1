"""The stats use-case: a link's, or the whole service's, visits over a range of UTC days.

Every figure comes from the aggregates (aggregates.py), never from rows per
visit, so a year of a link with ten million visits reads a few hundred day
rows and a few thousand breakdown rows. Unique visitors over more than one
day are the sum of each day's unique visitors (the visitor hash changes every
day by design, so a visitor seen on two days counts on each).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from ..errors import InvalidInput
from ..store import sql
from . import aggregates
from .fold import DIMENSIONS, SERVICE

DEFAULT_DAYS = 30
MAX_DAYS = 400
TOP = 10
OTHER = "other"
# The breakdown lists of the answer, by dimension.
LISTS = {"referrer": "referrers", "country": "countries", "browser": "browsers", "os": "os", "device": "devices",
         "source": "sources"}
# Dates a range may touch: the aggregates' arithmetic stays well inside what `date` can hold.
EARLIEST, LATEST = date(2000, 1, 1), date(9000, 12, 31)


def utc_today() -> date:
    return datetime.now(UTC).date()


def parse_day(field: str, text: str | None) -> date | None:
    if text is None:
        return None
    try:
        if len(text) != 10:
            raise ValueError(text)
        day = date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(field, "must be a date as YYYY-MM-DD") from None
    if not EARLIEST <= day <= LATEST:
        raise InvalidInput(field, f"must be between {EARLIEST} and {LATEST}")
    return day


def stats_range(start: date | None, end: date | None, *, today: date) -> tuple[date, date]:
    """[start, end] in UTC days: the last 30 days by default, at most 400 days."""
    if end is None:
        end = max(today, start) if start is not None else today
    if start is None:
        start = end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise InvalidInput("from", "must not be after to")
    if (end - start).days + 1 > MAX_DAYS:
        raise InvalidInput("to", f"a range is at most {MAX_DAYS} days")
    return start, end


def top(values: dict[str, list[int]], *, include_bots: bool) -> list[dict]:
    """The ten largest values (visits, then name), and `other` for the rest when there is a rest."""
    figures = [(humans + (bots if include_bots else 0), name) for name, (humans, bots) in values.items()]
    figures = sorted((f for f in figures if f[0] > 0), key=lambda f: (-f[0], f[1]))
    out = [{"name": name, "visits": visits} for visits, name in figures[:TOP]]
    rest = sum(visits for visits, _ in figures[TOP:])
    if rest:
        out.append({"name": OTHER, "visits": rest})
    return out


@dataclass
class VisitStats:
    """Stats over the aggregates, opened once by the app's lifespan."""

    db: sql.Database
    today: Callable[[], date] = utc_today

    def range(self, start: str | None, end: str | None) -> tuple[date, date]:
        return stats_range(parse_day("from", start), parse_day("to", end), today=self.today())

    async def of_link(self, link_id: int, *, start: date, end: date, include_bots: bool) -> dict:
        return await self._stats(link_id, start=start, end=end, include_bots=include_bots)

    async def of_service(self, *, start: date, end: date, include_bots: bool) -> dict:
        out = await self._stats(SERVICE, start=start, end=end, include_bots=include_bots)
        async with self.db.reading() as session:
            orphans = await aggregates.orphans(session=session, start=start, end=end)
        out["orphans"] = [{"status": status, "visits": humans + (bots if include_bots else 0), "bots": bots}
                          for status, humans, bots in orphans]
        return out

    async def _stats(self, link_id: int, *, start: date, end: date, include_bots: bool) -> dict:
        async with self.db.reading() as session:
            rows = await aggregates.days(session=session, link_id=link_id, start=start, end=end)
            breakdowns = await aggregates.breakdowns(session=session, link_id=link_id, start=start, end=end)
        by_day = {row[0]: row[1:] for row in rows}
        days = []
        total = {"visits": 0, "bots": 0, "unique_visitors": 0}
        for offset in range((end - start).days + 1):
            on = start + timedelta(days=offset)
            humans, bots, visitors, bot_visitors = by_day.get(on, (0, 0, 0, 0))
            day = {
                "date": on,
                "visits": humans + (bots if include_bots else 0),
                "bots": bots,
                "unique_visitors": visitors + (bot_visitors if include_bots else 0),
            }
            days.append(day)
            for name in total:
                total[name] += day[name]
        out: dict = {"total": total, "days": days}
        for dimension in DIMENSIONS:
            out[LISTS[dimension]] = top(breakdowns.get(dimension, {}), include_bots=include_bots)
        return out

    async def visits_of(self, link_ids: list[int]) -> dict[int, int]:
        """Visits so far (bots excluded) of each link."""
        async with self.db.reading() as session:
            found = await aggregates.totals(session=session, link_ids=link_ids)
        return {link_id: found.get(link_id, (0, 0))[0] for link_id in link_ids}

    async def answered_of(self, link_ids: list[int]) -> dict[int, int]:
        """Redirects folded so far of each link, bots included: what `max_visits` is checked against.

        It trails the redirects answered by at most the visits in flight
        (docs/visits.md: "max_visits"), and never runs ahead of them.
        """
        async with self.db.reading() as session:
            found = await aggregates.totals(session=session, link_ids=link_ids)
        return {link_id: sum(found.get(link_id, (0, 0))) for link_id in link_ids}
