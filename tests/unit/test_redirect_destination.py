"""What a cached link keeps in memory for its visits with a query string."""

import gc

import pytest

from service.config import Settings
from service.query_filter import FilterLimits, QueryPolicy, compile_filter
from service.redirect import Destination

TARGET = "https://shop.example/item?id=7#top"


@pytest.fixture
def limits():
    return FilterLimits.from_settings(Settings(query_deny=["fbclid"]))


def destination(limits, policy=None):
    compiled = compile_filter(policy, limits) if policy is None else None
    return Destination(status=302, url=TARGET, cache_control=b"no-store", limits=limits, compiled=compiled,
                       policy=policy or compiled.policy)


def own_tracked(entry: Destination) -> list:
    """Objects the garbage collector tracks that the entry holds and no other entry shares."""
    shared = (type(entry), entry._policy, entry._limits, entry._filter)
    return [obj for obj in gc.get_referents(entry) if gc.is_tracked(obj) and not any(obj is s for s in shared)]


@pytest.mark.parametrize("policy", [None, QueryPolicy(mode="forward", deny=["ref"], add={"src": "qr"})],
                         ids=["operator-default", "own-policy"])
def test_every_visit_gets_the_same_location_as_a_fresh_entry(limits, policy):
    entry = destination(limits, policy)
    for query in (b"utm_source=x&fbclid=z", b"utm_source=x&fbclid=z", b"ref=1&a=2", b"", b"a=%20b"):
        assert entry.location(query) == destination(limits, policy).location(query), query


def test_a_link_visited_once_with_a_query_keeps_nothing_the_collector_walks(limits):
    # Visits spread over many links see most cached entries once: what an entry kept
    # per link filled the garbage collector's young generation and paused the process.
    entry = destination(limits)
    entry.location(b"utm_source=x&fbclid=z")
    assert own_tracked(entry) == []


def test_a_link_visited_again_with_a_query_keeps_its_cut_target(limits):
    entry = destination(limits)
    entry.location(b"utm_source=x")
    entry.location(b"utm_source=y")
    kept = own_tracked(entry)
    assert len(kept) == 1 and kept[0].url == TARGET
    entry.location(b"utm_source=z")
    assert own_tracked(entry)[0] is kept[0]  # cut once, used from then on
