"""The path parameter of the pages' routes: a code, never one of the service's reserved words.

``/{code:link_code}`` matches only a single segment shaped like a code and
not reserved (codes.py), so ``POST /healthz`` still answers 405 with the
probe's own ``Allow``, and ``/docs/qr`` is never taken for a QR code.
"""

from __future__ import annotations

import re

from starlette.convertors import Convertor, register_url_convertor

from ..codes import CODE_PATTERN, RESERVED_WORDS

NAME = "link_code"
_RESERVED = "|".join(sorted((re.escape(word) for word in RESERVED_WORDS), key=len, reverse=True))


class LinkCode(Convertor):
    regex = f"(?!(?i:{_RESERVED})(?![A-Za-z0-9_-])){CODE_PATTERN.pattern}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor(NAME, LinkCode())

CODE = "{code:" + NAME + "}"
