"""The gateway query policy: parse the visitor's query, filter it, merge it into the target.

A short link stands in front of its long URL the way an API gateway stands in
front of a backend: the visitor's query string is filtered before it reaches
the target, and the target's own parameters stay in place.

Two rules hold for every redirect, whatever the policy says:

* Forwarded parameters keep the bytes the visitor sent (repeated names, order,
  ``?flag`` versus ``?flag=``, existing ``%XX`` escapes and ``+``); only bytes
  that may not stand in a URL query (controls, space, ``#``, ``"<>[\\]^`{|}``,
  non-ASCII, a ``%`` that starts no escape) are percent-encoded, so nothing a
  visitor sends can split the ``Location`` header or leave the query.
* Names are matched on their percent-decoded form (``+`` read as a space, the
  way the target's server will read them): allow/deny ignore case, conflicts
  with the target's own names do not, because servers treat names
  case-sensitively.

``check_policy`` runs when a link is created or changed, so a policy that
cannot work is refused then and never surprises a redirect.  ``compile_filter``
turns a policy into a ``CompiledFilter`` once per link; ``apply`` is the hot
path and does no I/O.
"""

from __future__ import annotations

import fnmatch
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal, NamedTuple
from urllib.parse import quote, unquote_plus

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from .config import Settings

Mode = Literal["forward", "drop"]
OnConflict = Literal["target", "request", "append"]
_MODES = ("forward", "drop")
_ON_CONFLICT = ("target", "request", "append")

# RFC 3986 `query`: pchar / "/" / "?" where pchar is unreserved, sub-delims,
# ":" / "@" or a pct-encoded triplet.  Anything else in a visitor's query is
# percent-encoded; a "%" that does not start a triplet becomes "%25".
_UNSAFE = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/?%]|%(?![0-9A-Fa-f]{2})")
# The common case, checked first because it is several times cheaper.
_ALL_SAFE = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# What stays literal when an `add` parameter (given as plain text) is encoded:
# the query characters that carry no meaning in a name=value pair.
_ADD_SAFE = "-._~!$'()*,;:@/?"


class QueryPolicy(BaseModel):
    """How a short link treats the visitor's query string (the API shape of a link's `query`)."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode = Field(
        "forward", description="'forward': visitor parameters pass, subject to the lists; 'drop': none pass."
    )
    allow: list[str] = Field(
        default_factory=list,
        description="Name globs (case-insensitive); when non-empty, only matching names pass.",
    )
    deny: list[str] = Field(
        default_factory=list,
        description="Name globs (case-insensitive) that never pass; the operator's deny list applies too.",
    )
    on_conflict: OnConflict = Field(
        "target",
        description=(
            "A visitor name the target (or `add`) already has: 'target' keeps the target's value, "
            "'request' replaces it with the visitor's, 'append' keeps both, target's first."
        ),
    )
    add: dict[str, str] = Field(
        default_factory=dict,
        description="Fixed parameters appended to every redirect; treated like the target's own.",
    )


@dataclass(frozen=True)
class FilterLimits:
    """The operator's bounds on every policy and every redirect (see the query_* settings)."""

    max_params: int
    max_name_length: int
    max_value_length: int
    max_location_length: int
    max_patterns: int
    max_pattern_length: int
    global_deny: tuple[str, ...]
    default_mode: str
    max_add: int = 16

    @classmethod
    def from_settings(cls, settings: Settings) -> FilterLimits:
        return cls(
            max_params=settings.query_max_params,
            max_name_length=settings.query_max_name_length,
            max_value_length=settings.query_max_value_length,
            max_location_length=settings.query_max_location_length,
            max_patterns=settings.query_max_patterns,
            max_pattern_length=settings.query_max_pattern_length,
            global_deny=tuple(p.strip() for p in settings.query_deny if p.strip()),
            default_mode=settings.query_default_mode,
            max_add=settings.query_max_add,
        )


class PolicyError(ValueError):
    """A query policy that cannot work; `field` names the offending part (``query.allow[2]``)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _has_control(text: str) -> bool:
    # Cs: a lone surrogate (from a JSON "\ud800" escape) cannot be encoded into a URL.
    return any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text)


def _check_patterns(name: str, patterns: list[str], limits: FilterLimits) -> None:
    if len(patterns) > limits.max_patterns:
        raise PolicyError(
            f"query.{name}", f"holds {len(patterns)} patterns; at most {limits.max_patterns} are allowed"
        )
    for index, pattern in enumerate(patterns):
        field = f"query.{name}[{index}]"
        if not isinstance(pattern, str) or not pattern:
            raise PolicyError(field, "must be a non-empty name pattern")
        if len(pattern) > limits.max_pattern_length:
            raise PolicyError(field, f"is longer than {limits.max_pattern_length} characters")
        if _has_control(pattern):
            raise PolicyError(field, "must not contain control characters or lone surrogates")


def check_policy(policy: QueryPolicy, limits: FilterLimits) -> None:
    """Refuse, with the field at fault, a policy that could not work at redirect time."""
    if policy.mode not in _MODES:
        raise PolicyError("query.mode", f"must be one of {', '.join(_MODES)}")
    if policy.on_conflict not in _ON_CONFLICT:
        raise PolicyError("query.on_conflict", f"must be one of {', '.join(_ON_CONFLICT)}")
    _check_patterns("allow", policy.allow, limits)
    _check_patterns("deny", policy.deny, limits)
    if len(policy.add) > limits.max_add:
        raise PolicyError(
            "query.add", f"holds {len(policy.add)} parameters; at most {limits.max_add} are allowed"
        )
    for name, value in policy.add.items():
        # json.dumps keeps a control character out of the error text itself.
        field = f"query.add[{json.dumps(name)}]"
        if not name:
            raise PolicyError(field, "parameter name must not be empty")
        if _has_control(name):
            raise PolicyError(field, "parameter name must not contain control characters or lone surrogates")
        if _has_control(value):
            raise PolicyError(field, "value must not contain control characters or lone surrogates")
        if len(_encode_add(name)) > limits.max_name_length:
            raise PolicyError(field, f"name is longer than {limits.max_name_length} characters once encoded")
        if len(_encode_add(value)) > limits.max_value_length:
            raise PolicyError(
                field, f"value is longer than {limits.max_value_length} characters once encoded"
            )
    added = sum(len(_encode_add(name)) + len(_encode_add(value)) + 2 for name, value in policy.add.items())
    if added >= limits.max_location_length:
        raise PolicyError(
            "query.add", f"adds {added} characters; a Location may hold {limits.max_location_length} in all"
        )


def _escape_unsafe(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if code < 256:
        # The query arrives as latin-1 text, one character per byte: keep the byte.
        return f"%{code:02X}"
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))


def make_query_safe(raw_query: str) -> str:
    """The query with every byte a URL query may not hold percent-encoded, all else untouched."""
    if _ALL_SAFE.fullmatch(raw_query) is not None and (
        "%" not in raw_query or _BAD_PERCENT.search(raw_query) is None
    ):
        return raw_query
    return _UNSAFE.sub(_escape_unsafe, raw_query)


def decode_name(raw_name: str) -> str:
    """A parameter name as the target's server reads it: percent-decoded, ``+`` as a space."""
    if "%" not in raw_name and "+" not in raw_name:
        return raw_name
    # surrogateescape keeps names that are not UTF-8 distinct from one another.
    return unquote_plus(raw_name, encoding="utf-8", errors="surrogateescape")


def _encode_add(text: str) -> str:
    return quote(text, safe=_ADD_SAFE)


_WILDCARDS = re.compile(r"[*?\[]")
# Decisions remembered per name rule; names repeat across requests (utm_source,
# fbclid, ...), and a dict lookup is far cheaper than matching.  Bounded, so
# visitors inventing names cost a cleared dict now and then, never memory.
_DECISIONS_KEPT = 4096
_LONGEST_REMEMBERED_NAME = 128


def _glob_regex(patterns: tuple[str, ...]) -> Callable[[str], re.Match[str] | None] | None:
    if not patterns:
        return None
    return re.compile("|".join(fnmatch.translate(p) for p in patterns), re.IGNORECASE).match


def _pattern_matcher(patterns: tuple[str, ...]) -> Callable[[str], bool] | None:
    """Whether a decoded name matches any of `patterns` (fnmatch globs, case ignored).

    The answer is always that of one combined ``re.IGNORECASE`` regex.  ASCII
    names skip the regex for plain ASCII patterns (``fbclid``: a set lookup)
    and trailing-star ones (``utm_*``: a prefix test), which give the same
    answer for them at a fraction of the cost.
    """
    if not patterns:
        return None
    unique = tuple(dict.fromkeys(patterns))
    everything = _glob_regex(unique)
    assert everything is not None
    literal: set[str] = set()
    prefixes: list[str] = []
    others: list[str] = []
    for pattern in unique:
        if not pattern.isascii():
            others.append(pattern)
        elif not _WILDCARDS.search(pattern):
            literal.add(pattern.lower())
        elif pattern.endswith("*") and not _WILDCARDS.search(pattern[:-1]):
            prefixes.append(pattern[:-1].lower())
        else:
            others.append(pattern)
    exact = frozenset(literal)
    starts = tuple(prefixes)
    rest = _glob_regex(tuple(others))

    def matches(name: str) -> bool:
        if not name.isascii():
            return everything(name) is not None
        lowered = name.lower()
        if lowered in exact or (starts and lowered.startswith(starts)):
            return True
        return rest is not None and rest(name) is not None

    return matches


class _NameRule:
    """Which decoded names a policy lets through: never a denied one; only allowed ones if any are."""

    __slots__ = ("_allow", "_deny", "decisions")

    def __init__(self, allow: tuple[str, ...], deny: tuple[str, ...]) -> None:
        self._allow = _pattern_matcher(allow)
        self._deny = _pattern_matcher(deny)
        self.decisions: dict[str, bool] = {}

    def passes(self, name: str) -> bool:
        ok = (self._deny is None or not self._deny(name)) and (self._allow is None or self._allow(name))
        if len(name) <= _LONGEST_REMEMBERED_NAME:
            decisions = self.decisions
            if len(decisions) >= _DECISIONS_KEPT:
                decisions.clear()
            decisions[name] = ok
        return ok


@lru_cache(maxsize=1024)
def _name_rule(allow: tuple[str, ...], deny: tuple[str, ...]) -> _NameRule | None:
    """One rule per distinct (allow, deny) pair, shared by every link that has it."""
    if not allow and not deny:
        return None
    return _NameRule(allow, deny)


class SplitTarget(NamedTuple):
    """A target URL cut once into the parts the merge needs."""

    url: str
    base: str  # scheme://host/path, no "?" and no "#"
    fragment: str  # "#..." or ""
    segments: tuple[str, ...]  # the target's query parameters, then `add`, raw; empty ones left out
    names: tuple[str, ...]  # decoded name of each segment
    name_set: frozenset[str]
    freed: dict[str, int]  # bytes the Location loses when a name's segments are replaced
    # the Location when no visitor parameter is forwarded: the target as stored,
    # or the target with `add` merged in
    plain: str
    # base + "?" + segments, and what goes between it and the visitor's part
    query_prefix: str
    joiner: str
    # the Location's length before any visitor parameter: one "?" or "&" per segment
    length: int


def _split_target(target: str, add_segments: tuple[str, ...]) -> SplitTarget:
    hash_at = target.find("#")
    if hash_at >= 0:
        rest, fragment = target[:hash_at], target[hash_at:]
    else:
        rest, fragment = target, ""
    query_at = rest.find("?")
    if query_at >= 0:
        base, query = rest[:query_at], rest[query_at + 1 :]
        segments = tuple([s for s in query.split("&") if s]) + add_segments
    else:
        base, segments = rest, add_segments
    # (Comprehensions over lists, not generators: this runs once per link a
    # visitor with a query string reaches, and a generator costs twice as much.)
    names = tuple([decode_name(s.partition("=")[0]) for s in segments])
    freed: dict[str, int] = {}
    for segment, name in zip(segments, names, strict=True):
        freed[name] = freed.get(name, 0) + len(segment) + 1
    joined = "&".join(segments)
    query_prefix = f"{base}?{joined}"
    plain = f"{query_prefix}{fragment}" if add_segments else target
    length = len(base) + len(fragment) + len(joined) + (1 if segments else 0)
    return SplitTarget(
        target,
        base,
        fragment,
        segments,
        names,
        frozenset(names),
        freed,
        plain,
        query_prefix,
        "&" if segments else "",
        length,
    )


class CompiledFilter:
    """One policy, ready to run on the redirect hot path (build it with `compile_filter`)."""

    __slots__ = (
        "policy",
        "_drop",
        "_conflict",
        "_rule",
        "_add_segments",
        "_target",
        "_max_params",
        "_max_name",
        "_max_value",
        "_max_location",
    )

    def __init__(self, policy: QueryPolicy, limits: FilterLimits, target: str | None) -> None:
        self.policy = policy
        self._drop = policy.mode == "drop"
        self._conflict = policy.on_conflict
        self._rule = _name_rule(tuple(policy.allow), tuple(policy.deny) + limits.global_deny)
        self._add_segments = tuple(
            f"{_encode_add(name)}={_encode_add(value)}" for name, value in policy.add.items()
        )
        self._max_params = limits.max_params
        self._max_name = limits.max_name_length
        self._max_value = limits.max_value_length
        self._max_location = limits.max_location_length
        self._target = _split_target(target, self._add_segments) if target is not None else None

    def split(self, target: str) -> SplitTarget:
        """`target` cut once for `apply_split` (a filter shared by many links leaves the cut to each)."""
        cached = self._target
        if cached is not None and (cached.url is target or cached.url == target):
            return cached
        return _split_target(target, self._add_segments)

    def apply(self, target: str, raw_query: str) -> tuple[str, int]:
        """(Location for a visitor of `target` who sent `raw_query`, parameters a limit dropped)."""
        if self._drop or not raw_query:
            if not self._add_segments:
                return target, 0
            return self.split(target).plain, 0
        return self.apply_split(self.split(target), raw_query)

    def apply_split(self, parts: SplitTarget, raw_query: str) -> tuple[str, int]:
        """`apply` for a target that `split` cut already."""
        if self._drop or not raw_query:
            return (parts.plain if self._add_segments else parts.url), 0
        kept, forwarded, dropped = self._merge(parts, raw_query)
        if not forwarded:
            return parts.plain, dropped
        if kept is None:
            return f"{parts.query_prefix}{parts.joiner}{'&'.join(forwarded)}{parts.fragment}", dropped
        return f"{parts.base}?{'&'.join(kept + forwarded)}{parts.fragment}", dropped

    def forwarded_query(self, target: str, raw_query: str) -> str:
        """Only the visitor's parameters that `apply` puts into the Location, as they appear there."""
        if self._drop or not raw_query:
            return ""
        return "&".join(self._merge(self.split(target), raw_query)[1])

    def _merge(self, parts: SplitTarget, raw_query: str) -> tuple[list[str] | None, list[str], int]:
        """(target-side segments kept, or None for all of them; visitor segments forwarded;
        parameters dropped by a limit)."""
        rule = self._rule
        decisions = rule.decisions if rule is not None else None
        keeps_target = self._conflict == "target"
        replaces = self._conflict == "request"
        target_names, freed = parts.name_set, parts.freed
        max_name, max_value, max_params = self._max_name, self._max_value, self._max_params
        budget = self._max_location
        length = parts.length
        forwarded: list[str] = []
        replaced: set[str] = set()
        dropped = 0
        full = False

        for segment in make_query_safe(raw_query).split("&"):
            if not segment:
                continue
            raw_name, _, value = segment.partition("=")
            name = decode_name(raw_name) if "%" in raw_name or "+" in raw_name else raw_name
            if not name:
                continue
            if rule is not None:
                ok = decisions.get(name)  # type: ignore[union-attr]
                if ok is None:
                    ok = rule.passes(name)
                if not ok:
                    continue
            replacing = False
            if name in target_names:
                if keeps_target:
                    continue
                replacing = replaces and name not in replaced
            if full or len(raw_name) > max_name or len(value) > max_value:
                dropped += 1
                continue
            if len(forwarded) >= max_params:
                dropped += 1
                full = True
                continue
            grows = len(segment) + 1
            if replacing:
                grows -= freed[name]
            if length + grows > budget:
                # Stop here rather than skip: the forwarded parameters stay a prefix
                # of what the policy lets through, so a repeated name keeps its order.
                dropped += 1
                full = True
                continue
            length += grows
            if replacing:
                replaced.add(name)
            forwarded.append(segment)

        if not replaced:
            return None, forwarded, dropped
        kept = [s for s, n in zip(parts.segments, parts.names, strict=True) if n not in replaced]
        return kept, forwarded, dropped


def compile_filter(
    policy: QueryPolicy | None, limits: FilterLimits, target: str | None = None
) -> CompiledFilter:
    """A filter for one link; `None` means the operator's default. Pass the target to pre-split it."""
    if policy is None:
        policy = QueryPolicy(mode=limits.default_mode)  # type: ignore[arg-type]
    return CompiledFilter(policy, limits, target)
