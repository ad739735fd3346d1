"""Pure parts of access control: rates, client addresses, durations, key redaction."""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.access.addresses import ClientAddresses
from service.access.keys import parse_duration, redact
from service.access.rates import Rate, parse_rate
from service.config import Settings


@pytest.mark.parametrize(("text", "rate"), [
    pytest.param("100/minute", Rate(100, 60), id="per-minute"),
    pytest.param("5/second", Rate(5, 1), id="per-second"),
    pytest.param(" 7 / Hours ", Rate(7, 3600), id="spaces-plural-case"),
    pytest.param("30 per minute", Rate(30, 60), id="per-word"),
    pytest.param("off", None, id="off"),
])
def test_rates_parse(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "100", "0/minute", "-1/minute", "1/day", "ten/minute", "1/minute/2"])
def test_a_rate_that_does_not_parse_is_refused_at_start(text):
    with pytest.raises(ValueError):
        parse_rate(text)
    with pytest.raises(ValueError):
        Settings(rate_limit_per_key=text)


def scope(peer: str, forwarded: str | None = None) -> dict:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return {"client": (peer, 4321), "headers": headers}


@pytest.mark.parametrize(("trusted", "peer", "forwarded", "client"), [
    pytest.param([], "203.0.113.5", "1.2.3.4", "203.0.113.5", id="no-proxies-header-ignored"),
    pytest.param(["10.0.0.0/8"], "203.0.113.5", "1.2.3.4", "203.0.113.5", id="untrusted-peer-header-ignored"),
    pytest.param(["10.0.0.0/8"], "10.1.1.1", "198.51.100.7", "198.51.100.7", id="one-proxy"),
    pytest.param(["10.0.0.0/8"], "10.1.1.1", "6.6.6.6, 198.51.100.7", "198.51.100.7", id="forged-left-entry"),
    pytest.param(["10.0.0.0/8"], "10.1.1.1", "198.51.100.7, 10.2.2.2", "198.51.100.7", id="two-proxies"),
    pytest.param(["10.0.0.0/8"], "10.1.1.1", "10.3.3.3, 10.2.2.2", "10.3.3.3", id="all-trusted-leftmost"),
    pytest.param(["10.0.0.0/8"], "10.1.1.1", None, "10.1.1.1", id="proxy-without-header"),
    pytest.param(["10.0.0.0/8"], "10.1.1.1", "[2001:db8::1]:443", "2001:db8::1", id="bracketed-v6-with-port"),
    pytest.param(["10.0.0.0/8"], "10.1.1.1", "198.51.100.7:5555", "198.51.100.7", id="v4-with-port"),
    pytest.param(["::1/128"], "::1", "2001:db8::2", "2001:db8::2", id="v6-proxy"),
    pytest.param([], "::ffff:192.0.2.1", None, "192.0.2.1", id="mapped-v4-peer"),
])
def test_the_client_address_is_the_first_one_a_trusted_proxy_did_not_add(trusted, peer, forwarded, client):
    assert ClientAddresses(trusted).of(scope(peer, forwarded)) == client


def test_trusted_proxies_must_be_networks():
    with pytest.raises(ValueError, match="trusted_proxies"):
        Settings(trusted_proxies="10.0.0.0/8,ingress")
    assert Settings(trusted_proxies="10.0.0.0/8, fc00::/7").trusted_proxies == ["10.0.0.0/8", "fc00::/7"]


@pytest.mark.parametrize(("text", "delta"), [
    ("90d", timedelta(days=90)), ("12h", timedelta(hours=12)), ("30m", timedelta(minutes=30)),
    ("2w", timedelta(weeks=2)), ("3600s", timedelta(hours=1)),
])
def test_durations(text, delta):
    assert parse_duration(text) == delta


@pytest.mark.parametrize("text", ["", "0d", "90", "1y", "d", "-1d", "1.5d"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_redact_keeps_the_public_id_and_hides_the_secret():
    key = "lg_0123456789ab_" + "f" * 48
    assert redact(f"/api/v1/keys/{key}") == "/api/v1/keys/lg_0123456789ab_<redacted>"
    assert redact("/plain/path") == "/plain/path"
