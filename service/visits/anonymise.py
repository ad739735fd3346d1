"""No raw client address leaves the process: addresses are cut to their network, visitors hashed.

- ``anonymise``: IPv4 to its /24 and IPv6 to its /48 (fewer bits when the
  operator asks; never more). IPv6 forms that carry an IPv4 address inside
  them (IPv4-mapped ``::ffff:a.b.c.d``, 6to4 ``2002::/16`` and NAT64
  ``64:ff9b::/96``) are cut as that IPv4 address, since their /48 would keep
  all of it (6to4) or none of the visitor's (NAT64).
- ``visitor_hash``: a keyed hash of the raw address and the User-Agent, so
  uniques can be counted without keeping either. It is keyed BLAKE2b, a MAC
  in its own right (RFC 7693 section 2.9) that does HMAC's job here at a third
  of HMAC-SHA256's cost, cut to 64 bits (collisions among one link's
  visitors of one day are far below one in a million).
- ``DailySalts``: the hash's key, one random salt per UTC day, shared by every
  process through Redis and kept there only until a day after its own day
  ends: it is never written to SQL, to the stream or to a log, so once it
  expires nobody, the operator included, can tell which address or
  User-Agent a stored hash came from.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import secrets
from datetime import date, timedelta

SECONDS_PER_DAY = 86400
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# How long a day's salt outlives the day: events recorded just before
# midnight are still hashed with it while they wait to be sent.
SALT_GRACE_SECONDS = SECONDS_PER_DAY


def anonymise(address: str, *, ipv4_bits: int = 24, ipv6_bits: int = 48) -> str | None:
    """The network part of a client address, as text; None if it is not an IP address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.version == 6:
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            ip = embedded
        else:
            mask = ((1 << ipv6_bits) - 1) << (128 - ipv6_bits)
            return str(ipaddress.IPv6Address(int(ip) & mask))
    mask = ((1 << ipv4_bits) - 1) << (32 - ipv4_bits)
    return str(ipaddress.IPv4Address(int(ip) & mask))


def visitor_hash(salt: bytes, address: str, user_agent: str) -> str:
    """64 bits (hex) that are the same for one address and User-Agent under one salt, and say nothing else."""
    message = address.encode() + b"\n" + user_agent.encode("utf-8", "replace")
    return hashlib.blake2b(message, key=salt, digest_size=8).hexdigest()


def day_of(timestamp: float) -> int:
    """The UTC day of a Unix time, as days since 1970-01-01."""
    return int(timestamp // SECONDS_PER_DAY)


def day_date(day: int) -> date:
    return date(1970, 1, 1) + timedelta(days=day)


class DailySalts:
    """One random salt per UTC day, agreed on by every process through Redis.

    Key ``<prefix>visits-salt:<YYYY-MM-DD>`` (no hash tag: it stands alone):
    32 random bytes, set once with ``SET NX`` by whichever process needs it
    first, expiring a day after its day ends. Each process remembers the
    salts of the days it is hashing, so Redis is asked once per day per
    process. Raises whatever the Redis client raises when Redis is away (the
    recorder then keeps its events until it is back).
    """

    def __init__(self, redis, *, prefix: str, timeout_seconds: float = 0.5) -> None:
        self._redis = redis
        self._prefix = prefix
        self._timeout = timeout_seconds
        self._known: dict[int, bytes] = {}

    def key(self, day: int) -> str:
        return f"{self._prefix}visits-salt:{day_date(day).isoformat()}"

    async def for_day(self, day: int, *, now: float) -> bytes:
        known = self._known.get(day)
        if known is not None:
            return known
        expires_in = max(1, int((day + 1) * SECONDS_PER_DAY + SALT_GRACE_SECONDS - now))
        key = self.key(day)
        async with asyncio.timeout(self._timeout):
            pipe = self._redis.pipeline(transaction=False)
            pipe.set(key, secrets.token_bytes(32), nx=True, ex=expires_in)
            pipe.get(key)
            _, salt = await pipe.execute()
        if not salt:
            raise ConnectionError(f"the visitor salt {key} vanished as it was set")
        # Only the days still being hashed: yesterday's for late events, today's.
        self._known = {d: s for d, s in self._known.items() if d >= day - 1}
        self._known[day] = salt
        return salt
