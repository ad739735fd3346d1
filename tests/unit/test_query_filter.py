"""The gateway query filter, rule by rule (see docs/query-filter.md)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pydantic
import pytest

from service.config import Settings
from service.query_filter import (
    FilterLimits,
    PolicyError,
    QueryPolicy,
    check_policy,
    compile_filter,
    make_query_safe,
)

DEFAULTS = FilterLimits.from_settings(Settings.model_construct())
T = "https://example.com/p"


def limits(**changes: object) -> FilterLimits:
    return dataclasses.replace(DEFAULTS, **changes)


def policy(**fields: object) -> QueryPolicy:
    return QueryPolicy.model_validate(fields)


def location(
    target: str, query: str, policy_: QueryPolicy | None = None, limits_: FilterLimits = DEFAULTS
) -> str:
    return compile_filter(policy_, limits_).apply(target, query)[0]


# --- merging into the target ---------------------------------------------

MERGE = [
    pytest.param(T, "a=1", f"{T}?a=1", id="target-without-query-gets-a-question-mark"),
    pytest.param(f"{T}?", "a=1", f"{T}?a=1", id="target-ending-in-question-mark-gets-no-empty-parameter"),
    pytest.param(f"{T}?x=1&", "a=1", f"{T}?x=1&a=1", id="target-ending-in-ampersand-gets-no-empty-parameter"),
    pytest.param(f"{T}?x=1", "a=1", f"{T}?x=1&a=1", id="visitor-parameters-follow-the-target-ones"),
    pytest.param(f"{T}#top", "a=1", f"{T}?a=1#top", id="fragment-stays-at-the-end"),
    pytest.param(f"{T}?x=1#top", "a=1", f"{T}?x=1&a=1#top", id="fragment-after-the-merged-query"),
    pytest.param(
        f"{T}#a?b=1", "a=1", f"{T}?a=1#a?b=1", id="question-mark-inside-the-fragment-is-not-a-query"
    ),
    pytest.param(f"{T}?x=1&&y=2", "a=1", f"{T}?x=1&y=2&a=1", id="empty-target-segments-are-not-parameters"),
    pytest.param("https://example.com", "a=1", "https://example.com?a=1", id="target-without-path"),
]


@pytest.mark.parametrize(("target", "query", "expected"), MERGE)
def test_visitor_query_is_merged_into_the_target_query(target: str, query: str, expected: str) -> None:
    assert location(target, query) == expected


UNTOUCHED = [
    pytest.param(T, id="no-query"),
    pytest.param(f"{T}?", id="bare-question-mark"),
    pytest.param(f"{T}?x=1&", id="trailing-ampersand"),
    pytest.param(f"{T}?x=1&&y=2#f", id="empty-segments-and-fragment"),
]


@pytest.mark.parametrize("target", UNTOUCHED)
@pytest.mark.parametrize(
    "query", ["", "&", "&&", "=x", "fbclid=1"], ids=["empty", "amp", "amps", "no-name", "denied"]
)
def test_the_target_is_returned_as_stored_when_nothing_is_forwarded(target: str, query: str) -> None:
    assert compile_filter(policy(deny=["fbclid"]), DEFAULTS).apply(target, query) == (target, 0)


def test_an_empty_query_returns_the_very_target_string() -> None:
    target = f"{T}?x=1"
    assert compile_filter(None, DEFAULTS).apply(target, "")[0] is target


# --- exactness of forwarded parameters -----------------------------------

EXACT = [
    pytest.param("a=1&a=2&b=3&a=4", id="repeated-names-keep-their-order"),
    pytest.param("flag", id="valueless-parameter"),
    pytest.param("a=", id="empty-value"),
    pytest.param("flag&a=&b", id="valueless-and-empty-mixed"),
    pytest.param("q=a+b", id="plus-stays-a-plus"),
    pytest.param("q=a%20b", id="escape-stays-as-sent"),
    pytest.param("q=%2B%2b", id="escape-case-kept"),
    pytest.param("q=%25", id="escaped-percent-is-not-double-encoded"),
    pytest.param("q=a=b=c", id="equals-in-value"),
    pytest.param("q=a/b?c:d@e", id="slash-question-colon-at"),
    pytest.param("q=!$'()*,;~", id="sub-delims"),
    pytest.param("u=https%3A%2F%2Fx.org%2F%3Fa%3D1", id="encoded-url-value"),
]


@pytest.mark.parametrize("query", EXACT)
def test_forwarded_parameters_keep_the_bytes_the_visitor_sent(query: str) -> None:
    assert location(T, query) == f"{T}?{query}"


UNSAFE = [
    pytest.param("q=a b", "q=a%20b", id="space"),
    pytest.param("q=a\r\nLocation: x", "q=a%0D%0ALocation:%20x", id="cr-lf"),
    pytest.param("q=\t\x00\x7f", "q=%09%00%7F", id="tab-nul-del"),
    pytest.param("q=a#b", "q=a%23b", id="hash"),
    pytest.param('q="<>\\^`{|}', "q=%22%3C%3E%5C%5E%60%7B%7C%7D", id="other-ascii"),
    pytest.param("a[]=1", "a%5B%5D=1", id="square-brackets"),
    pytest.param("q=\xe9", "q=%E9", id="latin-1-byte"),
    pytest.param("q=\xc3\xa9", "q=%C3%A9", id="utf-8-bytes-kept-byte-for-byte"),
    pytest.param("q=\u20ac", "q=%E2%82%AC", id="text-beyond-latin-1-as-utf-8"),
    pytest.param("q=%", "q=%25", id="bare-percent"),
    pytest.param("q=%4", "q=%254", id="short-escape"),
    pytest.param("q=%zz%41", "q=%25zz%41", id="invalid-escape-next-to-valid"),
    pytest.param("q=%%41", "q=%25%41", id="percent-before-escape"),
]


@pytest.mark.parametrize(("query", "forwarded"), UNSAFE)
def test_bytes_not_allowed_in_a_query_are_percent_encoded(query: str, forwarded: str) -> None:
    assert location(T, query) == f"{T}?{forwarded}"


@pytest.mark.parametrize(("query", "forwarded"), UNSAFE)
def test_making_a_query_safe_twice_changes_nothing(query: str, forwarded: str) -> None:
    assert make_query_safe(make_query_safe(query)) == make_query_safe(query) == forwarded


ESCAPES = [
    pytest.param("x=1#@evil.example/", id="hash-then-host"),
    pytest.param("x=1\r\nSet-Cookie: a=b", id="header-injection"),
    pytest.param("/../../admin", id="dot-segments"),
    pytest.param("@evil.example", id="userinfo-lookalike"),
    pytest.param("?x=1", id="second-question-mark"),
    pytest.param("\\\\evil.example", id="backslashes"),
]


@pytest.mark.parametrize("query", ESCAPES)
def test_nothing_the_visitor_sends_changes_scheme_host_path_or_fragment(query: str) -> None:
    from urllib.parse import urlsplit

    target = "https://example.com/a/b?x=0#frag"
    result = urlsplit(location(target, query))
    assert (result.scheme, result.netloc, result.path, result.fragment) == (
        "https",
        "example.com",
        "/a/b",
        "frag",
    )
    assert not re.search(r"[\x00-\x20\x7f-\uffff]", location(target, query))


# --- mode -----------------------------------------------------------------

MODES = [
    pytest.param(policy(mode="drop"), "a=1&b=2", T, id="drop-forwards-nothing"),
    pytest.param(policy(mode="drop", add={"src": "short"}), "a=1", f"{T}?src=short", id="drop-still-adds"),
    pytest.param(policy(mode="drop", allow=["a"]), "a=1", T, id="drop-ignores-allow"),
    pytest.param(policy(), "a=1&b=2", f"{T}?a=1&b=2", id="forward-by-default"),
]


@pytest.mark.parametrize(("policy_", "query", "expected"), MODES)
def test_mode_decides_whether_any_visitor_parameter_passes(
    policy_: QueryPolicy, query: str, expected: str
) -> None:
    assert location(T, query, policy_) == expected


def test_a_link_without_policy_uses_the_operator_default_mode() -> None:
    assert location(T, "a=1", None, limits(default_mode="drop")) == T
    assert location(T, "a=1", None, limits(default_mode="forward")) == f"{T}?a=1"


# --- allow and deny -------------------------------------------------------

ALLOW = [
    pytest.param(["utm_*"], "utm_source=a&x=1&utm_medium=b", "utm_source=a&utm_medium=b", id="glob"),
    pytest.param(["utm_*"], "UTM_Source=a", "UTM_Source=a", id="case-ignored"),
    pytest.param(["utm_*"], "utm%5Fsource=a", "utm%5Fsource=a", id="decoded-name-matched-raw-forwarded"),
    pytest.param(["utm_*"], "utm_=a", "utm_=a", id="star-matches-nothing-too"),
    pytest.param(["ref", "q"], "q=1&ref=2&qq=3&r=4", "q=1&ref=2", id="literal-names"),
    pytest.param(["page?"], "page1=a&page=b&page10=c", "page1=a", id="question-mark-one-character"),
    pytest.param(["[ab]id"], "aid=1&bid=2&cid=3", "aid=1&bid=2", id="character-class"),
    pytest.param(["[!a]id"], "aid=1&bid=2", "bid=2", id="negated-class"),
    pytest.param(["*_id"], "user_id=1&id=2", "user_id=1", id="leading-star"),
    pytest.param(["a b"], "a+b=1&a%20b=2&ab=3", "a+b=1&a%20b=2", id="plus-read-as-space"),
    pytest.param(["caf\u00e9"], "caf%C3%A9=1&CAF%C3%89=2&cafe=3", "caf%C3%A9=1&CAF%C3%89=2", id="utf-8-name"),
    pytest.param(["*"], "a=1&b", "a=1&b", id="star-allows-all"),
]


@pytest.mark.parametrize(("allow", "query", "forwarded"), ALLOW)
def test_only_allowed_names_pass_when_an_allow_list_is_given(
    allow: list[str], query: str, forwarded: str
) -> None:
    assert location(T, query, policy(allow=allow)) == f"{T}?{forwarded}"


DENY = [
    pytest.param(policy(deny=["fbclid"]), DEFAULTS, "fbclid=1&a=2", id="link-deny"),
    pytest.param(policy(), limits(global_deny=("fbclid",)), "fbclid=1&a=2", id="global-deny"),
    pytest.param(policy(deny=["x"]), limits(global_deny=("fbclid",)), "x=0&fbclid=1&a=2", id="both-lists"),
    pytest.param(policy(deny=["fbclid"]), DEFAULTS, "FBCLID=1&a=2", id="case-ignored"),
    pytest.param(policy(deny=["fbclid"]), DEFAULTS, "%66bclid=1&a=2", id="escaped-letter"),
    pytest.param(policy(deny=["fbclid"]), DEFAULTS, "%46%42clid=1&a=2", id="escaped-capitals"),
    pytest.param(policy(deny=["session*"]), DEFAULTS, "sessionid=1&Session_Token=2&a=2", id="glob"),
    pytest.param(policy(allow=["*"], deny=["fbclid"]), DEFAULTS, "fbclid=1&a=2", id="deny-wins-over-allow"),
    pytest.param(policy(deny=["fbclid"]), DEFAULTS, "fbclid&a=2", id="valueless"),
    pytest.param(policy(deny=["fbclid"]), DEFAULTS, "fbclid=1&fbclid=2&a=2", id="repeated"),
    pytest.param(policy(deny=["a b"]), DEFAULTS, "a+b=1&a%20b=1&a=2", id="plus-read-as-space"),
    pytest.param(policy(deny=["tok"]), DEFAULTS, "t%6Fk=\r\n&a=2", id="escaped-with-unsafe-value"),
]


@pytest.mark.parametrize(("policy_", "limits_", "query"), DENY)
def test_denied_names_never_reach_the_target(policy_: QueryPolicy, limits_: FilterLimits, query: str) -> None:
    assert location(T, query, policy_, limits_) == f"{T}?a=2"


def test_names_that_decode_to_nothing_are_not_forwarded() -> None:
    assert location(T, "=1&a=2&=&&b") == f"{T}?a=2&b"


def test_names_that_are_not_utf_8_are_matched_but_kept_as_sent() -> None:
    assert location(T, "%FF=1&%ff%fe=2", policy(deny=["\udcff"])) == f"{T}?%ff%fe=2"


# --- conflicts with the target's own parameters ---------------------------

TARGET_Q = f"{T}?a=1&b=2&a=3"
CONFLICT = [
    pytest.param("target", "a=9&c=4", f"{T}?a=1&b=2&a=3&c=4", id="target-keeps-its-values"),
    pytest.param("request", "a=9&c=4", f"{T}?b=2&a=9&c=4", id="request-replaces-every-target-value"),
    pytest.param("request", "a=9&c=4&a=8", f"{T}?b=2&a=9&c=4&a=8", id="request-keeps-all-visitor-values"),
    pytest.param("append", "a=9&c=4", f"{T}?a=1&b=2&a=3&a=9&c=4", id="append-keeps-both-target-first"),
    pytest.param("target", "A=9", f"{T}?a=1&b=2&a=3&A=9", id="names-are-case-sensitive-here"),
    pytest.param("target", "%61=9", TARGET_Q, id="decoded-name-conflicts"),
    pytest.param("request", "%61=9", f"{T}?b=2&%61=9", id="decoded-name-replaces-raw-kept"),
    pytest.param("target", "a", TARGET_Q, id="valueless-conflicts-too"),
]


@pytest.mark.parametrize(("on_conflict", "query", "expected"), CONFLICT)
def test_on_conflict_decides_who_wins_a_name_the_target_already_has(
    on_conflict: str, query: str, expected: str
) -> None:
    assert location(TARGET_Q, query, policy(on_conflict=on_conflict)) == expected


def test_target_names_are_compared_decoded() -> None:
    assert location(f"{T}?utm%5Fsource=site", "utm_source=v", policy()) == f"{T}?utm%5Fsource=site"


# --- add ------------------------------------------------------------------

ADD = [
    pytest.param({"src": "short"}, "target", "", f"{T}?x=1&src=short", id="added-without-visitor-query"),
    pytest.param({"src": "short"}, "target", "a=1", f"{T}?x=1&src=short&a=1", id="added-before-visitor"),
    pytest.param({"src": "short"}, "target", "src=evil", f"{T}?x=1&src=short", id="visitor-cannot-override"),
    pytest.param({"src": "short"}, "request", "src=v", f"{T}?x=1&src=v", id="request-overrides-add"),
    pytest.param({"src": "short"}, "append", "src=v", f"{T}?x=1&src=short&src=v", id="append-keeps-both"),
    pytest.param({"x": "2"}, "target", "", f"{T}?x=1&x=2", id="add-appends-to-a-target-name"),
    pytest.param({"a b": "c&d=e+f%"}, "target", "", f"{T}?x=1&a%20b=c%26d%3De%2Bf%25", id="encoded"),
    pytest.param(
        {"r": "https://x.org/?q=1"}, "target", "", f"{T}?x=1&r=https://x.org/?q%3D1", id="url-value"
    ),
    pytest.param({"k": "\u00e9\u20ac"}, "target", "", f"{T}?x=1&k=%C3%A9%E2%82%AC", id="non-ascii-as-utf-8"),
    pytest.param({"flag": ""}, "target", "", f"{T}?x=1&flag=", id="empty-value"),
]


@pytest.mark.parametrize(("add", "on_conflict", "query", "expected"), ADD)
def test_added_parameters_are_treated_like_the_target_own(
    add: dict[str, str], on_conflict: str, query: str, expected: str
) -> None:
    assert location(f"{T}?x=1", query, policy(add=add, on_conflict=on_conflict)) == expected


def test_added_parameters_go_before_the_fragment() -> None:
    assert location(f"{T}#f", "", policy(add={"src": "s"})) == f"{T}?src=s#f"


def test_added_parameters_are_not_subject_to_allow_or_deny() -> None:
    p = policy(allow=["a"], deny=["src"], add={"src": "s"})
    assert location(T, "src=v&a=1", p, limits(global_deny=("src",))) == f"{T}?src=s&a=1"


# --- limits ---------------------------------------------------------------

LIMITS = [
    pytest.param(limits(max_params=2), "a=1&b=2&c=3&d=4", f"{T}?a=1&b=2", 2, id="max-params-keeps-the-first"),
    pytest.param(limits(max_params=0), "a=1&b=2", T, 2, id="max-params-zero"),
    pytest.param(limits(max_name_length=3), "abc=1&abcd=2&e=3", f"{T}?abc=1&e=3", 1, id="name-length"),
    pytest.param(limits(max_name_length=3), "a%41=1", T, 1, id="name-length-counts-escapes-as-sent"),
    pytest.param(limits(max_value_length=2), "a=12&b=123&c", f"{T}?a=12&c", 1, id="value-length"),
    pytest.param(limits(max_value_length=3), "a=%20", f"{T}?a=%20", 0, id="value-length-at-the-limit"),
    pytest.param(limits(max_value_length=2), "a= ", T, 1, id="value-length-measured-after-escaping"),
    pytest.param(
        limits(max_params=1),
        "fbclid=1&a=1&b=2",
        f"{T}?a=1",
        1,
        id="denied-names-do-not-count-toward-max-params",
    ),
]


@pytest.mark.parametrize(("limits_", "query", "expected", "dropped"), LIMITS)
def test_whatever_exceeds_a_limit_is_dropped_and_counted(
    limits_: FilterLimits, query: str, expected: str, dropped: int
) -> None:
    filter_ = compile_filter(policy(deny=["fbclid"]), limits_)
    assert filter_.apply(T, query) == (expected, dropped)


def test_policy_drops_are_not_counted_as_over_limit() -> None:
    filter_ = compile_filter(policy(allow=["a"], deny=["b"]), DEFAULTS)
    assert filter_.apply(f"{T}?a=0", "a=1&b=2&c=3") == (f"{T}?a=0", 0)


def _location_limit(extra: int) -> FilterLimits:
    return limits(max_location_length=len(f"{T}?x=1&a=1") + extra)


LOCATION = [
    pytest.param("target", 0, "a=1&b=2", f"{T}?x=1&a=1", 1, id="exactly-at-the-limit"),
    pytest.param("target", -1, "a=1", f"{T}?x=1", 1, id="one-byte-over"),
    pytest.param("target", 0, "a=1&b=2&c", f"{T}?x=1&a=1", 2, id="stops-at-the-first-that-does-not-fit"),
    pytest.param(
        "target", 4, "a=1&bbbbbb=2&c", f"{T}?x=1&a=1", 2, id="later-shorter-ones-do-not-jump-the-queue"
    ),
    pytest.param("request", -3, "x=22", f"{T}?x=22", 0, id="a-replacement-frees-the-target-bytes"),
    pytest.param(
        "request", -3, "x=222", f"{T}?x=1", 1, id="a-replacement-that-does-not-fit-keeps-the-target"
    ),
]


@pytest.mark.parametrize(("on_conflict", "extra", "query", "expected", "dropped"), LOCATION)
def test_the_location_never_exceeds_its_byte_limit(
    on_conflict: str, extra: int, query: str, expected: str, dropped: int
) -> None:
    filter_ = compile_filter(policy(on_conflict=on_conflict), _location_limit(extra))
    location_, dropped_ = filter_.apply(f"{T}?x=1", query)
    assert (location_, dropped_) == (expected, dropped)
    assert len(location_.encode()) <= _location_limit(extra).max_location_length


def test_a_target_over_the_location_limit_still_redirects_without_visitor_parameters() -> None:
    long_target = f"{T}?x={'y' * 400}"
    filter_ = compile_filter(policy(add={"s": "1"}), limits(max_location_length=256))
    assert filter_.apply(long_target, "a=1&b=2") == (f"{long_target}&s=1", 2)


# --- compiled once, applied to many ---------------------------------------

COMPILED_CASES = [
    pytest.param(policy(), id="default"),
    pytest.param(policy(add={"s": "1"}), id="add"),
    pytest.param(policy(on_conflict="request", add={"x": "9"}), id="request"),
    pytest.param(policy(mode="drop", add={"s": "1"}), id="drop-add"),
]


@pytest.mark.parametrize("policy_", COMPILED_CASES)
def test_a_filter_compiled_for_one_target_still_serves_any_other(policy_: QueryPolicy) -> None:
    compiled_for = f"{T}?x=1#f"
    other = "https://other.example/q?y=2"
    with_target = compile_filter(policy_, DEFAULTS, target=compiled_for)
    without = compile_filter(policy_, DEFAULTS)
    for target in (compiled_for, other, T):
        parts = without.split(target)
        for query in ("", "x=2&z=3", "y=1"):
            assert with_target.apply(target, query) == without.apply(target, query)
            # A filter shared by many links, each cutting its own target once, answers the same.
            assert without.apply_split(parts, query) == without.apply(target, query)


def test_the_forwarded_query_is_what_the_location_gained_from_the_visitor() -> None:
    filter_ = compile_filter(policy(on_conflict="request", deny=["d"]), DEFAULTS)
    assert filter_.forwarded_query(f"{T}?a=1&b=2", "d=0&a=9&c= ") == "a=9&c=%20"
    assert filter_.forwarded_query(f"{T}?a=1", "") == ""


def test_name_decisions_stay_right_after_the_decision_memory_fills_up() -> None:
    filter_ = compile_filter(policy(allow=["keep*"], deny=["keep_not"]), DEFAULTS)
    for n in range(5000):
        filter_.apply(T, f"n{n}=1")
    assert filter_.apply(T, "keep_1=1&keep_not=2&n1=3&" + "k" * 300 + "=4") == (f"{T}?keep_1=1", 0)


# --- policy checks at create/PATCH time -----------------------------------

REJECTED = [
    pytest.param({"allow": [""]}, DEFAULTS, "query.allow[0]", id="empty-allow-pattern"),
    pytest.param({"deny": ["ok", ""]}, DEFAULTS, "query.deny[1]", id="empty-deny-pattern"),
    pytest.param({"allow": ["a" * 129]}, DEFAULTS, "query.allow[0]", id="pattern-too-long"),
    pytest.param({"deny": ["x", "y", "z"]}, limits(max_patterns=2), "query.deny", id="too-many-patterns"),
    pytest.param({"allow": ["a\nb"]}, DEFAULTS, "query.allow[0]", id="control-character-in-pattern"),
    pytest.param({"add": {"": "x"}}, DEFAULTS, 'query.add[""]', id="empty-add-name"),
    pytest.param({"add": {"a\r\n": "x"}}, DEFAULTS, 'query.add["a\\r\\n"]', id="control-in-add-name"),
    pytest.param({"add": {"a": "x\x00"}}, DEFAULTS, 'query.add["a"]', id="control-in-add-value"),
    pytest.param({"add": {"a": "\x85"}}, DEFAULTS, 'query.add["a"]', id="c1-control-in-add-value"),
    pytest.param({"add": {"a": "\ud800"}}, DEFAULTS, 'query.add["a"]', id="lone-surrogate-in-add-value"),
    pytest.param({"add": {"a" * 129: "x"}}, DEFAULTS, "query.add[", id="add-name-too-long"),
    pytest.param(
        {"add": {"a": "\u20ac" * 4}},
        limits(max_value_length=11),
        'query.add["a"]',
        id="add-value-long-once-encoded",
    ),
    pytest.param(
        {"add": {"a": "1", "b": "2"}}, limits(max_add=1), "query.add", id="too-many-add-parameters"
    ),
    pytest.param(
        {"add": {f"k{i}": "v" * 100 for i in range(3)}},
        limits(max_location_length=300),
        "query.add",
        id="add-cannot-fit-any-location",
    ),
]


@pytest.mark.parametrize(("fields", "limits_", "field"), REJECTED)
def test_a_policy_that_cannot_work_is_refused_when_it_is_written(
    fields: dict[str, object], limits_: FilterLimits, field: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        check_policy(policy(**fields), limits_)
    assert caught.value.field.startswith(field)
    assert caught.value.reason
    assert str(caught.value).startswith(caught.value.field)


def test_a_bad_mode_that_bypassed_validation_is_refused_too() -> None:
    with pytest.raises(PolicyError) as caught:
        check_policy(QueryPolicy.model_construct(mode="sometimes"), DEFAULTS)
    assert caught.value.field == "query.mode"


ACCEPTED = [
    pytest.param({}, id="empty"),
    pytest.param({"mode": "drop"}, id="drop"),
    pytest.param({"allow": ["utm_*", "[ab]?", "a" * 128], "deny": ["*"] * 32}, id="at-the-limits"),
    pytest.param({"allow": ["["], "deny": ["]", "[!"]}, id="odd-but-valid-globs"),
    pytest.param(
        {"add": {"a b": "caf\u00e9 & more", "flag": ""}, "on_conflict": "append"}, id="add-with-text"
    ),
]


@pytest.mark.parametrize("fields", ACCEPTED)
def test_a_policy_that_can_work_is_accepted_and_compiles(fields: dict[str, object]) -> None:
    check_policy(policy(**fields), DEFAULTS)
    compile_filter(policy(**fields), DEFAULTS).apply(T, "a=1&[=2&]=3")


INVALID_SHAPE = [
    pytest.param({"mode": "sometimes"}, id="unknown-mode"),
    pytest.param({"on_conflict": "both"}, id="unknown-on-conflict"),
    pytest.param({"allow": "utm_*"}, id="allow-not-a-list"),
    pytest.param({"add": {"a": 1}}, id="add-value-not-text"),
    pytest.param({"strip": ["x"]}, id="unknown-field"),
]


@pytest.mark.parametrize("fields", INVALID_SHAPE)
def test_a_policy_of_the_wrong_shape_fails_validation(fields: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        QueryPolicy.model_validate(fields)


def test_limits_come_from_the_settings() -> None:
    settings = Settings.model_construct(
        query_default_mode="drop",
        query_deny=["fbclid", " gclid ", ""],
        query_max_params=3,
        query_max_name_length=4,
        query_max_value_length=5,
        query_max_location_length=600,
        query_max_patterns=7,
        query_max_pattern_length=8,
    )
    assert FilterLimits.from_settings(settings) == FilterLimits(
        max_params=3,
        max_name_length=4,
        max_value_length=5,
        max_location_length=600,
        max_patterns=7,
        max_pattern_length=8,
        global_deny=("fbclid", "gclid"),
        default_mode="drop",
    )


def test_the_operator_deny_list_is_read_from_comma_separated_text() -> None:
    settings = Settings(query_deny="fbclid,gclid,session*")  # type: ignore[arg-type]
    filter_ = compile_filter(None, FilterLimits.from_settings(settings))
    assert filter_.apply(T, "fbclid=1&GCLID=2&sessionid=3&a=4") == (f"{T}?a=4", 0)


# --- the examples in docs/query-filter.md ---------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "query-filter.md"


def _cell(text: str) -> str:
    text = text.strip()
    if text.startswith("`") and text.endswith("`") and len(text) >= 2:
        text = text[1:-1]
    return text.replace("\\|", "|")


def _visitor_query(cell: str) -> str:
    """The docs write a byte the table cannot show as \\xNN; the rest is UTF-8 text sent as bytes."""
    if cell in ("", "(none)"):
        return ""
    raw = re.sub(rb"\\x([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), cell.encode("utf-8"))
    return raw.decode("latin-1")


def _doc_limits(text: str) -> FilterLimits:
    """The settings the examples assume, from the LINKGATE_QUERY_* lines above the table."""
    values = dict(re.findall(r"^LINKGATE_(QUERY_[A-Z_]+)=(.*)$", text, flags=re.MULTILINE))
    fields = {
        name: Settings.model_fields[name].get_default(call_default_factory=True)
        for name in Settings.model_fields
        if name.startswith("query_")
    }
    fields.update({name.lower(): value for name, value in values.items()})
    return FilterLimits.from_settings(Settings(**fields))


EXAMPLES_HEADER = "| target | policy | visitor query | Location |"


def _doc_examples() -> list[object]:
    """The rows of the examples table (the one under EXAMPLES_HEADER)."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = lines.index(EXAMPLES_HEADER) + 2  # past the header and the |---| line
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [_cell(c) for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        assert len(cells) == 4, f"a docs example row needs 4 cells: {line}"
        rows.append(pytest.param(*cells, id=f"row{len(rows) + 1}"))
    return rows


def test_the_docs_show_enough_examples() -> None:
    assert len(_doc_examples()) >= 20


@pytest.mark.parametrize(("target", "policy_cell", "query_cell", "expected"), _doc_examples())
def test_every_example_in_the_docs_is_what_the_code_does(
    target: str, policy_cell: str, query_cell: str, expected: str
) -> None:
    limits_ = _doc_limits(DOC.read_text(encoding="utf-8"))
    policy_ = (
        None if policy_cell in ("", "(default)") else QueryPolicy.model_validate(json.loads(policy_cell))
    )
    if policy_ is not None:
        check_policy(policy_, limits_)
    assert compile_filter(policy_, limits_).apply(target, _visitor_query(query_cell))[0] == expected
