"""The visit aggregates in SQL: adding a fold's Delta exactly once, and reading the stats.

Exactly once, on top of a stream that delivers at least once:

1. every fold transaction first locks its stream's row in ``visit_streams``
   (an UPDATE: a row lock on PostgreSQL, the write lock on SQLite), so folds
   of one stream commit one after another, whichever consumer runs them;
2. under that lock it asks ``visit_folds`` which of its entries were folded
   already (ranges of entry positions; a batch read as new entries is one
   contiguous range of the stream, entries claimed from a dead consumer are
   recorded one by one), and leaves those out;
3. it adds the rest to the aggregates, records their positions and moves the
   stream's position, and commits all of it at once. Only then are the
   entries acknowledged in Redis; an acknowledgement lost after the commit
   means a redelivery, which step 2 skips.

Upserts are the dialects' own ``INSERT ... ON CONFLICT DO UPDATE`` (counters
added, never overwritten). On PostgreSQL each table gets one statement per
fold whatever its size, the rows as arrays through ``unnest`` (one prepared
statement, not one per row count); on SQLite an executemany. Unique
visitors: ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` into
``visit_visitors`` says which (link, day, visitor) are new, and only those
count.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from datetime import date, datetime, timedelta

from sqlalchemy import Table, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ..store.models import (
    Link, OrphanVisitDay, VisitBreakdown, VisitDay, VisitFold, VisitMonthBreakdown, VisitStream, VisitTotal,
    VisitVisitor,
)
from .fold import Delta

# SQLite allows 32766 bound values per statement.
_SQLITE_CHUNK = 2000

# --- writing ------------------------------------------------------------------


def _is_postgres(session: AsyncSession) -> bool:
    return session.bind.dialect.name == "postgresql"


_PG_UPSERTS: dict[str, object] = {}


def _pg_upsert(table: Table, keys: tuple[str, ...], counters: tuple[str, ...], *, returning: bool = False):
    """INSERT ... SELECT FROM unnest(arrays) ON CONFLICT: one statement text per table, built once."""
    name = f"{table.name}:{returning}"
    statement = _PG_UPSERTS.get(name)
    if statement is None:
        columns = keys + counters
        source = func.unnest(
            *(bindparam(column, type_=postgresql.ARRAY(table.c[column].type)) for column in columns)
        ).table_valued(*columns).render_derived()
        statement = postgresql.insert(table).from_select(columns, select(*(source.c[c] for c in columns)))
        if counters:
            statement = statement.on_conflict_do_update(
                index_elements=keys, set_={c: table.c[c] + statement.excluded[c] for c in counters}
            )
        else:
            statement = statement.on_conflict_do_nothing(index_elements=keys)
        if returning:
            statement = statement.returning(*(table.c[k] for k in keys))
        _PG_UPSERTS[name] = statement
    return statement


async def _upsert(session: AsyncSession, table: Table, keys: tuple[str, ...], counters: tuple[str, ...],
                  rows: list[tuple]) -> None:
    """Add `rows` (key values, then counter values) to `table`'s counters."""
    if not rows:
        return
    columns = keys + counters
    if _is_postgres(session):
        await session.execute(_pg_upsert(table, keys, counters), dict(zip(columns, map(list, zip(*rows)))))
        return
    statement = sqlite.insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=keys, set_={c: table.c[c] + statement.excluded[c] for c in counters}
    )
    await session.execute(statement, [dict(zip(columns, row)) for row in rows])


async def _new_visitors(session: AsyncSession, triples: list[tuple[int, date, int]]) -> list[tuple]:
    """Insert (link, day, visitor) triples; the ones that were not there yet."""
    if not triples:
        return []
    keys = ("link_id", "day", "visitor")
    table = VisitVisitor.__table__
    if _is_postgres(session):
        statement = _pg_upsert(table, keys, (), returning=True)
        result = await session.execute(statement, dict(zip(keys, map(list, zip(*triples)))))
        return [tuple(row) for row in result]
    new = []
    statement = sqlite.insert(table).on_conflict_do_nothing(index_elements=keys).returning(*table.c)
    for start in range(0, len(triples), _SQLITE_CHUNK):
        values = [dict(zip(keys, triple)) for triple in triples[start:start + _SQLITE_CHUNK]]
        result = await session.execute(statement.values(values))
        new.extend(tuple(row) for row in result)
    return new


async def add(*, session: AsyncSession, delta: Delta) -> None:
    """Add a fold's Delta to the aggregates (in the caller's transaction)."""
    per_day = {key: [humans, bots, 0, 0] for key, (humans, bots) in delta.days.items()}
    for link_id, on, visitor in await _new_visitors(session, list(delta.visitors)):
        per_day[(link_id, on)][3 if delta.visitors[(link_id, on, visitor)] else 2] += 1
    await _upsert(session, VisitDay.__table__, ("link_id", "day"), ("visits", "bots", "visitors", "bot_visitors"),
                  [(*key, *counts) for key, counts in per_day.items()])
    for table, period in ((VisitBreakdown.__table__, "day"), (VisitMonthBreakdown.__table__, "month")):
        rows = delta.breakdowns if period == "day" else delta.months
        await _upsert(session, table, ("link_id", period, "dimension", "value"), ("visits", "bots"),
                      [(link_id, on, dimension, value[:255], humans, bots)
                       for (link_id, on, dimension, value), (humans, bots) in rows.items()])
    await _upsert(session, OrphanVisitDay.__table__, ("day", "status"), ("visits", "bots"),
                  [(*key, *counts) for key, counts in delta.orphans.items()])
    await _upsert(session, VisitTotal.__table__, ("link_id",), ("visits", "bots"),
                  [(key, *counts) for key, counts in delta.totals.items()])


async def lock_stream(*, session: AsyncSession, stream: str, now: datetime) -> None:
    """Take the stream's fold lock for this transaction (creating its row on first use).

    An UPDATE first, on both databases: on SQLite a transaction that read
    before writing could be refused the write lock when another connection
    committed in between; one that starts with a write waits for it instead.
    """
    locked = await session.execute(update(VisitStream).where(VisitStream.stream == stream).values(updated_at=now))
    if locked.rowcount:
        return
    insert_ = (postgresql.insert if _is_postgres(session) else sqlite.insert)(VisitStream)
    await session.execute(insert_.values(stream=stream, events=0, updated_at=now).on_conflict_do_nothing())
    await session.execute(update(VisitStream).where(VisitStream.stream == stream).values(updated_at=now))


async def folded_already(*, session: AsyncSession, stream: str, positions: list[str]) -> set[str]:
    """Those of `positions` (entry positions, see stream.position) that a committed fold covered."""
    if not positions:
        return set()
    low, high = min(positions), max(positions)
    ranges = (await session.execute(
        select(VisitFold.first_position, VisitFold.last_position).where(
            VisitFold.stream == stream, VisitFold.first_position <= high, VisitFold.last_position >= low,
        )
    )).all()
    if not ranges:
        return set()
    return {p for p in positions if any(first <= p <= last for first, last in ranges)}


async def record_folded(*, session: AsyncSession, stream: str, ranges: list[tuple[str, str]], events: int,
                        now: datetime) -> None:
    """Note entry ranges as folded and move the stream's position past them."""
    if ranges:
        await session.execute(insert(VisitFold), [
            {"stream": stream, "first_position": first, "last_position": last} for first, last in ranges
        ])
    newest = max(last for _, last in ranges) if ranges else None
    values: dict = {"events": VisitStream.events + events, "updated_at": now}
    if newest is not None:
        values["last_position"] = func.coalesce(
            func.max(VisitStream.last_position, newest) if not _is_postgres(session)
            else func.greatest(VisitStream.last_position, newest),
            newest,
        )
    await session.execute(update(VisitStream).where(VisitStream.stream == stream).values(**values))


async def forget_old(*, session: AsyncSession, stream: str, folds_before: str, visitors_before: date) -> int:
    """Delete fold records no entry of the stream can fall in any more, and visitor hashes of closed days."""
    folds = await session.execute(
        delete(VisitFold).where(VisitFold.stream == stream, VisitFold.last_position < folds_before)
    )
    visitors = await session.execute(delete(VisitVisitor).where(VisitVisitor.day < visitors_before))
    return (folds.rowcount or 0) + (visitors.rowcount or 0)


async def link_ids(*, session: AsyncSession, codes: list[str]) -> dict[str, int]:
    """The ids of links by code (deleted ones too: their visits still count)."""
    if not codes:
        return {}
    rows = (await session.execute(select(Link.code, Link.id).where(Link.code.in_(sorted(set(codes)))))).all()
    return dict(rows)


# --- reading ------------------------------------------------------------------


async def days(*, session: AsyncSession, link_id: int, start: date, end: date) -> list[tuple]:
    """(day, visits, bots, visitors, bot_visitors) of each day with visits, in order."""
    rows = await session.execute(
        select(VisitDay.day, VisitDay.visits, VisitDay.bots, VisitDay.visitors, VisitDay.bot_visitors)
        .where(VisitDay.link_id == link_id, VisitDay.day >= start, VisitDay.day <= end)
        .order_by(VisitDay.day)
    )
    return [tuple(row) for row in rows]


def _month_end(month: date) -> date:
    return month.replace(day=calendar.monthrange(month.year, month.month)[1])


def split_by_months(start: date, end: date) -> tuple[tuple[date, date] | None, list[tuple[date, date]]]:
    """The whole months within [start, end] (as their first days), and the day ranges outside them."""
    first = start if start.day == 1 else _month_end(start) + timedelta(days=1)
    last = end if _month_end(end) == end else end.replace(day=1) - timedelta(days=1)
    if first > last:
        return None, [(start, end)]
    edges = []
    if start < first:
        edges.append((start, first - timedelta(days=1)))
    if last < end:
        edges.append((last + timedelta(days=1), end))
    return (first, last.replace(day=1)), edges


async def breakdowns(*, session: AsyncSession, link_id: int, start: date, end: date) -> dict[str, dict[str, list[int]]]:
    """dimension -> value -> [visits, bots] over [start, end]: whole months from the monthly rows."""
    months, edges = split_by_months(start, end)
    queries = []
    if months is not None:
        table = VisitMonthBreakdown
        queries.append(select(table.dimension, table.value, func.sum(table.visits), func.sum(table.bots))
                       .where(table.link_id == link_id, table.month >= months[0], table.month <= months[1])
                       .group_by(table.dimension, table.value))
    if edges:
        table = VisitBreakdown
        queries.append(select(table.dimension, table.value, func.sum(table.visits), func.sum(table.bots))
                       .where(table.link_id == link_id,
                              or_(*(and_(table.day >= low, table.day <= high) for low, high in edges)))
                       .group_by(table.dimension, table.value))
    out: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for query in queries:
        for dimension, value, humans, bots in await session.execute(query):
            counts = out[dimension].setdefault(value, [0, 0])
            counts[0] += int(humans or 0)
            counts[1] += int(bots or 0)
    return out


async def orphans(*, session: AsyncSession, start: date, end: date) -> list[tuple[int, int, int]]:
    """(status, visits, bots) of orphan visits over [start, end]."""
    rows = await session.execute(
        select(OrphanVisitDay.status, func.sum(OrphanVisitDay.visits), func.sum(OrphanVisitDay.bots))
        .where(OrphanVisitDay.day >= start, OrphanVisitDay.day <= end)
        .group_by(OrphanVisitDay.status).order_by(OrphanVisitDay.status)
    )
    return [(status, int(humans or 0), int(bots or 0)) for status, humans, bots in rows]


async def totals(*, session: AsyncSession, link_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(visits, bots) so far of each of `link_ids` that has any."""
    if not link_ids:
        return {}
    rows = await session.execute(
        select(VisitTotal.link_id, VisitTotal.visits, VisitTotal.bots).where(VisitTotal.link_id.in_(link_ids))
    )
    return {link_id: (visits, bots) for link_id, visits, bots in rows}
