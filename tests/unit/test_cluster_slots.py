"""On Redis Cluster nothing may span two slots: the keys each script or multi-key command touches share one."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from service.access.limiter import ApiLimiter, ScanGuard
from service.coordination.lock import FencedLock
from service.lifecycle.visit_limits import VisitLimits
from service.store.cache import LinkCache
from service.visits.stream import VisitStream

PREFIX = "lg:"


def slot(key: str | bytes) -> int:
    return key_slot(key.encode() if isinstance(key, str) else key)


@pytest.mark.parametrize("code", ["abc123", "Zx9", "my-alias", "a" * 64], ids=["generated", "short", "alias", "longest"])
def test_a_links_cached_entry_and_its_visit_counter_share_one_slot(code):
    cache = LinkCache(None, prefix=PREFIX, ttl_seconds=1, miss_ttl_seconds=1)
    limits = VisitLimits(None, None, prefix=PREFIX)
    assert slot(cache.key(code)) == slot(limits.key(code))


def test_different_links_spread_over_the_slots():
    cache = LinkCache(None, prefix=PREFIX, ttl_seconds=1, miss_ttl_seconds=1)
    slots = {slot(cache.key(f"code{n}")) for n in range(1000)}
    assert len(slots) > 900


def test_the_lock_and_its_fence_share_one_slot():
    lock = FencedLock(None, "coordinator", prefix=PREFIX)
    assert slot(lock.key) == slot(lock.fence_key)


def test_a_rate_limit_scripts_two_windows_share_one_slot():
    current, previous = ApiLimiter(None, prefix=PREFIX).keys("key", "k_abc", 1000)
    assert slot(current) == slot(previous)
    guard = ScanGuard(None, prefix=PREFIX, rate=None)
    assert slot(f"{guard._tag('192.0.2.1')}:7") == slot(f"{guard._tag('192.0.2.1')}:6")


def test_the_visit_stream_and_its_sent_markers_share_one_slot():
    stream = VisitStream(None, prefix=PREFIX, retention_seconds=60)
    assert slot(stream.key) == slot(stream.sent_marker("envelope-1")) == slot(stream.sent_marker("other"))
