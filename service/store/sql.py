"""SQL access: engines, and repository functions that take their session as a keyword."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import any_, bindparam, delete, event, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool

from ..errors import StorageUnavailable
from .models import ApiKey, Link, PendingInvalidation


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        kwargs: dict = {"connect_args": {"timeout": 30}}
        if ":memory:" in url or url.rstrip("/").endswith("sqlite+aiosqlite:"):
            kwargs["poolclass"] = StaticPool
        engine = create_async_engine(url, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)
    _ping_connections_that_sat_idle(engine)
    return engine


# A connection used within this many seconds is trusted without a ping.
PING_IF_IDLE_SECONDS = 5.0


def _ping_connections_that_sat_idle(engine: AsyncEngine) -> None:
    """pool_pre_ping, but only for connections that sat idle.

    SQLAlchemy's pre-ping costs a round trip on every checkout, which under
    load is most of a redirect batch's SQL time; a connection returned to
    the pool a moment ago is as good as a ping says. One that sat idle (the
    database may have restarted meanwhile) is pinged; if the ping fails the
    pool discards it and tries another (SQLAlchemy's DisconnectionError
    protocol, at most three attempts).
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _stamp(dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, proxy) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_IF_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(str(exc)) from exc


def is_unavailable(exc: BaseException) -> bool:
    """True when an error means SQL could not be reached (not that the query was wrong)."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OSError, ConnectionError, TimeoutError))


@dataclass
class Database:
    """The write engine and the (possibly replica) engine of the redirect read path."""

    engine: AsyncEngine
    read_engine: AsyncEngine

    def __post_init__(self) -> None:
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)
        # The redirect path reads with single SELECTs: in autocommit they go
        # out alone, without the BEGIN and ROLLBACK round trips a transaction
        # adds around each (same pool; asyncpg only flips a flag per checkout).
        self._single_reads = (
            self.read_engine.execution_options(isolation_level="AUTOCOMMIT")
            if self.read_engine.dialect.name == "postgresql" else self.read_engine
        )

    @classmethod
    def open(cls, url: str, read_url: str | None = None, *, pool_size: int = 10) -> Database:
        engine = make_engine(url, pool_size=pool_size)
        read_engine = make_engine(read_url, pool_size=pool_size) if read_url else engine
        return cls(engine=engine, read_engine=read_engine)

    async def close(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction; an unreachable database becomes StorageUnavailable."""
        try:
            async with self.sessions.begin() as session:
                yield session
        except IntegrityError:
            raise
        except Exception as exc:
            if is_unavailable(exc):
                raise StorageUnavailable(str(exc)) from exc
            raise

    @contextlib.asynccontextmanager
    async def read_connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection to the redirect read path's engine (the replica when configured), for
        single-statement reads: on PostgreSQL in autocommit, so no transaction wraps them."""
        try:
            async with self._single_reads.connect() as connection:
                yield connection
        except Exception as exc:
            if is_unavailable(exc):
                raise StorageUnavailable(str(exc)) from exc
            raise

    @contextlib.asynccontextmanager
    async def reading(self, *, replica: bool = False) -> AsyncIterator[AsyncSession]:
        maker = self.read_sessions if replica else self.sessions
        try:
            async with maker() as session:
                yield session
        except Exception as exc:
            if is_unavailable(exc):
                raise StorageUnavailable(str(exc)) from exc
            raise


# --- repository ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Visibility:
    """Which links a query may see: a specification every link query of the API applies.

    Repository functions that read or change links on behalf of a key take
    one as a required keyword, so no use-case can forget the ownership
    filter: ``EVERYTHING`` for roles that may touch any link, ``owned_by(id)``
    for roles limited to the links their key created.
    """

    owner_id: int | None

    @classmethod
    def owned_by(cls, key_row_id: int) -> Visibility:
        return cls(owner_id=key_row_id)

    def apply(self, query):
        return query if self.owner_id is None else query.where(Link.created_by_id == self.owner_id)


Visibility.EVERYTHING = Visibility(owner_id=None)  # type: ignore[attr-defined]


async def insert_link(
    *,
    session: AsyncSession,
    url: str,
    redirect_status: int,
    query_policy: dict | None,
    alias: str | None,
    now: datetime,
    created_by_id: int | None,
) -> Link:
    """Insert a row; the caller sets the generated code once the id is known."""
    link = Link(
        code=alias,
        is_alias=alias is not None,
        url=url,
        redirect_status=redirect_status,
        query_policy=query_policy,
        created_at=now,
        updated_at=now,
        created_by_id=created_by_id,
        updated_by_id=created_by_id,
    )
    session.add(link)
    await session.flush()
    return link


_COPY_COLUMNS = (
    "id", "code", "url", "redirect_status", "query_policy", "is_alias", "created_at", "updated_at",
    "created_by_id", "updated_by_id",
)


async def insert_generated_links(
    *, session: AsyncSession, rows: list[dict], now: datetime, encode: Callable[[int], str]
) -> list[tuple[int, str]]:
    """Insert links whose codes are generated from their ids; returns (id, code) in row order.

    Each row has url, redirect_status, query_policy and created_by_id. On PostgreSQL the ids
    come from the sequence first, so each row is written once, code included,
    by COPY (asyncpg's copy_records_to_table), far faster than INSERTs. On
    SQLite the rows are inserted, their ids returned, then their codes set:
    ids come from AUTOINCREMENT, so concurrent writers can never collide.
    """
    if not rows:
        return []
    if session.bind.dialect.name == "postgresql":
        sequence = func.nextval(literal("links_id_seq"))
        ids = (await session.execute(select(sequence).select_from(func.generate_series(1, len(rows))))).scalars().all()
        ids_codes = [(row_id, encode(row_id)) for row_id in ids]
        records = [
            (row_id, code, row["url"], row["redirect_status"], row["query_policy"], False, now, now,
             row["created_by_id"], row["created_by_id"])
            for (row_id, code), row in zip(ids_codes, rows, strict=True)
        ]
        if any(record[4] for record in records):
            await session.execute(insert(Link), [dict(zip(_COPY_COLUMNS, record)) for record in records])
        else:
            connection = await session.connection()
            raw = await connection.get_raw_connection()
            await raw.driver_connection.copy_records_to_table(
                Link.__tablename__, records=records, columns=_COPY_COLUMNS
            )
        return ids_codes
    values = [
        {
            "url": row["url"],
            "redirect_status": row["redirect_status"],
            "query_policy": row["query_policy"],
            "is_alias": False,
            "created_at": now,
            "updated_at": now,
            "created_by_id": row["created_by_id"],
            "updated_by_id": row["created_by_id"],
        }
        for row in rows
    ]
    result = await session.execute(insert(Link).returning(Link.id, sort_by_parameter_order=True), values)
    ids_codes = [(row_id, encode(row_id)) for row_id in result.scalars().all()]
    # ORM bulk UPDATE by primary key: one executemany.
    await session.execute(update(Link), [{"id": row_id, "code": code} for row_id, code in ids_codes])
    return ids_codes


async def find_live_link(*, session: AsyncSession, code: str, visible: Visibility) -> Link | None:
    """The link with this code unless it was deleted or is not `visible`; None otherwise."""
    query = visible.apply(select(Link).where(Link.code == code, Link.deleted_at.is_(None)))
    return (await session.execute(query)).scalar_one_or_none()


# Built once: constructing the statement per batch showed in profiles.
_TARGET_COLUMNS = (Link.code, Link.url, Link.redirect_status, Link.query_policy, Link.id)
_LIVE_TARGETS = select(*_TARGET_COLUMNS).where(
    Link.code.in_(bindparam("codes", expanding=True)), Link.deleted_at.is_(None)
)
# PostgreSQL: the codes as one array parameter. An expanding IN renders one
# statement text per batch size, and each is prepared anew; this is one
# statement, prepared once per connection, whatever the batch.
_LIVE_TARGETS_PG = select(*_TARGET_COLUMNS).where(
    Link.code == any_(bindparam("codes", type_=postgresql.ARRAY(Link.code.type))), Link.deleted_at.is_(None)
)


async def find_live_targets(
    *, connection: AsyncConnection, codes: list[str]
) -> dict[str, tuple[str, int, dict | None, int]]:
    """url, redirect_status, query_policy and row id of each live link among `codes`, by code.

    Core, not the ORM: this is the redirect path's SQL, one query for a batch
    of codes, and ORM identity bookkeeping would only cost time here.
    """
    statement = _LIVE_TARGETS_PG if connection.dialect.name == "postgresql" else _LIVE_TARGETS
    rows = (await connection.execute(statement, {"codes": codes})).all()
    return {code: (url, status, policy, row_id) for code, url, status, policy, row_id in rows}


async def newest_live_targets(
    *, connection: AsyncConnection, limit: int, before_id: int | None
) -> list[tuple[int, str, str, int, dict | None]]:
    """(id, code, url, redirect_status, query_policy) of live links, newest first (keyset on id)."""
    query = select(Link.id, Link.code, Link.url, Link.redirect_status, Link.query_policy).where(
        Link.deleted_at.is_(None), Link.code.is_not(None)
    )
    if before_id is not None:
        query = query.where(Link.id < before_id)
    rows = (await connection.execute(query.order_by(Link.id.desc()).limit(limit))).all()
    return [tuple(row) for row in rows]


async def list_live_links(
    *, session: AsyncSession, limit: int, before_id: int | None, visible: Visibility
) -> list[Link]:
    """Newest first, keyset-paginated on the row id, only what is `visible`."""
    query = visible.apply(select(Link).where(Link.deleted_at.is_(None), Link.code.is_not(None)))
    if before_id is not None:
        query = query.where(Link.id < before_id)
    query = query.order_by(Link.id.desc()).limit(limit)
    return list((await session.execute(query)).scalars())


async def remember_invalidation(*, session: AsyncSession, code: str, now: datetime) -> None:
    existing = await session.get(PendingInvalidation, code)
    if existing is None:
        session.add(PendingInvalidation(code=code, created_at=now))
    else:
        existing.created_at = now


async def pending_invalidations(*, session: AsyncSession, limit: int = 500) -> list[PendingInvalidation]:
    query = select(PendingInvalidation).order_by(PendingInvalidation.created_at).limit(limit)
    return list((await session.execute(query)).scalars())


async def forget_invalidations(*, session: AsyncSession, entries: list[PendingInvalidation]) -> None:
    """Drop entries that were handled, unless a newer write re-armed them meanwhile."""
    for entry in entries:
        await session.execute(
            delete(PendingInvalidation).where(
                PendingInvalidation.code == entry.code,
                PendingInvalidation.created_at == entry.created_at,
            )
        )


# --- API keys ----------------------------------------------------------------


async def insert_api_key(
    *, session: AsyncSession, key_id: str, name: str, role: str, secret_hash: str,
    created_at: datetime, expires_at: datetime | None,
) -> ApiKey:
    key = ApiKey(key_id=key_id, name=name, role=role, secret_hash=secret_hash, enabled=True,
                 created_at=created_at, expires_at=expires_at)
    session.add(key)
    await session.flush()
    return key


async def find_api_key(*, session: AsyncSession, key_id: str) -> ApiKey | None:
    return (await session.execute(select(ApiKey).where(ApiKey.key_id == key_id))).scalar_one_or_none()


async def find_api_key_by_name(*, session: AsyncSession, name: str) -> ApiKey | None:
    return (await session.execute(select(ApiKey).where(ApiKey.name == name))).scalar_one_or_none()


async def list_api_keys(*, session: AsyncSession) -> list[ApiKey]:
    return list((await session.execute(select(ApiKey).order_by(ApiKey.id))).scalars())


async def key_names(*, session: AsyncSession, ids: set[int]) -> dict[int, str]:
    rows = (await session.execute(select(ApiKey.id, ApiKey.name).where(ApiKey.id.in_(sorted(ids))))).all()
    return {row_id: name for row_id, name in rows}


async def set_keys_last_used(*, session: AsyncSession, used: dict[int, datetime]) -> None:
    # ORM bulk UPDATE by primary key: one executemany.
    await session.execute(update(ApiKey), [{"id": row_id, "last_used_at": at} for row_id, at in used.items()])
