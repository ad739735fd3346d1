"""The client's address: the peer, or through trusted proxies the first address they did not add."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ClientAddresses:
    """Finds the client address of a request.

    Without trusted proxies it is the peer address, always: a header can be
    forged by anyone. Behind proxies (an ingress), each one appends the
    address it saw to X-Forwarded-For, so the entries a client cannot have
    forged are those the trusted proxies added: read from the right, the
    first entry that is not a trusted proxy is the client. An entry that is
    not an address stops the walk there (it is taken as the client, as is).
    """

    def __init__(self, trusted: Iterable[str]) -> None:
        self._trusted: tuple[Network, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in trusted)
        self._is_trusted_cache: dict[str, bool] = {}
        self._normal_cache: dict[str, str] = {}

    def _normal_peer(self, peer: str) -> str:
        # Peers repeat (keep-alive, NAT): parsing each with ipaddress cost ~4 us a request.
        normal = self._normal_cache.get(peer)
        if normal is None:
            if len(self._normal_cache) > 10_000:
                self._normal_cache.clear()
            normal = self._normal_cache[peer] = _normal(peer)
        return normal

    @property
    def trusts_proxies(self) -> bool:
        """Whether X-Forwarded-For is ever read (any trusted proxy configured)."""
        return bool(self._trusted)

    def _is_trusted(self, text: str) -> bool:
        known = self._is_trusted_cache.get(text)
        if known is None:
            address = _parse(text)
            known = address is not None and any(address in network for network in self._trusted)
            if len(self._is_trusted_cache) > 10_000:
                self._is_trusted_cache.clear()
            self._is_trusted_cache[text] = known
        return known

    def of(self, scope) -> str:
        client = scope.get("client")
        peer = client[0] if client else "unknown"
        if not self._trusted:
            return self._normal_peer(peer)
        if not self._is_trusted(peer):
            return self._normal_peer(peer)
        forwarded: list[str] = []
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                forwarded.extend(part.strip() for part in value.decode("latin-1").split(","))
        for entry in reversed(forwarded):
            if entry and not self._is_trusted(entry):
                return _normal(entry)
        # Every hop was a trusted proxy: the leftmost is as close to the client as is known.
        return _normal(next((entry for entry in forwarded if entry), peer))


def _normal(text: str) -> str:
    address = _parse(text)
    return str(address) if address is not None else text[:64]
