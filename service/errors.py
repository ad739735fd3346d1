"""Domain errors. Each maps to one RFC 9457 problem type (service.api.problems).

The problem types' prefix lives here, beside the errors, so the redirect
path answers problems without depending on the REST layer.
"""

from __future__ import annotations

PROBLEM_TYPE_PREFIX = "urn:linkgate:problem:"


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


class Unauthenticated(LinkgateError):
    """No key, or one that is malformed, unknown, revoked or expired (401)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Forbidden(LinkgateError):
    """A valid key whose role may not do this (403)."""

    def __init__(self, role: str, obj: str, act: str) -> None:
        super().__init__(f"{role} may not {act} {obj}")
        self.role, self.obj, self.act = role, obj, act


class KeyNotFound(LinkgateError):
    """No API key has this id (404)."""

    def __init__(self, key_id: str) -> None:
        super().__init__(key_id)
        self.key_id = key_id


class KeyNameTaken(LinkgateError):
    """Another key has, or had, this name (409)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class WebhookNotFound(LinkgateError):
    """No webhook with this id is visible to the key (404)."""

    def __init__(self, webhook_id: int) -> None:
        super().__init__(str(webhook_id))
        self.webhook_id = webhook_id
