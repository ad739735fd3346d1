"""Flags, the derived status, and the rules a lifecycle change must keep.

The stored flags are one integer of named bits, the way a permission system
holds permissions; the API never shows the bits, only the booleans and the
derived ``status``. The status is decided in this order, so a link that is
both blocked and expired says blocked: what an admin did outranks time.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import IntFlag, StrEnum

from ..errors import InvalidInput

TAG_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_TAGS = 20
MAX_TITLE = 200


class LinkFlags(IntFlag):
    """What is stored in links.flags. Add bits at the end; never reuse one."""

    DISABLED = 1  # by its owner: the owner can enable it again
    BLOCKED = 2  # by an admin: only an admin can unblock


class LinkStatus(StrEnum):
    ACTIVE = "active"
    SCHEDULED = "scheduled"
    EXPIRED = "expired"
    EXHAUSTED = "exhausted"
    DISABLED = "disabled"
    BLOCKED = "blocked"


# The statuses in which a visitor gets the gone answer (scheduled answers 404).
GONE = frozenset({LinkStatus.EXPIRED, LinkStatus.EXHAUSTED, LinkStatus.DISABLED, LinkStatus.BLOCKED})


def derive_status(*, flags: int, valid_since: datetime | None, valid_until: datetime | None,
                  max_visits: int | None, visit_count: int, now: datetime) -> LinkStatus:
    if flags & LinkFlags.BLOCKED:
        return LinkStatus.BLOCKED
    if flags & LinkFlags.DISABLED:
        return LinkStatus.DISABLED
    if valid_until is not None and now >= valid_until:
        return LinkStatus.EXPIRED
    if max_visits is not None and visit_count >= max_visits:
        return LinkStatus.EXHAUSTED
    if valid_since is not None and now < valid_since:
        return LinkStatus.SCHEDULED
    return LinkStatus.ACTIVE


def status_of(link, now: datetime) -> LinkStatus:
    return derive_status(flags=link.flags or 0, valid_since=link.valid_since, valid_until=link.valid_until,
                         max_visits=link.max_visits, visit_count=link.visit_count or 0, now=now)


def with_flag(flags: int, flag: LinkFlags, on: bool) -> int:
    return (flags | flag) if on else (flags & ~flag)


def normal_tags(tags: list[str] | None) -> list[str] | None:
    """Tags in lower case, without repeats, in the order given; InvalidInput naming the bad one."""
    if tags is None:
        return None
    if len(tags) > MAX_TAGS:
        raise InvalidInput("tags", f"at most {MAX_TAGS} tags")
    out: list[str] = []
    for index, tag in enumerate(tags):
        if not isinstance(tag, str) or not TAG_PATTERN.fullmatch(tag):
            raise InvalidInput(f"tags[{index}]", "must be 1-64 of letters, digits, '-', '_' and '.'")
        if tag.lower() not in out:
            out.append(tag.lower())
    return out


def check_window(valid_since: datetime | None, valid_until: datetime | None) -> None:
    if valid_since is not None and valid_until is not None and valid_until <= valid_since:
        raise InvalidInput("valid_until", "must be after valid_since")


def check_permanent(redirect_status: int, max_visits: int | None) -> None:
    """A browser keeps a 301/308 for good, so it could never learn that a limited link ran out.

    (A link with only valid_until may be permanent: its max-age is capped to the time it has left.)
    """
    if redirect_status in (301, 308) and max_visits is not None:
        raise InvalidInput("redirect_status", "a link with max_visits cannot be a permanent (301/308) redirect")


class Lifecycle:
    """A cached link's lifecycle as the redirect checks it, per request, against the clock.

    Only links with one carry it (Destination.lifecycle is None otherwise), so
    a plain link's redirect never looks at the clock.
    """

    __slots__ = ("since", "until", "max_visits", "flags", "fallback", "deleted", "protected")

    def __init__(self, *, since: float | None, until: float | None, max_visits: int | None, flags: int,
                 fallback: str | None, deleted: bool, protected: bool = False) -> None:
        self.since, self.until, self.max_visits = since, until, max_visits
        self.flags, self.fallback, self.deleted = flags, fallback, deleted
        # Visitors need the link's password first (service.pages.password).
        self.protected = protected

    @classmethod
    def from_cached(cls, fields: dict) -> Lifecycle:
        """From the cache's lifecycle fields (store.cache.lifecycle_fields)."""
        return cls(since=fields.get("s"), until=fields.get("u"), max_visits=fields.get("m"),
                   flags=fields.get("f", 0), fallback=fields.get("b"), deleted=bool(fields.get("d")),
                   protected=bool(fields.get("p")))

    def standing(self, now: float) -> LinkStatus | None:
        """Why the link is not live at `now` (epoch seconds), or None when it is.

        Exhaustion is not decided here: the visit limit's counter lives in
        Redis (visit_limits). A deleted link answers as gone, like an expired one.
        """
        if self.deleted:
            return LinkStatus.EXPIRED
        if self.flags & LinkFlags.BLOCKED:
            return LinkStatus.BLOCKED
        if self.flags & LinkFlags.DISABLED:
            return LinkStatus.DISABLED
        if self.until is not None and now >= self.until:
            return LinkStatus.EXPIRED
        if self.since is not None and now < self.since:
            return LinkStatus.SCHEDULED
        return None
