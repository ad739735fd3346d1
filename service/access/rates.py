"""Rate settings: ``N/second``, ``N/minute``, ``N/hour`` (or ``off``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {"second": 1, "minute": 60, "hour": 3600}
_RATE = re.compile(r"\s*(\d{1,9})\s*(?:/|per)\s*(second|minute|hour)s?\s*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `limit` requests in any sliding window of `window_seconds`."""

    limit: int
    window_seconds: int

    @property
    def policy_header(self) -> str:
        return f'q={self.limit};w={self.window_seconds}'


def parse_rate(text: str) -> Rate | None:
    """`"100/minute"` -> Rate(100, 60); `"off"` -> None; anything else raises ValueError."""
    if text.strip().lower() in ("off", "none", "0"):
        return None
    match = _RATE.fullmatch(text)
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"{text!r} is not a rate like 100/minute (per second, minute or hour), or off")
    return Rate(limit=int(match.group(1)), window_seconds=_UNITS[match.group(2).lower()])
