"""What a request may do: the key it came with and how far its role reaches."""

from __future__ import annotations

from dataclasses import dataclass

from ..store.sql import Visibility
from .keys import Principal
from .policy import Scope


@dataclass(frozen=True, slots=True)
class Grant:
    """A permission the policy granted to a key, for one object and action."""

    principal: Principal
    scope: Scope

    @property
    def visibility(self) -> Visibility:
        """The links this grant reaches, as the filter every link query applies."""
        if self.scope is Scope.ANY:
            return Visibility.EVERYTHING  # type: ignore[attr-defined]
        return Visibility.owned_by(self.principal.id)
