"""Long-URL validation and normalisation: what a short link may point at."""

from __future__ import annotations

import functools
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
# C0 and C1 control characters and DEL. Refused anywhere, ends included: a
# CR/LF in a target is header injection waiting for a careless proxy.
# A URL made only of these characters is stored as written (the common case,
# checked first because quoting three parts costs more than one match).
_NEEDS_NO_QUOTING = re.compile(r"[A-Za-z0-9!#$%&'()*+,/:;=?@\[\]~._-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ASCII_LABEL = re.compile(r"[a-z0-9_-]+")
# What may follow "]" in an IPv6 netloc; urlsplit lets "[::1]junk" through.
_AFTER_IPV6 = re.compile(r"(:[0-9]*)?")
_MAX_LABEL = 63
_MAX_HOST = 253
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
        # Held in the form normalise_target produces, so "Sho.RT.", "bücher.de"
        # or "0:0::1" in the settings still match the targets they name.
        blocked = {_canonical_host(h) for h in settings.blocked_hosts if h.strip()}
        blocked.add(_canonical_host(settings.public_host))
        return cls(
            allowed_schemes=frozenset(settings.allowed_schemes),
            max_length=settings.max_url_length,
            allow_private=settings.allow_private_targets,
            blocked_hosts=frozenset(blocked),
        )


def _refuse(reason: str) -> InvalidInput:
    return InvalidInput(FIELD, reason)


def _normalise_host(raw_host: str) -> str:
    host = raw_host
    if not host.isascii():
        # UTS 46 mapping first, as browsers do: it folds case, full-width
        # letters and digits, and the ideographic full stop "。" to ".".
        try:
            host = idna.uts46_remap(host, std3_rules=False, transitional=False)
        except idna.IDNAError as exc:
            raise _refuse(f"host '{raw_host}' is not a valid international domain name ({exc})") from None
    host = host.lower().rstrip(".")
    if not host:
        raise _refuse("needs a host")
    host = ".".join(_normalise_label(label, raw_host) for label in host.split("."))
    if len(host) > _MAX_HOST:
        raise _refuse(f"host is longer than {_MAX_HOST} characters")
    return host


def _normalise_label(label: str, raw_host: str) -> str:
    if label.isascii():
        # Plain ASCII labels keep what DNS allows in practice ("_dmarc",
        # "r3---sn-x"), which is more than IDNA 2008 would.
        if not _ASCII_LABEL.fullmatch(label):
            raise _refuse(f"host '{raw_host}' is not a valid host name")
        if label.startswith("xn--"):
            try:
                idna.ulabel(label)
            except (idna.IDNAError, UnicodeError):
                raise _refuse(f"host '{raw_host}' holds a broken punycode label '{label}'") from None
    else:
        try:
            label = idna.alabel(label).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise _refuse(f"host '{raw_host}' is not a valid international domain name ({exc})") from None
    if len(label) > _MAX_LABEL:
        raise _refuse(f"host '{raw_host}' has a label longer than {_MAX_LABEL} characters")
    return label


def _canonical_host(host: str) -> str:
    """A host from the settings in normalised form; as written if it does not normalise."""
    host = host.strip().strip("[]")
    try:
        if ":" in host:
            return ipaddress.IPv6Address(host).compressed
        normalised = _normalise_host(host)
        ip = _ip_of(normalised)
        return normalised if ip is None else ip.compressed
    except (InvalidInput, ValueError):
        return host.lower().rstrip(".")


def _ip_of(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if host.startswith("["):
        try:
            return ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise _refuse(f"host '{host}' is not a valid IPv6 literal") from None
    if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            raise _refuse(f"host '{host}' is not a valid IPv4 address") from None
    return None


def is_internal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Loopback, private, link-local, reserved, multicast or otherwise not a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # not is_global also covers ranges that are neither "private" nor
    # "reserved" to ipaddress, such as the carrier-grade NAT 100.64.0.0/10.
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
    )


@functools.lru_cache(maxsize=4096)
def _checked_netloc(netloc: str, rules: TargetRules) -> str:
    """host[:port] as stored, or InvalidInput; remembered, since hosts repeat far more than URLs."""
    parts = urlsplit("//" + netloc)
    if "@" in netloc:
        raise _refuse("must not contain a user name or password (user:pass@host)")
    if parts.hostname is None or not netloc:
        raise _refuse("needs a host, as in https://example.com/")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise _refuse("has an invalid port (it must be a number from 1 to 65535)")

    if netloc.startswith("["):
        after = netloc.partition("]")[2]
        if not _AFTER_IPV6.fullmatch(after):
            raise _refuse(f"has '{after}' after the IPv6 address where only ':port' may stand")
        if "%" in parts.hostname:
            raise _refuse("must not carry an IPv6 zone identifier (%25...)")
        host = f"[{parts.hostname}]"
    else:
        host = _normalise_host(parts.hostname)
    ip = _ip_of(host)
    if ip is not None:
        host = f"[{ip.compressed}]" if ip.version == 6 else ip.compressed
        if not rules.allow_private and is_internal(ip):
            raise _refuse(f"points at an internal address ({ip}); such targets are not allowed")
    elif not rules.allow_private and (host == "localhost" or host.endswith(".localhost")):
        raise _refuse("points at localhost; such targets are not allowed")
    if host.strip("[]") in rules.blocked_hosts:
        raise _refuse(f"host '{host}' is not allowed (it would loop or is blocked by the operator)")

    return host if port is None else f"{host}:{port}"


# Most targets look like this: a lower-case http(s) scheme and host name, a
# path, maybe a query, no port, user info, fragment or byte to quote. Such a
# URL is stored exactly as written once its host passes the (remembered)
# host rules, without taking it apart; tests check both paths agree.
_PLAIN_URL = re.compile(r"(https?)://([a-z0-9-]+(?:\.[a-z0-9-]+)*)(/[A-Za-z0-9!$%&'()*+,/:;=?@~._-]*)")


def normalise_target(url: str, rules: TargetRules) -> str:
    """The URL as linkgate stores it, or InvalidInput saying what is wrong with it."""
    url = url.strip(" ")
    plain = _PLAIN_URL.fullmatch(url)
    if (
        plain is not None
        and plain.group(1) in rules.allowed_schemes
        and len(url) <= rules.max_length
        and _checked_netloc(plain.group(2), rules) == plain.group(2)
    ):
        return url
    return _normalise_in_full(url, rules)


def _normalise_in_full(url: str, rules: TargetRules) -> str:
    if not url:
        raise _refuse("must not be empty")
    if _CONTROL.search(url):
        raise _refuse("must not contain control characters (CR, LF, tab, NUL, ...)")
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:
        raise _refuse("is not valid Unicode text (it holds a lone surrogate)") from None
    if len(url) > rules.max_length:
        raise _refuse(f"is longer than {rules.max_length} characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise _refuse(f"is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise _refuse("must be absolute, with a scheme such as https://")
    if scheme not in rules.allowed_schemes:
        allowed = ", ".join(sorted(rules.allowed_schemes))
        raise _refuse(f"scheme '{scheme}' is not allowed (allowed: {allowed})")
    netloc = _checked_netloc(parts.netloc, rules)
    if _NEEDS_NO_QUOTING.fullmatch(url):
        path, query, fragment = parts.path or "/", parts.query, parts.fragment
    else:
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
