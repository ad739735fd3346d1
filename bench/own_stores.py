"""Stores a drill starts, breaks and stops itself: a redis-server, a PostgreSQL cluster (and its replica).

Each runs on a port of its own below 32768 (above it is the ephemeral range,
where a client socket in TIME-WAIT can hold the port a server then fails to
bind), in a temporary directory, and is stopped by its process id (Redis) or
``pg_ctl stop`` on its data directory (PostgreSQL). The machine's own
PostgreSQL and Redis are never touched.
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PORTS = range(20000, 32768)


def own_port() -> int:
    """A port below 32768 that nothing listens on now (tried from a random start)."""
    start = random.randrange(len(PORTS))
    for offset in range(len(PORTS)):
        port = PORTS[(start + offset) % len(PORTS)]
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port below 32768")


def _wait_for(check, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up in {timeout:.0f} s")
        time.sleep(0.05)


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


class OwnRedis:
    """One redis-server without persistence: killed, it comes back empty."""

    def __init__(self, workdir: Path, *, extra: tuple[str, ...] = ()) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not installed (Debian package redis-server)")
        self.port = own_port()
        self.dir = workdir / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.extra = extra
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_for(lambda: _answers(self.port), f"redis-server on {self.port}")

    def kill(self) -> None:
        """SIGKILL: what it held is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    stop = kill


class OwnCluster:
    """A Redis Cluster of `masters` redis-servers (no replicas, no persistence), made with redis-cli."""

    def __init__(self, workdir: Path, *, masters: int = 3, node_timeout_ms: int = 2000) -> None:
        self.nodes = [OwnRedis(workdir, extra=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                               "--cluster-node-timeout", str(node_timeout_ms)))
                      for _ in range(masters)]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        result = subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{node.port}" for node in self.nodes),
             "--cluster-replicas", "0", "--cluster-yes"], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {result.stdout}{result.stderr}")

        def ok() -> bool:
            info = subprocess.run(["redis-cli", "-p", str(self.nodes[0].port), "cluster", "info"],
                                  capture_output=True, text=True).stdout
            return "cluster_state:ok" in info

        _wait_for(ok, "the Redis Cluster")

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL's initdb is not installed (Debian package postgresql)")
    return Path(initdb).parent


class OwnPostgres:
    """A throwaway PostgreSQL cluster (initdb; trust auth on 127.0.0.1), or a streaming replica of one."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.bin = postgres_bin()
        self.port = own_port()
        self.data = workdir / name
        self.log = workdir / f"{name}.log"
        self.socket_dir = workdir

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> None:
        result = subprocess.run(_as_postgres([str(self.bin / argv[0]), *argv[1:]]), capture_output=True, text=True,
                                cwd="/")
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stdout}{result.stderr}")

    def _configure(self, lines: list[str]) -> None:
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("\n".join(lines) + "\n")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")
        self._configure([
            "listen_addresses = '127.0.0.1'", f"port = {self.port}", f"unix_socket_directories = '{self.socket_dir}'",
            "wal_level = replica", "max_wal_senders = 4", "fsync = off", "full_page_writes = off",
        ])
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write("host replication postgres 127.0.0.1/32 trust\n")

    def init_replica_of(self, primary: OwnPostgres) -> None:
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                  "-D", str(self.data), "-R", "-X", "stream")
        self._configure([f"port = {self.port}", "hot_standby = on"])

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    @property
    def pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.data / "postmaster.pid").read_text().split()[0])
        return None


def workdir() -> Path:
    """A temporary directory the postgres user may write in too."""
    path = Path(tempfile.mkdtemp(prefix="linkgate-drill-"))
    if os.geteuid() == 0:
        shutil.chown(path, "postgres")
    return path


def stop_quietly(*stores) -> None:
    for store in stores:
        if store is None:
            continue
        with contextlib.suppress(Exception):
            store.stop()


def terminate(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
