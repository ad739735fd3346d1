"""The uniform redirect workload on one Redis and on a three-master Redis Cluster, side by side.

    python -m bench.cluster_bench [--links 100000] [--seconds 10]

Stores of its own (bench/own_stores.py): a PostgreSQL cluster, one
redis-server, and a Redis Cluster of three masters on one machine. It seeds
the links once, then for each Redis (single, cluster, cluster, single: the
order cancels the machine's drift) starts one server process pinned to CPU 0
with its Redis warmed (`python -m service warm-cache`), drives it with wrk on
CPU 1 (uniform over every link, 64 connections), and reads from /metrics
where the lookups were answered. Access log off, so the figure is the
redirect and its Redis lookup.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from service.config import Settings

from . import wrk
from .chaos import Linkgate, _service
from .own_stores import OwnCluster, OwnPostgres, OwnRedis, stop_quietly, workdir
from .seed import seed, write_codes
from .stack import clean_env

_LOOKUPS = re.compile(r'^linkgate_cache_lookups_total\{layer="(\w+)",result="(\w+)"\} ([0-9.e+]+)$', re.M)


async def lookups(base_url: str) -> dict[tuple[str, str], float]:
    async with httpx.AsyncClient(base_url=base_url) as client:
        text = (await client.get("/metrics")).text
    return {(layer, result): float(value) for layer, result, value in _LOOKUPS.findall(text)}


async def one_run(name: str, *, database_url: str, redis_url: str, cluster: bool, codes_file: Path, links: int,
                  seconds: int, work: Path) -> dict:
    settings = {"redis_cluster": "true"} if cluster else {}
    linkgate = Linkgate.on(database_url=database_url, redis_url=redis_url, work=work, **settings)
    linkgate.server.cpu = 0
    linkgate.env["LINKGATE_UNKNOWN_CODE_LIMIT_PER_ADDRESS"] = "off"
    linkgate.key = "unused"  # migrated and seeded already
    _service(linkgate.env, "warm-cache", "--limit", str(links), timeout=600)
    await linkgate.server.start()
    try:
        before = await lookups(linkgate.server.base_url)
        out = subprocess.run(wrk.command(url=linkgate.server.base_url, script="codes.lua",
                                         script_args=[str(codes_file), "", "7"], seconds=seconds, connections=64,
                                         cpu=1), capture_output=True, text=True, check=True).stdout
        after = await lookups(linkgate.server.base_url)
    finally:
        await linkgate.server.stop()
    result = wrk.parse_output(out)
    delta = {key: after.get(key, 0) - before.get(key, 0) for key in after}
    total = sum(delta.values()) or 1
    return {"name": name, "rps": result.requests_per_s, "p99": result.p99_ms, "non_3xx": result.non_2xx_3xx,
            "errors": result.socket_errors,
            "redis_hit": delta.get(("redis", "hit"), 0) / total, "local_hit": delta.get(("local", "hit"), 0) / total,
            "redis_error": delta.get(("redis", "error"), 0) / total}


async def main_async(links: int, seconds: int) -> list[dict]:
    wrk.ensure_installed()
    work = workdir()
    pg, single, cluster = OwnPostgres(work, "pg"), OwnRedis(work), OwnCluster(work)
    try:
        pg.init()
        pg.start()
        single.start()
        cluster.start()
        env = {**clean_env(), "LINKGATE_DATABASE_URL": pg.url()}
        _service(env, "migrate")
        seeded = await seed(Settings(database_url=pg.url(), hashids_salt="chaos-drill", access_log=False), links,
                            chunk=10_000,
                            progress=lambda line: print(line, flush=True))
        codes_file = write_codes(Path(tempfile.mkdtemp(dir=work)) / "codes.txt", seeded.codes)
        runs = []
        for name in ("single", "cluster", "cluster", "single"):
            url = cluster.url if name == "cluster" else single.url
            runs.append(await one_run(name, database_url=pg.url(), redis_url=url, cluster=name == "cluster",
                                      codes_file=codes_file, links=links, seconds=seconds, work=work))
            print(runs[-1], flush=True)
        return runs
    finally:
        stop_quietly(cluster, single, pg)
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--links", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args(argv)
    runs = asyncio.run(main_async(args.links, args.seconds))
    print("| Redis | req/s | p99 | lookups answered by Redis | by local memory | Redis errors | non-3xx |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        print(f"| {run['name']} | {run['rps']:,.0f} | {run['p99']:.1f} ms | {run['redis_hit']:.1%} | "
              f"{run['local_hit']:.1%} | {run['redis_error']:.1%} | {run['non_3xx']} |")
    single = [r["rps"] for r in runs if r["name"] == "single"]
    on_cluster = [r["rps"] for r in runs if r["name"] == "cluster"]
    print(f"cluster / single: {sum(on_cluster) / sum(single):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
