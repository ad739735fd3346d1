"""What a visitor of a link that is no longer live gets.

In order: the link's own ``fallback_url`` (302), else the operator's
``LINKGATE_GONE_REDIRECT_URL`` (302), else 410 Gone: this small page, or
problem JSON for ``Accept: application/json``. Never cached (``no-store``):
a link can come back (enabled again, its window moved).
"""

from __future__ import annotations

GONE_HTML = (
    b"<!doctype html><html lang=en><meta charset=utf-8>"
    b"<meta name=viewport content='width=device-width,initial-scale=1'><title>Link gone</title>"
    b"<h1>This link is gone</h1><p>The short link you followed has expired, run out or been switched off."
    b"</p></html>"
)


def gone_location(fallback: str | None, operator_url: str | None) -> bytes | None:
    """Where to send the visitor instead of a 410, if anywhere."""
    target = fallback or operator_url
    return target.encode("latin-1") if target else None
