"""wrk: find or install it, build its command line, and read what it prints."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_DIR = Path(__file__).parent / "lua"
WRK_PACKAGE = "wrk"  # the Debian package

# wrk prints times as 123.45us, 2.01ms, 1.00s, 1.20m or 1.00h.
_TIME_TO_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_TIME = r"([0-9.]+)(us|ms|s|m|h)"

_REQUESTS = re.compile(r"^\s*(\d+) requests in " + _TIME + r", ", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([0-9.]+)\s*$", re.M)
_PERCENTILE = re.compile(r"^\s+(50|75|90|99)(?:\.0+)?%\s+" + _TIME + r"\s*$", re.M)
_LATENCY = re.compile(r"^\s+Latency\s+" + _TIME + r"\s+" + _TIME + r"\s+" + _TIME, re.M)
_SOCKET = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)
_NON_2XX_3XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_DISTINCT = re.compile(r"^bench-distinct-paths: (\d+)\s*$", re.M)


class WrkOutputError(ValueError):
    """wrk printed something this parser does not understand (or nothing at all)."""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run, as wrk reported it. Latencies in milliseconds."""

    requests: int
    duration_s: float
    requests_per_s: float
    latency_avg_ms: float
    latency_max_ms: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeouts: int = 0
    non_2xx_3xx: int = 0
    # Printed by bench/lua/codes.lua's done(); None for the other scripts.
    distinct_paths: int | None = None

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts


def _ms(value: str, unit: str) -> float:
    return float(value) * _TIME_TO_MS[unit]


def parse_output(text: str) -> WrkResult:
    """Read `wrk --latency` output (with or without error lines and script output)."""
    requests = _REQUESTS.search(text)
    rps = _RPS.search(text)
    latency = _LATENCY.search(text)
    percentiles = {int(m.group(1)): _ms(m.group(2), m.group(3)) for m in _PERCENTILE.finditer(text)}
    if requests is None or rps is None or latency is None:
        raise WrkOutputError(f"not wrk --latency output:\n{text[:2000]}")
    missing = {50, 75, 90, 99} - percentiles.keys()
    if missing:
        raise WrkOutputError(f"no latency distribution for {sorted(missing)} (was --latency given?)")
    socket = _SOCKET.search(text)
    connect, read, write, timeout = (int(g) for g in socket.groups()) if socket else (0, 0, 0, 0)
    non_2xx = _NON_2XX_3XX.search(text)
    distinct = _DISTINCT.search(text)
    return WrkResult(
        requests=int(requests.group(1)),
        duration_s=_ms(requests.group(2), requests.group(3)) / 1e3,
        requests_per_s=float(rps.group(1)),
        latency_avg_ms=_ms(latency.group(1), latency.group(2)),
        latency_max_ms=_ms(latency.group(5), latency.group(6)),
        p50_ms=percentiles[50],
        p75_ms=percentiles[75],
        p90_ms=percentiles[90],
        p99_ms=percentiles[99],
        connect_errors=connect,
        read_errors=read,
        write_errors=write,
        timeouts=timeout,
        non_2xx_3xx=int(non_2xx.group(1)) if non_2xx else 0,
        distinct_paths=int(distinct.group(1)) if distinct else None,
    )


def command(
    *,
    url: str,
    script: str,
    script_args: list[str],
    seconds: int,
    connections: int,
    threads: int = 1,
    cpu: int | None = None,
) -> list[str]:
    """The wrk command line; `cpu` pins wrk with taskset. Arguments after the URL reach init(args)."""
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(LUA_DIR / script),
        url,
        *script_args,
    ]
    return (["taskset", "-c", str(cpu)] + cmd) if cpu is not None else cmd


def version() -> str:
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0] if first else "unknown"


def ensure_installed(log=print) -> None:
    """wrk on PATH, installing the Debian package if need be; SystemExit naming the package if not."""
    if shutil.which("wrk"):
        return
    if shutil.which("apt-get") is None:
        raise SystemExit(f"bench: wrk is not installed and apt-get is missing: install the '{WRK_PACKAGE}' package")
    log(f"bench: wrk not found; apt-get install -y {WRK_PACKAGE}")
    install = ["apt-get", "install", "-y", "-q", WRK_PACKAGE]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    if subprocess.run(install, check=False, **quiet).returncode != 0:
        log("bench: install failed; apt-get update, then trying again")
        subprocess.run(["apt-get", "update", "-q"], check=False, **quiet)
        subprocess.run(install, check=False, **quiet)
    if shutil.which("wrk") is None:
        raise SystemExit(
            f"bench: could not install wrk: install the Debian package '{WRK_PACKAGE}' (apt-get install {WRK_PACKAGE})"
        )
