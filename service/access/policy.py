"""Permissions: the casbin enforcer over the shipped model and policy, or the operator's.

No permission is written as an ``if`` in a handler: a route names the object
and action it needs (``links``/``update``), and ``Permissions.scope`` answers
``"any"`` (every link), ``"own"`` (only the key's own links) or ``None``
(forbidden) from the policy file.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path

import casbin

SHIPPED_MODEL = Path(__file__).with_name("model.conf")
SHIPPED_POLICY = Path(__file__).with_name("policy.csv")


class Scope(StrEnum):
    ANY = "any"
    OWN = "own"


class Permissions:
    """Decisions of one casbin enforcer, memoized: the files do not change while the process runs."""

    def __init__(self, *, model_file: str | Path | None = None, policy_file: str | Path | None = None) -> None:
        # casbin logs every policy line it loads at INFO; that is noise in ours.
        logging.getLogger("casbin").setLevel(logging.WARNING)
        self.model_file = Path(model_file or SHIPPED_MODEL)
        self.policy_file = Path(policy_file or SHIPPED_POLICY)
        for path in (self.model_file, self.policy_file):
            if not path.is_file():
                raise ValueError(f"authorization file {path} does not exist")
        self._enforcer = casbin.Enforcer(str(self.model_file), str(self.policy_file))
        self._decisions: dict[tuple[str, str, str], Scope | None] = {}

    @classmethod
    def from_settings(cls, settings) -> Permissions:
        return cls(model_file=settings.authz_model_file, policy_file=settings.authz_policy_file)

    @property
    def roles(self) -> list[str]:
        """Every role the policy names: subjects of its permissions, and roles that inherit."""
        named = set(self._enforcer.get_all_subjects())
        for rule in self._enforcer.get_grouping_policy():
            named.update(rule[:2])
        return sorted(named)

    def scope(self, role: str, obj: str, act: str) -> Scope | None:
        """How far `role` may do `act` on `obj`: over everything, its own links, or not at all."""
        key = (role, obj, act)
        if key not in self._decisions:
            if self._enforcer.enforce(role, obj, act, Scope.ANY.value):
                decision: Scope | None = Scope.ANY
            elif self._enforcer.enforce(role, obj, act, Scope.OWN.value):
                decision = Scope.OWN
            else:
                decision = None
            self._decisions[key] = decision
        return self._decisions[key]
