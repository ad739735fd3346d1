"""Short codes: the hashids codec over SQL row ids, and the rules for custom aliases."""

from __future__ import annotations

import re

import functools

import hashids
from hashids import Hashids

from .errors import InvalidInput

# Every top-level path the service serves itself, now or in a planned issue.
# An alias may not take one of them, and the redirect gateway never treats
# them as codes. Compared case-insensitively, so `API` and `Docs` are refused too.
RESERVED_WORDS: frozenset[str] = frozenset(
    {
        "api",
        "docs",
        "console",
        "redoc",
        "openapi.json",
        "healthz",
        "readyz",
        "livez",
        "metrics",
        "robots.txt",
        "favicon.ico",
        "static",
        "admin",
        "stats",
        "qr",
        "login",
        "logout",
        "well-known",
        ".well-known",
    }
)

# hashids reshuffles the alphabet with a pure function of (alphabet, key) two
# or three times per code, and for one number per code the keys repeat (one
# per "lottery" character). Remembering the results makes encode and decode
# about five times faster, which matters when seeding or importing many
# links; the codes are the same (tests/unit/test_codes.py compares them).
if not hasattr(hashids._reorder, "cache_info"):
    hashids._reorder = functools.lru_cache(maxsize=4096)(hashids._reorder)

ALIAS_PATTERN = re.compile(r"[A-Za-z0-9_-]{3,64}")
# What a path segment must look like before the redirect gateway even asks the
# cache: generated codes and aliases both fit it.
CODE_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_reserved(word: str) -> bool:
    return word.lower() in RESERVED_WORDS


class CodeCodec:
    """Turns row ids into generated codes and back, with the operator's salt."""

    def __init__(self, *, salt: str, min_length: int, alphabet: str) -> None:
        self._hashids = Hashids(salt=salt, min_length=min_length, alphabet=alphabet)

    def encode(self, row_id: int) -> str:
        # hashids answers "" for a negative number; a link must never get an empty code.
        if row_id < 0:
            raise ValueError(f"row ids are not negative, got {row_id}")
        code = self._hashids.encode(row_id)
        # With short codes an id can come out as one of the service's own
        # paths ("qr", "api", "docs"...), which would never redirect. Such an
        # id gets the code of (id, n) instead: no other id's code (one number)
        # and no alias (aliases may not decode at all) can ever equal it.
        extra = 0
        while is_reserved(code):
            extra += 1
            code = self._hashids.encode(row_id, extra)
        return code

    def decode(self, code: str) -> int | None:
        """The row id a generated code stands for, or None if it is not one.

        hashids re-encodes what it decoded and answers () unless that gives the
        same text back, so only canonical codes decode.
        """
        try:
            numbers = self._hashids.decode(code)
        except Exception:  # hashids raises on characters outside the alphabet in some versions
            return None
        if len(numbers) != 1:
            return None
        return numbers[0]

    def check_alias(self, alias: str) -> str:
        """The alias if a client may claim it; InvalidInput naming the reason if not."""
        if not ALIAS_PATTERN.fullmatch(alias):
            raise InvalidInput("alias", "must be 3 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")
        if is_reserved(alias):
            raise InvalidInput("alias", f"'{alias}' is reserved for the service's own paths")
        if self._hashids.decode(alias):
            # It would collide with a generated code, now or in the future.
            raise InvalidInput("alias", "looks like a generated code; choose another alias")
        return alias
