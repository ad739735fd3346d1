"""The bench's own storage (a PostgreSQL database and a Redis key prefix) and its servers.

Everything here talks to 127.0.0.1 only, and everything it makes it also
removes: `Storage.drop` and `Server.stop` are safe to call more than once and
after a half-finished start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

REPO = Path(__file__).resolve().parent.parent
TAIL_BYTES = 64 * 1024  # of a server's output, kept for error messages
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def require_loopback(url: str) -> str:
    """The bench sends traffic to this machine only."""
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK:
        raise SystemExit(f"bench: refusing {url!r}: the bench talks to 127.0.0.1 only")
    return url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- storage -------------------------------------------------------------------


async def postgres_reachable(admin_url: str) -> str | None:
    """The server version when the admin URL answers, else None."""
    engine = create_async_engine(admin_url, connect_args={"timeout": 3})
    try:
        async with engine.connect() as connection:
            return (await connection.execute(text("SHOW server_version"))).scalar()
    except Exception:
        return None
    finally:
        await engine.dispose()


async def redis_reachable(url: str) -> str | None:
    """The server version when Redis answers, else None."""
    client = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        return (await client.info("server"))["redis_version"]
    except Exception:
        return None
    finally:
        await client.aclose()


async def _admin(admin_url: str, statement: str) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def delete_prefix(redis_url: str, prefix: str) -> int:
    client = aioredis.Redis.from_url(redis_url, socket_timeout=30)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                deleted += await client.unlink(*batch)
                batch = []
        if batch:
            deleted += await client.unlink(*batch)
    finally:
        await client.aclose()
    return deleted


@dataclass
class Storage:
    """One data set's SQL database and Redis key prefix (PostgreSQL + Redis, or SQLite + fakeredis)."""

    name: str  # the database name (PostgreSQL) or file stem (SQLite)
    redis_prefix: str
    admin_url: str | None  # None: the embedded default
    redis_url: str | None
    workdir: Path
    created: bool = field(default=False, init=False)

    @property
    def database_url(self) -> str:
        if self.admin_url is None:
            return f"sqlite+aiosqlite:///{self.workdir / (self.name + '.db')}"
        return make_url(self.admin_url).set(database=self.name).render_as_string(hide_password=False)

    async def create(self) -> None:
        """A fresh, migrated database and an empty key prefix (leftovers of a killed run removed)."""
        await self.drop()
        if self.admin_url is not None:
            # CREATE DATABASE takes no bind parameters; the name is the bench's own constant.
            await _admin(self.admin_url, f'CREATE DATABASE "{self.name}"')
        self.created = True
        env = {**clean_env(), "LINKGATE_DATABASE_URL": self.database_url}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service", "migrate", cwd=REPO, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"python -m service migrate failed:\n{out.decode(errors='replace')}")

    async def drop(self) -> None:
        if self.admin_url is not None:
            await _admin(self.admin_url, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        else:
            for suffix in (".db", ".db-wal", ".db-shm"):
                with contextlib.suppress(FileNotFoundError):
                    (self.workdir / (self.name + suffix)).unlink()
        if self.redis_url is not None:
            await delete_prefix(self.redis_url, self.redis_prefix)
        self.created = False

    async def code_lookups(self, timeout: float = 30.0) -> tuple[int, int] | None:
        """SQL lookups by code so far: PostgreSQL's index scans of links.code (uq_links_code),
        and the sequential scans of links (which would hide lookups from that count).

        Each code of a ``code IN (...)`` list counts as one index scan (PostgreSQL 15 runs one
        primitive scan per distinct array element). A backend flushes its statistics now and
        then (up to 10 s late) and always when it exits, before it leaves pg_stat_activity; so
        this waits until nothing is connected to the database: call it with the service stopped.
        None on SQLite.
        """
        if self.admin_url is None:
            return None
        admin = create_async_engine(self.admin_url)
        try:
            async with admin.connect() as connection:
                connected = text("SELECT count(*) FROM pg_stat_activity WHERE datname = :name")
                deadline = time.monotonic() + timeout
                while (await connection.execute(connected, {"name": self.name})).scalar():
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"connections to {self.name} stayed open")
                    await asyncio.sleep(0.05)
        finally:
            await admin.dispose()
        engine = create_async_engine(self.database_url, poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                index_scans = text(
                    "SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_indexes "
                    "WHERE relname = 'links' AND indexrelname = 'uq_links_code'"
                )
                seq_scans = text("SELECT coalesce(sum(seq_scan), 0) FROM pg_stat_user_tables WHERE relname = 'links'")
                return (
                    int((await connection.execute(index_scans)).scalar()),
                    int((await connection.execute(seq_scans)).scalar()),
                )
        finally:
            await engine.dispose()


def clean_env() -> dict[str, str]:
    """This process's environment without any LINKGATE_* setting, so only the bench's apply."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LINKGATE_") and k != "PROMETHEUS_MULTIPROC_DIR"}


# --- servers -------------------------------------------------------------------


@dataclass
class Server:
    """A server process on 127.0.0.1, pinned with taskset when `cpu` is set."""

    name: str
    argv: list[str]
    port: int
    env: dict[str, str]
    log_path: Path
    ready_path: str
    cpu: int | None = None
    process: subprocess.Popen | None = field(default=None, init=False)
    _tail: bytearray = field(default_factory=bytearray, init=False, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self, timeout: float = 60.0) -> None:
        argv = (["taskset", "-c", str(self.cpu)] if self.cpu is not None else []) + self.argv
        # stdout is a pipe that a thread here drains, as a container runtime
        # drains a pod's: the service's access lines cost what they cost in
        # production, and no log file grows by gigabytes. The last TAIL_BYTES
        # are kept for error messages (and written to log_path at stop).
        # A session of its own: a Ctrl-C in the terminal reaches the bench,
        # which then stops the server itself, in order.
        self.process = subprocess.Popen(
            argv, cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._tail = bytearray()
        threading.Thread(target=self._drain, args=(self.process.stdout,), daemon=True).start()
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
                try:
                    response = await client.get(self.ready_path)
                    if response.status_code < 500:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s:\n{self.log_tail()}")
                await asyncio.sleep(0.2)

    def _drain(self, pipe) -> None:
        fd = pipe.fileno()
        while chunk := os.read(fd, 1 << 16):
            self._tail += chunk
            if len(self._tail) > 2 * TAIL_BYTES:
                del self._tail[:-TAIL_BYTES]
        pipe.close()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(bytes(self._tail[-TAIL_BYTES:]).decode(errors="replace").splitlines()[-lines:])

    async def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
        with contextlib.suppress(OSError):
            self.log_path.write_bytes(bytes(self._tail[-TAIL_BYTES:]))


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="linkgate-bench-"))
