"""The bench's floors (bench/floor.py) and how their figures read: in process, fakeredis for the round trip."""

from __future__ import annotations

import fakeredis
import httpx
import pytest

from bench import floor, run
from bench.report import Check, WorkloadResult
from bench.wrk import WrkResult


def _wrk(rps: float) -> WrkResult:
    return WrkResult(requests=int(rps * 10), duration_s=10.0, requests_per_s=rps, latency_avg_ms=1.0,
                     latency_max_ms=9.0, p50_ms=1.0, p75_ms=1.5, p90_ms=2.0, p99_ms=5.0)


@pytest.fixture
def counter(monkeypatch):
    client = fakeredis.FakeAsyncRedis()
    monkeypatch.setattr(floor, "_redis", client)
    return client


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://floor")


async def test_create_floor_answers_like_a_create_and_validates_like_one(counter):
    url = "https://www.example.com/articles/2026/11/floor-0000001?ref=newsletter"
    async with _client(floor.create) as client:
        made = await client.post("/api/v1/links", json={"url": url, "tags": ["a"]},
                                 headers={"Authorization": "Bearer lg_x_y"})
        refused = await client.post("/api/v1/links", json={"url": url, "no_such_field": 1})
    assert made.status_code == 201
    body = made.json()
    assert (body["url"], body["status"], body["tags"], body["redirect_status"]) == (url, "active", ["a"], 302)
    assert refused.status_code == 422  # LinkCreate forbids unknown fields: the same validation a create runs
    assert await counter.get(floor._KEY) is None  # the plain floor makes no round trip


async def test_redis_floors_make_one_round_trip_a_request(counter):
    async with _client(floor.create_redis) as client:
        for n in range(3):
            assert (await client.post("/api/v1/links", json={"url": f"https://example.com/{n}"})).status_code == 201
    assert int(await counter.get(floor._KEY)) == 3
    async with _client(floor.redirect_redis) as client:
        answer = await client.get("/anything")
    assert answer.status_code == 302
    assert answer.headers["location"] == floor._START["headers"][0][1].decode()
    assert int(await counter.get(floor._KEY)) == 4


def test_floor_figures_compare_the_service_with_its_floor():
    service = WorkloadResult(key="create", title="create", wrk=_wrk(900.0))
    plain = WorkloadResult(key="floor_create", title="floor: plain", wrk=_wrk(3600.0), ceiling_rps=36_000.0)
    short = WorkloadResult(key="floor_create_redis", title="floor: redis", wrk=_wrk(1800.0), ceiling_rps=36_000.0,
                           checks=[Check("17,000 Redis round trips for 18,000 answers", False)])
    broken = WorkloadResult(key="floor_redirect_redis", title="floor: broken", error="wrk exited with 1")
    figures = run.Floors.figures(service, [plain, short, broken])
    assert [f.measured for f in figures] == [
        "3,600 req/s, 0.10 of the ceiling; the service's create run reached 0.25 of it",
        "1,800 req/s, 0.05 of the ceiling; the service's create run reached 0.50 of it "
        "(FAILED: 17,000 Redis round trips for 18,000 answers)",
        "FAILED: wrk exited with 1",
    ]
