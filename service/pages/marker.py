"""The marker a QR code's URL carries, so the redirect can tell a scan from a click.

A QR code encodes ``<short URL>?qr=1``. The redirect recognises ``qr=1`` as
the first parameter of the visitor's query, strips it before the query
filter sees the query (it never reaches the target), and the visit event
carries ``qr: true``. Only the first place is looked at: the URL in the
code always has it there, and a redirect with a query pays one prefix
comparison for it, one without a query nothing.
"""

from __future__ import annotations

MARKER = b"qr=1"
# The scope key where the redirect leaves "this visit came from a QR code" for the visit event.
QR_VISIT = "linkgate.qr"

_WITH_MORE = MARKER + b"&"


def strip_marker(raw_query: bytes, scope) -> bytes:
    """The query without a leading QR marker; notes the marker in `scope` when there was one."""
    if raw_query == MARKER:
        scope[QR_VISIT] = True
        return b""
    if raw_query.startswith(_WITH_MORE):
        scope[QR_VISIT] = True
        return raw_query[len(_WITH_MORE):]
    return raw_query


def marked(short_url: str) -> str:
    """The URL a QR code of `short_url` encodes."""
    return f"{short_url}?{MARKER.decode()}"
