"""Properties of the gateway query filter over random targets, policies and visitor queries.

Terms used below, for a target T, a filter f and a visitor query q:

* L = f.apply(T, q)[0], the Location.
* the target side: the parameters of f.apply(T, "")[0], i.e. T's own plus `add`.
* F = f.forwarded_query(T, q), the visitor parameters that made it into L.

Idempotence, precisely: re-sending exactly what was forwarded changes nothing,
``f.apply(T, F)[0] == L`` and ``f.forwarded_query(T, F) == F``; and with
``on_conflict="target"`` a visitor who sends the whole query of L lands on L
again, ``f.apply(T, query(L))[0] == L``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import string
from urllib.parse import unquote_plus, unquote_to_bytes, urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.config import Settings
from service.query_filter import (
    FilterLimits,
    QueryPolicy,
    check_policy,
    compile_filter,
    make_query_safe,
)

DEFAULTS = FilterLimits.from_settings(Settings.model_construct())
# Data generation dominates the cost; these counts keep the file well under 20 s.
MANY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Names that collide on purpose: with each other once decoded or case-folded,
# with the patterns below, and with the target's own parameters.
NAMES = [
    "a",
    "A",
    "%61",
    "b",
    "id",
    "ID",
    "utm_source",
    "utm%5Fsource",
    "UTM_Medium",
    "fbclid",
    "%66bclid",
    "x+y",
    "x%20y",
    "q",
    "qq",
    "%C5%BF",
    "s",
    "caf%C3%A9",
    "%FF",
    "",
]
PATTERNS = ["a", "b*", "utm_*", "id", "[ab]", "q?", "*", "fbclid", "x y", "s", "caf\u00e9", "[!q]*", "\u017f"]
PATH_TEXT = string.ascii_letters + string.digits + "._~%-"
SAFE_TEXT = string.ascii_letters + string.digits + "-._~!$'()*,;:@/?%+="
# One byte each, as the ASGI server hands the query over (latin-1).
ANY_BYTE = st.characters(min_codepoint=0, max_codepoint=255)

target_values = st.text(alphabet=string.ascii_letters + string.digits + "-._~%+", max_size=8)
target_params = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "id", "utm_source", "q", "%61", "src"]), st.none() | target_values
    ).map(lambda p: p[0] if p[1] is None else f"{p[0]}={p[1]}"),
    max_size=4,
)


@st.composite
def targets(draw: st.DrawFn) -> str:
    """Targets as service.targets stores them: absolute http(s), printable ASCII."""
    origin = draw(st.sampled_from(["https://shop.example", "http://a.example:8080", "https://b.example"]))
    path = "".join("/" + s for s in draw(st.lists(st.text(alphabet=PATH_TEXT, max_size=5), max_size=3)))
    target = origin + path
    query_kind = draw(st.sampled_from(["none", "empty", "params", "trailing"]))
    if query_kind == "empty":
        target += "?"
    elif query_kind in ("params", "trailing"):
        target += "?" + "&".join(draw(target_params)) + ("&" if query_kind == "trailing" else "")
    if draw(st.booleans()):
        target += "#" + draw(st.text(alphabet=string.ascii_letters + "?/=&#", max_size=6))
    return target


visitor_segment = st.one_of(
    st.tuples(st.sampled_from(NAMES), st.none() | st.text(alphabet=ANY_BYTE, max_size=6)).map(
        lambda p: p[0] if p[1] is None else f"{p[0]}={p[1]}"
    ),
    st.text(alphabet=ANY_BYTE, max_size=10),
    st.text(alphabet=SAFE_TEXT, max_size=10),
)
visitor_queries = st.one_of(
    st.lists(visitor_segment, max_size=8).map("&".join),
    st.text(alphabet=ANY_BYTE, max_size=30),
)

policies = st.builds(
    QueryPolicy,
    mode=st.sampled_from(["forward", "forward", "forward", "drop"]),
    allow=st.one_of(st.just([]), st.lists(st.sampled_from(PATTERNS), max_size=3)),
    deny=st.lists(st.sampled_from(PATTERNS), max_size=3),
    on_conflict=st.sampled_from(["target", "request", "append"]),
    add=st.dictionaries(
        st.sampled_from(["src", "a", "id", "x y", "caf\u00e9"]),
        st.text(alphabet=string.ascii_letters + " &=+%#\u00e9", max_size=5),
        max_size=2,
    ),
)

limit_sets = st.builds(
    lambda base, params, name, value, location, deny: dataclasses.replace(
        base,
        max_params=params,
        max_name_length=name,
        max_value_length=value,
        max_location_length=location,
        global_deny=deny,
    ),
    st.just(DEFAULTS),
    st.sampled_from([DEFAULTS.max_params, 0, 1, 3]),
    st.sampled_from([DEFAULTS.max_name_length, 1, 4]),
    st.sampled_from([DEFAULTS.max_value_length, 0, 3]),
    st.sampled_from([DEFAULTS.max_location_length, 256, 80]),
    st.lists(st.sampled_from(["fbclid", "gclid", "s*"]), max_size=2).map(tuple),
)


def query_of(url: str) -> str:
    return url.split("#", 1)[0].partition("?")[2]


def segments(query: str) -> list[str]:
    return [s for s in query.split("&") if s]


def decoded_name(segment: str) -> str:
    return unquote_plus(segment.partition("=")[0], errors="surrogateescape")


def matches(name: str, patterns: list[str] | tuple[str, ...]) -> bool:
    return any(re.fullmatch(fnmatch.translate(p), name, re.IGNORECASE) for p in patterns)


@MANY
@given(targets(), policies, limit_sets, visitor_queries)
def test_the_location_keeps_the_target_and_forwards_only_what_the_policy_lets_through(
    target: str, policy: QueryPolicy, limits: FilterLimits, query: str
) -> None:
    check_policy(policy, DEFAULTS)  # valid as written; the limits then vary at redirect time
    filter_ = compile_filter(policy, limits)
    location, dropped = filter_.apply(target, query)
    forwarded = segments(filter_.forwarded_query(target, query))
    target_side = segments(query_of(filter_.apply(target, "")[0]))
    side_names = {decoded_name(s) for s in target_side}

    # Scheme, host, path and fragment are the target's; the result parses.
    got, want = urlsplit(location), urlsplit(target)
    assert (got.scheme, got.netloc, got.path, got.fragment) == (
        want.scheme,
        want.netloc,
        want.path,
        want.fragment,
    )
    assert location.startswith(target.split("?", 1)[0].split("#", 1)[0])
    assert location.endswith(target[len(target.split("#", 1)[0]) :])
    # Nothing but printable ASCII, so the header cannot be split or smuggled.
    assert re.search(r"[^\x21-\x7e]", location) is None
    assert dropped >= 0

    # L's query is the target side (minus what the visitor replaced) followed by F.
    if forwarded:
        replaced = {decoded_name(s) for s in forwarded} if policy.on_conflict == "request" else set()
        kept = [s for s in target_side if decoded_name(s) not in replaced]
        assert segments(query_of(location)) == kept + forwarded
    else:
        assert location in (target, filter_.apply(target, "")[0])

    if policy.mode == "drop":
        assert forwarded == [] and dropped == 0
    for segment in forwarded:
        name = decoded_name(segment)
        assert name
        assert not matches(name, list(policy.deny) + list(limits.global_deny))
        assert not policy.allow or matches(name, policy.allow)
        if policy.on_conflict == "target":
            assert name not in side_names
        assert len(segment.partition("=")[0]) <= limits.max_name_length
        assert len(segment.partition("=")[2]) <= limits.max_value_length
    assert len(forwarded) <= limits.max_params
    if forwarded:
        assert len(location.encode()) <= limits.max_location_length

    # With on_conflict=target (and append), every target-side parameter keeps its value and place.
    if policy.on_conflict in ("target", "append"):
        assert segments(query_of(location))[: len(target_side)] == target_side

    # F is a subsequence of what the visitor sent (made safe), each parameter byte for byte.
    sent = iter(make_query_safe(query).split("&"))
    assert all(any(segment == candidate for candidate in sent) for segment in forwarded)


@MANY
@given(visitor_queries)
def test_making_a_query_safe_changes_no_byte_the_target_will_decode(query: str) -> None:
    safe = make_query_safe(query)
    assert re.search(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/?%]", safe) is None
    assert re.search(r"%(?![0-9A-Fa-f]{2})", safe) is None
    assert unquote_to_bytes(safe) == unquote_to_bytes(query.encode("latin-1"))
    assert make_query_safe(safe) == safe
    # Only unsafe bytes changed: the safe parts, "+" and valid escapes among them, are untouched.
    if re.fullmatch(r"([A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*", query):
        assert safe == query


@SOME
@given(targets(), policies, limit_sets, visitor_queries)
def test_filtering_what_was_forwarded_again_changes_nothing(
    target: str, policy: QueryPolicy, limits: FilterLimits, query: str
) -> None:
    filter_ = compile_filter(policy, limits)
    location = filter_.apply(target, query)[0]
    forwarded = filter_.forwarded_query(target, query)
    assert filter_.apply(target, forwarded)[0] == location
    assert filter_.forwarded_query(target, forwarded) == forwarded


@SOME
@given(targets(), policies, limit_sets, visitor_queries)
def test_with_on_conflict_target_following_the_redirect_query_again_lands_in_the_same_place(
    target: str, policy: QueryPolicy, limits: FilterLimits, query: str
) -> None:
    filter_ = compile_filter(policy.model_copy(update={"on_conflict": "target"}), limits)
    location = filter_.apply(target, query)[0]
    assert filter_.apply(target, query_of(location))[0] == location


@SOME
@given(targets(), targets(), policies, limit_sets, visitor_queries)
def test_a_filter_compiled_with_its_target_answers_like_one_without(
    target: str, other: str, policy: QueryPolicy, limits: FilterLimits, query: str
) -> None:
    with_target = compile_filter(policy, limits, target=target)
    without = compile_filter(policy, limits)
    assert with_target.apply(target, query) == without.apply(target, query)
    assert with_target.apply(other, query) == without.apply(other, query)


@SOME
@given(
    st.lists(
        st.sampled_from(PATTERNS) | st.text(alphabet="ab*?[]!\u017fK\u212a", min_size=1, max_size=4),
        min_size=1,
        max_size=4,
    ),
    st.lists(st.text(alphabet="abAB_sSkK\u017f\u212a\u00e9*?[]", max_size=5), max_size=5),
)
def test_allow_matching_agrees_with_a_plain_case_insensitive_glob(
    patterns: list[str], names: list[str]
) -> None:
    filter_ = compile_filter(QueryPolicy(allow=patterns), DEFAULTS)
    for name in filter(None, names):
        raw = "".join(f"%{b:02X}" for b in name.encode())
        expected = matches(name, patterns)
        assert (filter_.forwarded_query("https://e.example/", f"{raw}=1") != "") == expected, name
