"""Access control on real PostgreSQL and Redis: the permission matrix, and limits shared by replicas."""

from __future__ import annotations

import asyncio

import pytest

from tests import permission_matrix
from tests.support import bearer, make_key, make_settings, running_app

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("role", "route", "whose", "expected"), permission_matrix.CASES)
async def test_permission_matrix_on_postgres_and_redis(pg_settings, role, route, whose, expected):
    async with running_app(pg_settings, None, role=None) as client:
        await permission_matrix.check_case(client, role, route, whose, expected)


async def test_a_key_limit_holds_across_two_replicas_sharing_one_redis(pg_url, redis_prefix, redis_target):
    settings = make_settings(pg_url, redis_key_prefix=redis_prefix, rate_limit_per_key="10/hour",
                             **redis_target.settings)
    async with running_app(settings, None, role=None) as a, running_app(settings, None, role=None) as b:
        key = await make_key(a.app, f"shared-{redis_prefix.rstrip(':')}", "reader")
        # Taking turns: each replica alone would let 10 through; together they let 10 through.
        turns = [(await (a if n % 2 else b).get("/api/v1/links", headers=bearer(key))).status_code
                 for n in range(14)]
        assert turns == [200] * 10 + [429] * 4, turns
        # And at once, from both: still nothing more.
        burst = await asyncio.gather(*((a if n % 2 else b).get("/api/v1/links", headers=bearer(key))
                                       for n in range(20)))
        assert {response.status_code for response in burst} == {429}


async def test_unknown_codes_from_one_address_are_limited_across_replicas(pg_url, redis_prefix, redis_target):
    settings = make_settings(pg_url, redis_key_prefix=redis_prefix, unknown_code_limit_per_address="6/hour",
                             **redis_target.settings)
    async with running_app(settings, None, role=None) as a, running_app(settings, None, role=None) as b:
        for n in range(4):
            assert (await a.get(f"/unknown-a{n}")).status_code == 404
        await a.app.state.scan_guard.flush()
        assert (await b.get("/unknown-b0")).status_code == 404
        await b.app.state.scan_guard.flush()  # B now knows A's 4 and its own 1
        assert (await b.get("/unknown-b1")).status_code == 404
        assert (await b.get("/unknown-b2")).status_code == 429
