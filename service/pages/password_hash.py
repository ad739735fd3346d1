"""Link passwords, hashed with argon2id (argon2-cffi's defaults: RFC 9106's second recommended setting).

Hashing and verifying cost 64 MiB and, by design, real CPU time each
(~0.24 s measured on the 2-core development machine under load), so both
run in a worker thread, never on the event loop; the attempt limits
(password.py) bound how many a guesser can make anyone compute. Only the
PHC string (``$argon2id$v=19$m=65536,t=3,p=4$...``) is stored; it carries
its own salt and parameters, so stronger defaults later still verify old
hashes.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()

MAX_PASSWORD_LENGTH = 256


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


def _verify(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str, password: str) -> bool:
    """Whether `password` is the one `stored` was hashed from (argon2 compares in constant time)."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    return await asyncio.to_thread(_verify, stored, password)
