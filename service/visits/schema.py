"""The visit stream's event format (version 1): linkgate's change feed for visits.

Each stream entry carries the events one process flushed together (up to
``LINKGATE_VISITS_FLUSH_SIZE`` of them, all of one UTC day), in two fields:

- ``v``: the schema version, ``1``; readers skip versions they do not know;
- ``visits``: a JSON document ``{"clients": [...], "visits": [...]}``.

``clients`` lists each distinct visitor of the entry once, as
``[address, visitor, user_agent, referrer_host, referrer_path]``; ``visits``
lists the events as ``[ts, link_id, code, status, method, client, qr]``,
where ``client`` indexes ``clients``. (Batched and normalised because an
entry per event, with its User-Agent repeated, cost the redirect path
several times more than the redirect itself; docs/visits.md has the
measurements.) ``visit-event.schema.json`` beside this file is the JSON
Schema of the document, and ``expand`` turns it into one ``Visit`` per
event, for any Python reader.

Versioning: fields are only ever added at the end of a list within a
version (readers ignore what they do not know); anything else is a new
version, and producers keep writing the old one until every reader they
serve knows the new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("visit-event.schema.json")

FIELD_VERSION = b"v"
FIELD_VISITS = b"visits"

CLIENT_FIELDS = ("address", "visitor", "user_agent", "referrer_host", "referrer_path")
VISIT_FIELDS = ("ts", "link_id", "code", "status", "method", "client", "qr")


class InvalidEntry(ValueError):
    """A stream entry that is not a visit document of a version this code reads."""


class UnsupportedVersion(InvalidEntry):
    """An entry of a newer (or unknown) schema version: left for a reader that knows it."""


@dataclass(frozen=True, slots=True)
class Visit:
    """One visit event, expanded from its entry."""

    ts: int  # milliseconds since the Unix epoch (UTC), when the answer was sent
    link_id: int | None  # None for unknown codes (404)
    code: str
    status: int  # 301, 302, 307, 308, 404 or 410; 303: a password link unlocked through its form
    method: str  # GET or HEAD; POST for that unlock
    qr: bool  # the visit came from the link's QR code
    address: str | None  # the client's network (IPv4 /24, IPv6 /48), never the raw address
    visitor: str | None  # 64-bit hex hash for counting unique visitors; None when not counted
    user_agent: str  # at most 512 characters
    referrer_host: str | None
    referrer_path: str | None


@dataclass(frozen=True, slots=True)
class Envelope:
    clients: list[list]
    visits: list[list]


def encode(clients: list[list], visits: list[list]) -> bytes:
    # orjson: ~17x the standard library's speed here, and the flusher encodes every visit.
    return orjson.dumps({"clients": clients, "visits": visits})


def decode(fields: dict[bytes, bytes]) -> Envelope:
    """The document of one stream entry (its field -> value map, as redis-py returns it)."""
    version = fields.get(FIELD_VERSION)
    if version != str(VERSION).encode():
        raise UnsupportedVersion(f"visit schema version {version!r}")
    try:
        document = orjson.loads(fields[FIELD_VISITS])
        clients, visits = document["clients"], document["visits"]
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
        raise InvalidEntry(f"not a visit document: {exc}") from None
    if not isinstance(clients, list) or not isinstance(visits, list):
        raise InvalidEntry("clients and visits must be lists")
    return Envelope(clients=clients, visits=visits)


def expand(envelope: Envelope) -> list[Visit]:
    """One Visit per event of an entry."""
    out = []
    try:
        for ts, link_id, code, status, method, client, qr, *_ in envelope.visits:
            address, visitor, user_agent, referrer_host, referrer_path, *_ = envelope.clients[client]
            out.append(Visit(ts=ts, link_id=link_id, code=code, status=status, method=method, qr=bool(qr),
                             address=address, visitor=visitor, user_agent=user_agent,
                             referrer_host=referrer_host, referrer_path=referrer_path))
    except (TypeError, ValueError, IndexError) as exc:
        raise InvalidEntry(f"malformed visit: {exc}") from None
    return out
