"""Rate limits: per key, per address without a valid key, and unknown codes per address (clock injected)."""

from __future__ import annotations

import re

import fakeredis
import pytest

from service.access.limiter import decide
from service.access.rates import Rate
from tests.support import bearer, make_key, make_settings, migrate, running_app


class WallClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def limited_settings(sqlite_url):
    return make_settings(sqlite_url, rate_limit_per_key="5/minute", rate_limit_per_address="3/minute",
                         unknown_code_limit_per_address="4/minute")


@pytest.fixture
async def limited(limited_settings, redis_server):
    """An app with small limits, its limiters on a clock the test moves; the client sends no key itself."""
    await migrate(limited_settings.database_url)
    clock = WallClock()
    async with running_app(limited_settings, fakeredis.FakeAsyncRedis(server=redis_server), role=None) as client:
        client.app.state.api_limiter.clock = clock
        client.app.state.scan_guard.clock = clock
        client.clock = clock
        yield client


def parse_ratelimit(response) -> tuple[str, dict[str, int]]:
    name, *params = response.headers["ratelimit"].split(";")
    return name.strip('"'), {k: int(v) for k, v in (p.split("=") for p in params)}


async def test_a_key_over_its_limit_gets_429_with_retry_after_and_the_draft_headers(limited):
    key = await make_key(limited.app, "busy", "reader")
    for remaining in (4, 3, 2, 1, 0):
        response = await limited.get("/api/v1/links", headers=bearer(key))
        assert response.status_code == 200
        assert response.headers["ratelimit-policy"] == '"key";q=5;w=60'
        assert parse_ratelimit(response) [1]["r"] == remaining
    refused = await limited.get("/api/v1/links", headers=bearer(key))
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "urn:linkgate:problem:rate-limited"
    retry = int(refused.headers["retry-after"])
    assert 1 <= retry <= 120
    assert parse_ratelimit(refused)[1]["r"] == 0
    limited.clock.t += retry - 1
    assert (await limited.get("/api/v1/links", headers=bearer(key))).status_code == 429
    limited.clock.t += 1
    assert (await limited.get("/api/v1/links", headers=bearer(key))).status_code == 200


async def test_one_key_over_its_limit_never_slows_another(limited):
    noisy, quiet = await make_key(limited.app, "noisy", "reader"), await make_key(limited.app, "quiet", "reader")
    for _ in range(5):
        await limited.get("/api/v1/links", headers=bearer(noisy))
    assert (await limited.get("/api/v1/links", headers=bearer(noisy))).status_code == 429
    answered = await limited.get("/api/v1/links", headers=bearer(quiet))
    assert answered.status_code == 200 and parse_ratelimit(answered)[1]["r"] == 4


async def test_failed_authentications_count_against_the_address_and_stop_key_guessing(limited):
    key = await make_key(limited.app, "legit", "reader")
    for guess in range(3):
        response = await limited.get("/api/v1/links", headers={"X-Api-Key": f"lg_0123456789ab_{guess:048x}"})
        assert response.status_code == 401
        assert response.headers["ratelimit-policy"] == '"address";q=3;w=60'
    blocked = await limited.get("/api/v1/links", headers={"X-Api-Key": "lg_0123456789ab_" + "f" * 48})
    assert blocked.status_code == 429  # no more guesses, right or wrong
    assert (await limited.get("/api/v1/links")).status_code == 429
    # A valid key is limited per key, not per address: its owner keeps working.
    assert (await limited.get("/api/v1/links", headers=bearer(key))).status_code == 200


async def test_the_window_slides_so_a_burst_at_its_edge_cannot_double_the_limit(limited):
    key = await make_key(limited.app, "edgy", "reader")
    limited.clock.t = 1_800_000_000 // 60 * 60 + 59.0  # one second before a window ends
    for _ in range(5):
        assert (await limited.get("/api/v1/links", headers=bearer(key))).status_code == 200
    limited.clock.t += 2  # a new fixed window, but the last one still weighs 59/60: 4 of its 5 count
    assert [(await limited.get("/api/v1/links", headers=bearer(key))).status_code for _ in range(2)] == [200, 429]
    limited.clock.t += 45  # 14/60 of the old window left: 1 of its 5 counts, plus this window's 1
    allowed = [(await limited.get("/api/v1/links", headers=bearer(key))).status_code for _ in range(4)]
    assert allowed == [200, 200, 200, 429]


async def test_without_redis_the_api_is_not_limited(limited, redis_server):
    key = await make_key(limited.app, "offline", "reader")
    redis_server.connected = False
    for _ in range(8):
        response = await limited.get("/api/v1/links", headers=bearer(key))
        assert response.status_code == 200
        assert "ratelimit" not in response.headers


async def test_unknown_codes_from_one_address_get_429_but_known_codes_keep_redirecting(limited):
    admin = await make_key(limited.app, "boss", "admin")
    made = await limited.post("/api/v1/links", json={"url": "https://example.com/kept", "alias": "kept"},
                              headers=bearer(admin))
    assert made.status_code == 201
    for n in range(4):
        response = await limited.get(f"/nosuch{n}")
        assert response.status_code == 404
        assert response.headers["ratelimit-policy"] == '"unknown-codes";q=4;w=60'
    scanned = await limited.get("/nosuch-more", headers={"accept": "application/json"})
    assert scanned.status_code == 429
    assert scanned.json()["type"] == "urn:linkgate:problem:rate-limited"
    assert int(scanned.headers["retry-after"]) >= 1
    kept = await limited.get("/kept")
    assert (kept.status_code, kept.headers["location"]) == (302, "https://example.com/kept")
    assert "ratelimit" not in kept.headers  # a known code is never counted
    limited.clock.t += 120
    assert (await limited.get("/nosuch-again")).status_code == 404


async def test_the_unknown_code_limit_is_shared_through_redis_between_replicas(limited_settings, redis_server):
    await migrate(limited_settings.database_url)
    shared = fakeredis.FakeAsyncRedis(server=redis_server)
    clock = WallClock()
    async with running_app(limited_settings, shared, role=None) as a, \
            running_app(limited_settings, shared, role=None) as b:
        for replica in (a, b):
            replica.app.state.scan_guard.clock = clock
        for n in range(3):
            assert (await a.get(f"/scan{n}")).status_code == 404
        await a.app.state.scan_guard.flush()
        assert (await b.get("/scan-b")).status_code == 404  # B's own count: 1; it learns A's 3 on its flush
        await b.app.state.scan_guard.flush()
        assert (await b.get("/scan-b2")).status_code == 429


async def test_behind_a_trusted_proxy_each_forwarded_visitor_has_its_own_unknown_code_budget(sqlite_url, redis_server):
    settings = make_settings(sqlite_url, unknown_code_limit_per_address="2/minute", trusted_proxies="127.0.0.0/8")
    await migrate(sqlite_url)
    async with running_app(settings, fakeredis.FakeAsyncRedis(server=redis_server), role=None) as client:
        # httpx's in-process transport sends from 127.0.0.1: the trusted proxy.
        for visitor in ("203.0.113.7", "198.51.100.9"):
            forwarded = {"x-forwarded-for": f"10.9.9.9, {visitor}"}  # the left entry is the visitor's own claim
            assert [(await client.get(f"/x{n}", headers=forwarded)).status_code for n in range(3)] == [404, 404, 429]


@pytest.mark.parametrize(("current", "previous", "elapsed", "allowed", "remaining", "retry"), [
    pytest.param(0, 0, 0, True, 10, None, id="fresh"),
    pytest.param(10, 0, 30_000, False, 0, 31, id="full-now-wait-for-next-window"),
    pytest.param(6, 10, 30_000, False, 0, 7, id="previous-window-decaying"),
    pytest.param(20, 0, 0, False, 0, 91, id="double-full-takes-half-the-next-window-too"),
    pytest.param(3, 10, 30_000, True, 2, None, id="room-left"),
])
def test_decide_says_how_much_is_left_and_when_one_more_fits(current, previous, elapsed, allowed, remaining, retry):
    decision = decide("key", Rate(10, 60), allowed=allowed, current=current, previous=previous, elapsed_ms=elapsed)
    assert decision.remaining == remaining
    assert decision.retry_after == retry
    header = dict(decision.headers())
    assert re.fullmatch(rb'"key";r=\d+;t=\d+', header[b"ratelimit"])


@pytest.mark.parametrize("elapsed", [0, 1_500, 29_999, 59_999], ids=lambda e: f"{e}ms-into-window")
def test_the_unknown_code_fast_path_says_what_decide_says(elapsed):
    from service.access.limiter import ScanGuard

    rate = Rate(7, 60)
    clock = WallClock(1_800_000_000 // 60 * 60 + elapsed / 1000)
    guard = ScanGuard(fakeredis.FakeAsyncRedis(), prefix="t:", rate=rate, clock=clock)
    guard._shared["198.51.100.1"] = (int(clock() * 1000) // 60_000, 0, 5)  # the previous window held 5
    for count in range(10):
        allowed, headers, retry = guard.note("198.51.100.1")
        current = min(count + 1, guard._pending.get(("198.51.100.1", int(clock() * 1000) // 60_000), 0))
        reference = decide("unknown-codes", rate, allowed=allowed, current=current, previous=5, elapsed_ms=elapsed)
        assert (allowed, headers, retry) == (reference.allowed, reference.headers(), reference.retry_after), count
