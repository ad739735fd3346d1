"""The referrer of a visit: its host, and its path when the operator allows it.

The query and fragment are never kept: they are where other sites put
session ids, search terms and e-mail addresses. Parsed by hand rather than
with urllib.parse.urlsplit: the flusher parses one per distinct visitor,
and this does the one thing needed (scheme://[user@]host[:port]/path) at a
fraction of the cost, never raising on the junk clients send.
"""

from __future__ import annotations

MAX_HOST = 253
MAX_PATH = 512


def referrer_parts(value: str, *, keep_path: bool) -> tuple[str | None, str | None]:
    """(host, path) of a Referer header value; (None, None) if it names no host.

    The host is lower-cased, without user info, port or a trailing dot. An
    app referrer (``android-app://com.google.android.gm/``) gives the app's
    name as its host.
    """
    scheme_end = value.find("://")
    if scheme_end <= 0 or not value[:scheme_end].replace("-", "").replace("+", "").replace(".", "").isalnum():
        return None, None
    rest = value[scheme_end + 3:]
    end = len(rest)
    for stop in "/?#":
        at = rest.find(stop)
        if 0 <= at < end:
            end = at
    authority, after = rest[:end], rest[end:]
    host = authority.rpartition("@")[2]
    if host.startswith("["):  # [v6]:port
        host = host[: host.find("]") + 1] if "]" in host else ""
    else:
        host = host.partition(":")[0]
    host = host.rstrip(".").lower()
    if not host or len(host) > MAX_HOST or not host.isprintable() or " " in host:
        return None, None
    if not keep_path:
        return host, None
    path = after
    for stop in "?#":
        at = path.find(stop)
        if at >= 0:
            path = path[:at]
    return host, (path or "/")[:MAX_PATH]
