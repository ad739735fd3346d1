"""Domain errors. Each maps to one RFC 9457 problem type in service.api.problems."""

from __future__ import annotations


class LinkgateError(Exception):
    """Base of every error linkgate turns into a problem response."""


class InvalidInput(LinkgateError):
    """A request field breaks a rule (422)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class LinkNotFound(LinkgateError):
    """No live link has this code (404)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class AliasTaken(LinkgateError):
    """Another link holds, or once held, this alias (409)."""

    def __init__(self, alias: str) -> None:
        super().__init__(alias)
        self.alias = alias


class StorageUnavailable(LinkgateError):
    """SQL could not be reached; the write did not happen (503)."""
