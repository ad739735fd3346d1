"""What ran the bench: the machine and the versions of everything measured."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import service

from . import wrk
from .stack import REPO


def _cpuinfo_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine() -> dict[str, str]:
    return {
        "CPU": _cpuinfo_model(),
        "cores": str(os.cpu_count()),
        "memory": _memory(),
        "kernel": f"{platform.system()} {platform.release()}",
        "load average at start (1, 5, 15 min)": load_average(),
    }


def _dist(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "service"],
            cwd=REPO, capture_output=True, text=True, check=True,
        ).stdout.strip()
        return head + (" (service/ has uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions(*, postgres: str | None, redis: str | None) -> dict[str, str]:
    return {
        "linkgate": f"{service.__version__} (git {_git_commit()})",
        "Python": platform.python_version(),
        "uvicorn": _dist("uvicorn"),
        "uvloop": _dist("uvloop"),
        "httptools": _dist("httptools"),
        "SQLAlchemy": _dist("sqlalchemy"),
        "asyncpg": _dist("asyncpg"),
        "redis-py": _dist("redis"),
        "Redis server": redis or "not used (fakeredis in-process)",
        "PostgreSQL server": postgres or "not used (SQLite)",
        "wrk": wrk.version(),
    }
