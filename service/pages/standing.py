"""A link's state as a visitor page needs it, found the way the redirect finds it.

Through the redirect's own lookups (this process's memory, Redis, then SQL),
so a page of a popular link costs what its redirect does, and answers 404
and 410 exactly when the redirect would. Whether a link with ``max_visits``
is used up is not asked here: only a visit may take one of its admissions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ..codes import CODE_PATTERN, is_reserved
from ..lifecycle.state import LinkStatus


class State(Enum):
    UNKNOWN = "unknown"  # no such code, or not public yet: the redirect's 404
    GONE = "gone"  # expired, disabled, blocked or deleted: its fallback or 410
    LIVE = "live"


@dataclass(frozen=True, slots=True)
class Found:
    state: State
    destination: object | None = None  # a redirect.Destination when the link exists

    @property
    def fallback(self) -> str | None:
        lifecycle = getattr(self.destination, "lifecycle", None)
        return lifecycle.fallback if lifecycle is not None else None

    @property
    def protected(self) -> bool:
        lifecycle = getattr(self.destination, "lifecycle", None)
        return lifecycle is not None and lifecycle.protected


async def look_up(gateway, code: str) -> Found:
    """Where `code` stands now; StorageUnavailable when SQL was needed and is down."""
    if not CODE_PATTERN.fullmatch(code) or is_reserved(code) or gateway.redirector is None:
        return Found(State.UNKNOWN)
    destination = await gateway.redirector.find(code)
    if destination is None:
        return Found(State.UNKNOWN)
    lifecycle = destination.lifecycle
    if lifecycle is not None:
        standing = lifecycle.standing(gateway.wall_clock())
        if standing is LinkStatus.SCHEDULED:
            return Found(State.UNKNOWN)
        if standing is not None:
            return Found(State.GONE, destination)
    return Found(State.LIVE, destination)
