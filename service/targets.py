"""Long-URL validation and normalisation: what a short link may point at."""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import idna

from .config import Settings
from .errors import InvalidInput

FIELD = "url"
# Bytes that may stand in a URL as they are; anything else (non-ASCII text,
# spaces) is percent-encoded, so Location headers are always plain ASCII.
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~-._"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ASCII_HOST = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
# WHATWG URL parsing treats a host whose last label is numeric as IPv4
# ("127.1", "0x7f.0.0.1", "2130706433" all mean loopback in a browser).
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)")


@dataclass(frozen=True)
class TargetRules:
    allowed_schemes: frozenset[str]
    max_length: int
    allow_private: bool
    blocked_hosts: frozenset[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> TargetRules:
        blocked = {h.lower().rstrip(".") for h in settings.blocked_hosts}
        blocked.add(settings.public_host)
        return cls(
            allowed_schemes=frozenset(settings.allowed_schemes),
            max_length=settings.max_url_length,
            allow_private=settings.allow_private_targets,
            blocked_hosts=frozenset(blocked),
        )


def _refuse(reason: str) -> InvalidInput:
    return InvalidInput(FIELD, reason)


def _normalise_host(raw_host: str) -> str:
    host = raw_host.rstrip(".").lower()
    if not host:
        raise _refuse("needs a host")
    if host.isascii():
        if not _ASCII_HOST.fullmatch(host):
            raise _refuse(f"host '{raw_host}' is not a valid host name")
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise _refuse(f"host '{raw_host}' is not a valid international domain name ({exc})") from None


def _ip_of(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if host.startswith("["):
        try:
            return ipaddress.IPv6Address(host[1:-1].split("%")[0])
        except ValueError:
            raise _refuse(f"host '{host}' is not a valid IPv6 literal") from None
    if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            raise _refuse(f"host '{host}' is not a valid IPv4 address") from None
    return None


def _is_internal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
    )


def normalise_target(url: str, rules: TargetRules) -> str:
    """The URL as linkgate stores it, or InvalidInput saying what is wrong with it."""
    url = url.strip()
    if not url:
        raise _refuse("must not be empty")
    if _CONTROL.search(url):
        raise _refuse("must not contain control characters (CR, LF, tab, ...)")
    if len(url) > rules.max_length:
        raise _refuse(f"is longer than {rules.max_length} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _refuse(f"is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise _refuse("must be absolute, with a scheme such as https://")
    if scheme not in rules.allowed_schemes:
        allowed = ", ".join(sorted(rules.allowed_schemes))
        raise _refuse(f"scheme '{scheme}' is not allowed (allowed: {allowed})")
    if "@" in parts.netloc:
        raise _refuse("must not contain a user name or password (user:pass@host)")
    if parts.hostname is None or not parts.netloc:
        raise _refuse("needs a host")

    if parts.netloc.startswith("["):
        host = f"[{parts.hostname}]"
    else:
        host = _normalise_host(parts.hostname)
    ip = _ip_of(host)
    if ip is not None:
        host = f"[{ip.compressed}]" if ip.version == 6 else ip.compressed
        if not rules.allow_private and _is_internal(ip):
            raise _refuse(f"points at an internal address ({ip}); such targets are not allowed")
    elif not rules.allow_private and (host == "localhost" or host.endswith(".localhost")):
        raise _refuse("points at localhost; such targets are not allowed")
    bare_host = host.strip("[]")
    if host in rules.blocked_hosts or bare_host in rules.blocked_hosts:
        raise _refuse(f"host '{host}' is not allowed (it would loop or is blocked by the operator)")

    netloc = host if port is None else f"{host}:{port}"
    path = quote(parts.path, safe=_URL_SAFE) or "/"
    query = quote(parts.query, safe=_URL_SAFE)
    fragment = quote(parts.fragment, safe=_URL_SAFE)
    normalised = urlunsplit((scheme, netloc, path, query, fragment))
    # urlunsplit drops a bare trailing '?' or '#'; keep what the client wrote.
    if url.endswith("?") and not parts.query and not parts.fragment:
        normalised += "?"
    if len(normalised) > rules.max_length:
        raise _refuse(f"is longer than {rules.max_length} characters once normalised")
    return normalised
