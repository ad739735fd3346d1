"""No raw address leaves the process: networks, not addresses; visitor hashes under a daily salt."""

from __future__ import annotations

import ipaddress

import fakeredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.visits.anonymise import SECONDS_PER_DAY, DailySalts, anonymise, day_of, visitor_hash
from service.visits.referrer import referrer_parts


@pytest.mark.parametrize(("address", "network"), [
    pytest.param("203.0.113.77", "203.0.113.0", id="ipv4-to-24"),
    pytest.param("10.1.2.255", "10.1.2.0", id="ipv4-private"),
    pytest.param("2001:db8:abcd:12:34:56:78:9a", "2001:db8:abcd::", id="ipv6-to-48"),
    pytest.param("2001:DB8:ABCD:FFFF::1", "2001:db8:abcd::", id="ipv6-upper-case"),
    pytest.param("::1", "::", id="ipv6-loopback"),
    pytest.param("::ffff:203.0.113.77", "203.0.113.0", id="ipv4-mapped-as-ipv4"),
    pytest.param("2002:cb00:714d::1", "203.0.113.0", id="6to4-as-its-ipv4"),
    pytest.param("64:ff9b::cb00:714d", "203.0.113.0", id="nat64-as-its-ipv4"),
    pytest.param("unknown", None, id="not-an-address"),
    pytest.param("", None, id="empty"),
])
def test_an_address_is_cut_to_its_network(address, network):
    assert anonymise(address) == network


def test_fewer_bits_may_be_kept_but_never_more_than_24_or_48():
    assert anonymise("203.0.113.77", ipv4_bits=16) == "203.0.0.0"
    assert anonymise("2001:db8:abcd:12::1", ipv6_bits=32) == "2001:db8::"
    from service.config import Settings

    with pytest.raises(ValueError):
        Settings(tracking_ipv4_prefix=25)
    with pytest.raises(ValueError):
        Settings(tracking_ipv6_prefix=64)


@given(st.ip_addresses())
def test_no_address_keeps_its_host_bits(ip):
    network = ipaddress.ip_address(anonymise(str(ip)))
    if ip.version == 6 and (ip.ipv4_mapped or ip.sixtofour or ip in ipaddress.ip_network("64:ff9b::/96")):
        assert network.version == 4
    elif ip.version == 6:
        assert int(network) == int(ip) >> 80 << 80
    if network.version == 4:
        assert int(network) & 0xFF == 0


def test_the_visitor_hash_is_64_bits_and_depends_on_salt_address_and_user_agent():
    one = visitor_hash(b"s" * 32, "203.0.113.7", "Firefox")
    assert len(one) == 16 and int(one, 16) >= 0
    assert visitor_hash(b"s" * 32, "203.0.113.7", "Firefox") == one
    assert visitor_hash(b"t" * 32, "203.0.113.7", "Firefox") != one
    assert visitor_hash(b"s" * 32, "203.0.113.8", "Firefox") != one
    assert visitor_hash(b"s" * 32, "203.0.113.7", "Chrome") != one


async def test_the_salt_rotates_every_utc_day_and_every_process_shares_it():
    redis = fakeredis.FakeAsyncRedis()
    day = day_of(1_764_547_200)  # 2025-12-01 00:00 UTC
    noon = day * SECONDS_PER_DAY + 43_200
    first, second = DailySalts(redis, prefix="t:"), DailySalts(redis, prefix="t:")
    today = await first.for_day(day, now=noon)
    assert await second.for_day(day, now=noon) == today  # another replica: the same salt
    assert await first.for_day(day + 1, now=noon + SECONDS_PER_DAY) != today
    assert len(today) == 32


async def test_a_salt_lives_only_in_redis_and_expires_a_day_after_its_day():
    redis = fakeredis.FakeAsyncRedis()
    salts = DailySalts(redis, prefix="t:")
    day = day_of(1_764_547_200)
    await salts.for_day(day, now=day * SECONDS_PER_DAY + 3600)
    ttl = await redis.ttl(salts.key(day))
    assert ttl == 2 * SECONDS_PER_DAY - 3600
    assert salts.key(day) == "t:visits-salt:2025-12-01"


@pytest.mark.parametrize(("header", "keep_path", "expected"), [
    pytest.param("https://news.ycombinator.com/item?id=1", False, ("news.ycombinator.com", None), id="host-only"),
    pytest.param("https://news.ycombinator.com/item?id=1", True, ("news.ycombinator.com", "/item"), id="path-no-query"),
    pytest.param("https://t.co/AbC#frag", True, ("t.co", "/AbC"), id="no-fragment"),
    pytest.param("https://WWW.Example.COM.:8443/a/b", True, ("www.example.com", "/a/b"), id="case-port-dot"),
    pytest.param("https://user:secret@mail.example/inbox", True, ("mail.example", "/inbox"), id="no-user-info"),
    pytest.param("http://[2001:db8::1]:8080/x", True, ("[2001:db8::1]", "/x"), id="ipv6-host"),
    pytest.param("https://example.com", True, ("example.com", "/"), id="no-path"),
    pytest.param("https://example.com?q=1", True, ("example.com", "/"), id="query-right-after-host"),
    pytest.param("android-app://com.google.android.gm/", False, ("com.google.android.gm", None), id="android-app"),
    pytest.param("example.com/page", False, (None, None), id="no-scheme"),
    pytest.param("://nohost", False, (None, None), id="empty-scheme"),
    pytest.param("https:///path", False, (None, None), id="empty-host"),
    pytest.param("https://exa mple.com/", False, (None, None), id="space-in-host"),
    pytest.param("javascript:alert(1)", False, (None, None), id="not-a-url"),
    pytest.param("https://" + "a" * 300 + ".com/", False, (None, None), id="host-too-long"),
])
def test_referrer_parts(header, keep_path, expected):
    assert referrer_parts(header, keep_path=keep_path) == expected


def test_a_long_referrer_path_is_cut():
    _, path = referrer_parts("https://example.com/" + "p" * 2000, keep_path=True)
    assert len(path) == 512
