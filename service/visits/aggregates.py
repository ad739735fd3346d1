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

Monthly breakdowns (what a long range reads instead of every day's rows) are
not written by the folds: a month's are added up from its daily rows once no
event of it can arrive any more (``roll_up``, run by the consumers' prune
under the stream's lock, a few days after the month ends), and the month is
noted in ``visit_rollups``. Stats read the monthly rows of rolled-up months
only, the daily rows of every other day; a fold that meets a late event of a
rolled-up month adds it to both. That halved the rows a fold writes per
visit's breakdowns.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta

from sqlalchemy import (
    BigInteger, Column, Date, MetaData, SmallInteger, String, Table, and_, bindparam, case, delete, exists, func,
    insert, literal, or_, select, true, union_all, update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateTable
from sqlalchemy.ext.asyncio import AsyncSession

from ..store.models import (
    Link, OrphanVisitDay, VisitBreakdown, VisitDay, VisitFold, VisitMonthBreakdown, VisitRollup, VisitStream,
    VisitTotal, VisitVisitor,
)
from .fold import DIMENSIONS, SERVICE, Delta

# --- writing ------------------------------------------------------------------


def _is_postgres(session: AsyncSession) -> bool:
    return session.bind.dialect.name == "postgresql"


async def _rows(session: AsyncSession, query) -> list:
    """A Core query's rows on the session's connection: plain tuples, without the ORM's result layer."""
    return (await (await session.connection()).execute(query)).all()


_PG_UPSERTS: dict[str, object] = {}


def _pg_upsert(table: Table, keys: tuple[str, ...], counters: tuple[str, ...]):
    """INSERT ... SELECT FROM unnest(arrays) ON CONFLICT: one statement text per table, built once."""
    statement = _PG_UPSERTS.get(table.name)
    if statement is None:
        columns = keys + counters
        # dimensions=1: SQLAlchemy then passes each list on as it is, instead of
        # checking every element for a nested list (millions of isinstance calls a fold).
        source = func.unnest(
            *(bindparam(column, type_=postgresql.ARRAY(table.c[column].type, dimensions=1)) for column in columns)
        ).table_valued(*columns).render_derived()
        statement = postgresql.insert(table).from_select(columns, select(*(source.c[c] for c in columns)))
        statement = statement.on_conflict_do_update(
            index_elements=keys, set_={c: table.c[c] + statement.excluded[c] for c in counters}
        )
        _PG_UPSERTS[table.name] = statement
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


# The batch being folded, in temporary tables of the fold's own connection:
# the fold copies its groups in, and a few INSERT ... SELECT ... GROUP BY ...
# ON CONFLICT statements add them to the aggregates. (On PostgreSQL they
# empty themselves at commit; on SQLite add() empties them.)
_BATCH_METADATA = MetaData()
BATCH = Table(
    "visit_batch", _BATCH_METADATA,
    Column("link_id", BigInteger), Column("day", Date), Column("month", Date),
    *(Column(dimension, String(255)) for dimension in DIMENSIONS),
    Column("bot", SmallInteger), Column("visits", BigInteger),
    prefixes=["TEMPORARY"], postgresql_on_commit="DELETE ROWS",
)
BATCH_VISITORS = Table(
    "visit_batch_visitors", _BATCH_METADATA,
    Column("link_id", BigInteger), Column("day", Date), Column("visitor", BigInteger), Column("bot", SmallInteger),
    prefixes=["TEMPORARY"], postgresql_on_commit="DELETE ROWS",
)


def _insert(session: AsyncSession, table):
    return (postgresql.insert if _is_postgres(session) else sqlite.insert)(table)


def _split(visits, bot):
    """SUM(visits) of humans, SUM(visits) of bots."""
    return (func.sum(case((bot == 0, visits), else_=0)), func.sum(case((bot == 1, visits), else_=0)))


def _adding(statement, keys: list[str], counters: list[str]):
    return statement.on_conflict_do_update(
        index_elements=keys, set_={c: statement.table.c[c] + statement.excluded[c] for c in counters}
    )


async def _load(session: AsyncSession, table: Table, rows: list[tuple]) -> None:
    # In every fold, not once per connection: on PostgreSQL a CREATE in a
    # transaction that rolls back is gone again.
    await session.execute(CreateTable(table, if_not_exists=True))
    if not rows:
        return
    connection = await session.connection()
    if _is_postgres(session):
        raw = await connection.get_raw_connection()
        await raw.driver_connection.copy_records_to_table(table.name, records=rows, columns=list(table.c.keys()))
    else:
        await session.execute(insert(table), [dict(zip(table.c.keys(), row)) for row in rows])


async def add(*, session: AsyncSession, delta: Delta) -> None:
    """Add a fold's Delta to the aggregates (in the caller's transaction)."""
    await _load(session, BATCH, delta.groups)
    await _load(session, BATCH_VISITORS, delta.visitors)
    b, v = BATCH.c, BATCH_VISITORS.c
    counters = ["visits", "bots"]
    if delta.groups:
        # true(): SQLite reads INSERT ... SELECT ... ON CONFLICT only with a WHERE.
        days = select(b.link_id, b.day, *_split(b.visits, b.bot), literal(0), literal(0)).where(true())
        statement = _insert(session, VisitDay).from_select(
            ["link_id", "day", "visits", "bots", "visitors", "bot_visitors"], days.group_by(b.link_id, b.day))
        await session.execute(_adding(statement, ["link_id", "day"], counters))
        # Monthly rows only for months rolled up already (events that came late): the
        # others are added up from the daily rows once the month closes (roll_up).
        rolled = await rolled_up(session=session, months={row[2] for row in delta.groups})
        periods = [(VisitBreakdown, "day", true())]
        if rolled:
            periods.append((VisitMonthBreakdown, "month", b.month.in_(sorted(rolled))))
        for table, period, wanted in periods:
            each = union_all(*(
                select(b.link_id, b[period].label("period"), literal(dimension, String).label("dimension"),
                       b[dimension].label("value"), b.visits, b.bot).where(wanted)
                for dimension in DIMENSIONS
            )).subquery()
            grouped = select(each.c.link_id, each.c.period, each.c.dimension, each.c.value,
                             *_split(each.c.visits, each.c.bot)).where(true()).group_by(
                each.c.link_id, each.c.period, each.c.dimension, each.c.value)
            statement = _insert(session, table).from_select(["link_id", period, "dimension", "value", *counters],
                                                            grouped)
            await session.execute(_adding(statement, ["link_id", period, "dimension", "value"], counters))
    if delta.visitors:
        # Only visitors not seen before that day count, and are remembered.
        await session.execute(delete(BATCH_VISITORS).where(exists().where(
            VisitVisitor.link_id == v.link_id, VisitVisitor.day == v.day, VisitVisitor.visitor == v.visitor)))
        await session.execute(_insert(session, VisitVisitor).from_select(
            ["link_id", "day", "visitor"], select(v.link_id, v.day, v.visitor).where(true())
        ).on_conflict_do_nothing())
        new = select(v.link_id, v.day, literal(0), literal(0), *_split(literal(1), v.bot)).where(true())
        statement = _insert(session, VisitDay).from_select(
            ["link_id", "day", "visits", "bots", "visitors", "bot_visitors"], new.group_by(v.link_id, v.day))
        await session.execute(_adding(statement, ["link_id", "day"], ["visitors", "bot_visitors"]))
    if not _is_postgres(session):
        await session.execute(delete(BATCH))
        await session.execute(delete(BATCH_VISITORS))
    await _upsert(session, OrphanVisitDay.__table__, ("day", "status"), ("visits", "bots"),
                  [(*key, *counts) for key, counts in delta.orphans.items()])
    await _upsert(session, VisitTotal.__table__, ("link_id",), ("visits", "bots"),
                  [(key, *counts) for key, counts in delta.totals.items()])


async def rolled_up(*, session: AsyncSession, months) -> set[date]:
    """Those of `months` (first days) whose monthly rows were rolled up."""
    if not months:
        return set()
    found = await _rows(session, select(VisitRollup.month).where(VisitRollup.month.in_(sorted(months))))
    return {month for (month,) in found}


def next_month(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


async def months_to_roll_up(*, session: AsyncSession, closed_before: date, limit: int = 24) -> list[date]:
    """The months, oldest first, with visits that ended before `closed_before` and are not rolled up yet.

    Read off the whole service's day rows (one per day with visits: a few
    thousand over years), so a month that gets its first visits late is
    found as well.
    """
    days = await _rows(session, select(VisitDay.day).where(VisitDay.link_id == SERVICE, VisitDay.day < closed_before))
    rolled = {month for (month,) in await _rows(session, select(VisitRollup.month))}
    months = {day.replace(day=1) for (day,) in days} - rolled
    return sorted(month for month in months if month_end(month) < closed_before)[:limit]


async def roll_up(*, session: AsyncSession, month: date, now: datetime) -> bool:
    """Replace the month's monthly rows by the sum of its daily rows, and note it as rolled up.

    False if it was rolled up already. The caller holds the stream's lock
    (lock_stream), so no fold adds to the month's daily rows meanwhile.
    """
    if await rolled_up(session=session, months={month}):
        return False
    await session.execute(delete(VisitMonthBreakdown).where(VisitMonthBreakdown.month == month))
    b = VisitBreakdown
    each = select(b.link_id, literal(month, Date).label("month"), b.dimension, b.value,
                  func.sum(b.visits), func.sum(b.bots)).where(
        b.day >= month, b.day <= month_end(month)).group_by(b.link_id, b.dimension, b.value)
    await session.execute(insert(VisitMonthBreakdown).from_select(
        ["link_id", "month", "dimension", "value", "visits", "bots"], each))
    await session.execute(insert(VisitRollup).values(month=month, rolled_at=now))
    return True


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
    rows = await _rows(session,
        select(VisitDay.day, VisitDay.visits, VisitDay.bots, VisitDay.visitors, VisitDay.bot_visitors)
        .where(VisitDay.link_id == link_id, VisitDay.day >= start, VisitDay.day <= end)
        .order_by(VisitDay.day)
    )
    return [tuple(row) for row in rows]


def month_end(month: date) -> date:
    """The last day of `month`."""
    return month.replace(day=calendar.monthrange(month.year, month.month)[1])


def split_by_months(start: date, end: date) -> tuple[tuple[date, date] | None, list[tuple[date, date]]]:
    """The whole months within [start, end] (as their first days), and the day ranges outside them."""
    first = start if start.day == 1 else month_end(start) + timedelta(days=1)
    last = end if month_end(end) == end else end.replace(day=1) - timedelta(days=1)
    if first > last:
        return None, [(start, end)]
    edges = []
    if start < first:
        edges.append((start, first - timedelta(days=1)))
    if last < end:
        edges.append((last + timedelta(days=1), end))
    return (first, last.replace(day=1)), edges


async def breakdowns(*, session: AsyncSession, link_id: int, start: date, end: date) -> dict[str, dict[str, list[int]]]:
    """dimension -> value -> [visits, bots] over [start, end]: whole months rolled up from the monthly rows.

    One statement: the monthly and the daily rows are added up together in
    SQL, so each value comes back once (a year of a busy link: ~1,500 rows
    instead of one per value and source table).
    """
    months, edges = split_by_months(start, end)
    parts = []
    if months is not None:
        whole = []
        month = months[0]
        while month <= months[1]:
            whole.append(month)
            month = next_month(month)
        rolled = await rolled_up(session=session, months=set(whole))
        # A month not rolled up yet (this one, or one that closed a moment ago) is read by its days.
        edges = edges + [(month, month_end(month)) for month in whole if month not in rolled]
        if rolled:
            table = VisitMonthBreakdown
            parts.append(select(table.dimension, table.value, table.visits, table.bots)
                         .where(table.link_id == link_id, table.month.in_(sorted(rolled))))
    if edges:
        table = VisitBreakdown
        parts.append(select(table.dimension, table.value, table.visits, table.bots)
                     .where(table.link_id == link_id,
                            or_(*(and_(table.day >= low, table.day <= high) for low, high in edges))))
    each = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery()
    query = select(each.c.dimension, each.c.value, func.sum(each.c.visits), func.sum(each.c.bots)).group_by(
        each.c.dimension, each.c.value)
    out: dict[str, dict[str, list[int]]] = {}
    for dimension, value, humans, bots in await _rows(session, query):
        out.setdefault(dimension, {})[value] = [int(humans or 0), int(bots or 0)]
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
