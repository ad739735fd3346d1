"""Short codes: hashids over row ids, and the rules a custom alias must meet."""

from __future__ import annotations

import pytest
from hashids import Hashids
from hypothesis import given, settings as hypothesis_settings, strategies as st

from service.app import create_app
from service.codes import CODE_PATTERN, RESERVED_WORDS, CodeCodec, is_reserved
from service.config import HASHIDS_DEFAULT_ALPHABET, Settings
from service.errors import InvalidInput

SALT = "unit-test-salt"
IDS = [0, 1, 2, 9, 10, 99, 1000, 123_456, 2**31 - 1, 2**31, 2**53, 2**63 - 1]


def make_codec(salt: str = SALT, min_length: int = 6, alphabet: str = HASHIDS_DEFAULT_ALPHABET) -> CodeCodec:
    return CodeCodec(salt=salt, min_length=min_length, alphabet=alphabet)


def codec_from(settings: Settings) -> CodeCodec:
    return CodeCodec(
        salt=settings.effective_salt,
        min_length=settings.hashids_min_length,
        alphabet=settings.hashids_alphabet,
    )


CODEC = make_codec()


def case(*values, id: str):
    return pytest.param(*values, id=id)


def alias_refusal(alias: str, codec: CodeCodec = CODEC) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        codec.check_alias(alias)
    assert info.value.field == "alias"
    assert info.value.reason.strip()
    return info.value


# --- generated codes --------------------------------------------------------


@pytest.mark.parametrize("row_id", [case(row_id, id=str(row_id)) for row_id in IDS])
def test_generated_code_decodes_to_its_row_id(row_id):
    code = CODEC.encode(row_id)
    assert CODEC.decode(code) == row_id


@pytest.mark.parametrize("row_id", [case(row_id, id=str(row_id)) for row_id in IDS])
def test_generated_code_fits_the_gateway_pattern(row_id):
    code = CODEC.encode(row_id)
    assert CODE_PATTERN.fullmatch(code)
    assert len(code) >= 6


def test_default_minimum_length_is_six():
    codec = codec_from(Settings(hashids_salt=SALT))
    assert min(len(codec.encode(row_id)) for row_id in range(1, 200)) == 6


@pytest.mark.parametrize("min_length", [case(n, id=f"min-{n}") for n in (1, 6, 10, 32)])
def test_minimum_length_is_configurable(min_length):
    codec = codec_from(Settings(hashids_salt=SALT, hashids_min_length=min_length))
    codes = [codec.encode(row_id) for row_id in (0, 1, 50, 10_000)]
    assert all(len(code) >= min_length for code in codes)
    assert [codec.decode(code) for code in codes] == [0, 1, 50, 10_000]


@pytest.mark.parametrize(
    "alphabet",
    [
        case("abdegjklmnopqrvw", id="lower-case-16"),
        case("0123456789ABDEGJKLMN", id="digits-and-capitals"),
        case("abdegjklmnopqrvwxyz_-", id="url-safe-punctuation"),
    ],
)
def test_codes_use_only_the_configured_alphabet(alphabet):
    codec = codec_from(Settings(hashids_salt=SALT, hashids_alphabet=alphabet))
    for row_id in (1, 77, 2**40):
        code = codec.encode(row_id)
        assert set(code) <= set(alphabet)
        assert CODE_PATTERN.fullmatch(code)
        assert codec.decode(code) == row_id


@pytest.mark.parametrize(
    ("first", "second"),
    [
        case("salt-a", "salt-b", id="different"),
        case("salt", "Salt", id="case-only"),
        case("salt", "salt ", id="trailing-space"),
    ],
)
def test_different_salts_give_different_codes(first, second):
    a, b = make_codec(salt=first), make_codec(salt=second)
    codes_a = [a.encode(row_id) for row_id in range(1, 51)]
    codes_b = [b.encode(row_id) for row_id in range(1, 51)]
    assert all(x != y for x, y in zip(codes_a, codes_b, strict=True))


def test_code_of_another_salt_does_not_decode_to_the_same_id():
    other = make_codec(salt="another-salt")
    assert all(CODEC.decode(other.encode(row_id)) != row_id for row_id in range(1, 51))


def test_generated_codes_are_not_in_row_order():
    codes = [CODEC.encode(row_id) for row_id in range(1, 21)]
    assert codes != sorted(codes)


def test_negative_row_id_is_refused_rather_than_given_an_empty_code():
    with pytest.raises(ValueError):
        CODEC.encode(-1)


def _edited(code: str, how: str) -> str:
    if how == "swap-last":
        replacement = "a" if code[-1] != "a" else "b"
        return code[:-1] + replacement
    if how == "extra-char":
        return code + "a"
    if how == "drop-char":
        return code[:-1]
    if how == "swapped-case":
        return code.swapcase()
    raise AssertionError(how)


@pytest.mark.parametrize(
    "text",
    [
        case("", id="empty"),
        case("a", id="one-char"),
        case("abc", id="shorter-than-minimum"),
        case("!!!!!!", id="outside-alphabet"),
        case("abc-def", id="hyphen-not-in-alphabet"),
        case("ünïcødé", id="non-ascii"),
        case("api", id="reserved-word"),
        case(Hashids(salt=SALT, min_length=6).encode(1, 2), id="two-numbers"),
        case(Hashids(salt=SALT, min_length=6).encode(), id="no-numbers"),
        case(Hashids(salt=SALT, min_length=2).encode(5), id="unpadded-code"),
        case(Hashids(salt=SALT, min_length=12).encode(5), id="over-padded-code"),
    ],
)
def test_decode_of_non_canonical_text_returns_none(text):
    assert CODEC.decode(text) is None


@pytest.mark.parametrize("how", ["swap-last", "extra-char", "drop-char", "swapped-case"])
@pytest.mark.parametrize("row_id", [1, 42, 123_456])
def test_decode_of_an_edited_code_returns_none(row_id, how):
    assert CODEC.decode(_edited(CODEC.encode(row_id), how)) is None


@hypothesis_settings(max_examples=200, deadline=None)
@given(row_id=st.integers(min_value=0, max_value=2**63 - 1))
def test_any_row_id_round_trips(row_id):
    code = CODEC.encode(row_id)
    assert CODE_PATTERN.fullmatch(code)
    assert CODEC.decode(code) == row_id


@hypothesis_settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=12) | st.from_regex(r"[A-Za-z0-9]{6,10}", fullmatch=True))
def test_decode_answers_none_or_the_id_whose_code_is_that_text(text):
    row_id = CODEC.decode(text)
    assert row_id is None or CODEC.encode(row_id) == text


# --- aliases ----------------------------------------------------------------


@pytest.mark.parametrize(
    "alias",
    [
        case("abc", id="three-chars"),
        case("a" * 64, id="sixty-four-chars"),
        case("my-link", id="hyphen"),
        case("my_link", id="underscore"),
        case("Spring-Sale_2025", id="mixed"),
        case("123", id="digits"),
        case("-_-", id="punctuation-only"),
        case("apis", id="reserved-word-prefix"),
        case("my-docs", id="reserved-word-inside"),
    ],
)
def test_well_formed_alias_is_accepted_as_it_is(alias):
    assert CODEC.check_alias(alias) == alias


@pytest.mark.parametrize(
    "alias",
    [
        case("", id="empty"),
        case("ab", id="two-chars"),
        case("a" * 65, id="sixty-five-chars"),
        case("has space", id="space"),
        case("a/b/c", id="slash"),
        case("a.b.c", id="dot"),
        case("abc?", id="question-mark"),
        case("abc%20", id="escape"),
        case("ünï", id="non-ascii"),
        case("ａｂｃ", id="full-width"),
        case("abc\n", id="trailing-newline"),
        case("١٢٣", id="arabic-indic-digits"),
    ],
)
def test_malformed_alias_is_refused(alias):
    assert "3 to 64 characters" in alias_refusal(alias).reason


ISSUE_RESERVED = ["api", "docs", "healthz", "readyz", "metrics", "robots.txt", "favicon.ico", "openapi.json", "redoc"]


@pytest.mark.parametrize("word", ISSUE_RESERVED)
def test_every_path_named_in_the_issue_is_reserved(word):
    assert word in RESERVED_WORDS


def _route_paths(routes) -> set[str]:
    paths = set()
    for route in routes:
        if getattr(route, "path", None):
            paths.add(route.path)
        # FastAPI wraps included routers; their own routes carry the full path.
        inner = getattr(route, "original_router", None) or getattr(route, "app", None)
        paths |= _route_paths(getattr(inner, "routes", []))
    return paths


def _top_level_paths() -> set[str]:
    app = create_app(Settings(hashids_salt=SALT))
    paths = _route_paths(app.routes) | set(app.openapi()["paths"])
    return {path.strip("/").split("/")[0] for path in paths if path.strip("/")}


def test_every_top_level_path_the_app_serves_is_reserved():
    served = _top_level_paths()
    assert {"api", "docs", "redoc", "openapi.json", "healthz", "metrics"} <= served
    # A code's own pages (POST /{code}, /{code}+, /{code}/qr: service.pages) are not words to reserve.
    assert served - RESERVED_WORDS - {"{code}", "{code:link_code}", "{code:link_code}+"} == set()


@pytest.mark.parametrize(
    "word",
    [
        case(variant, id=variant)
        for word in sorted(RESERVED_WORDS)
        if CODE_PATTERN.fullmatch(word) and len(word) >= 3
        for variant in (word, word.upper(), word.capitalize())
    ],
)
def test_reserved_word_is_refused_as_alias_in_any_case(word):
    assert "reserved" in alias_refusal(word).reason
    assert is_reserved(word)


@pytest.mark.parametrize("word", ["robots.txt", "ROBOTS.TXT", "favicon.ico", "openapi.json", "OpenAPI.json", "qr", "QR"])
def test_reserved_word_outside_the_alias_shape_is_reserved_and_refused(word):
    assert is_reserved(word)
    alias_refusal(word)


@pytest.mark.parametrize("row_id", [case(row_id, id=str(row_id)) for row_id in IDS])
def test_alias_that_decodes_as_a_generated_code_is_refused(row_id):
    code = CODEC.encode(row_id)
    assert "generated code" in alias_refusal(code).reason


@pytest.mark.parametrize(
    "numbers",
    [case((1, 2), id="two"), case((7, 7, 7), id="three"), case((0, 2**40), id="zero-and-large")],
)
def test_alias_that_hashids_decodes_to_several_numbers_is_refused(numbers):
    text = Hashids(salt=SALT, min_length=6, alphabet=HASHIDS_DEFAULT_ALPHABET).encode(*numbers)
    assert "generated code" in alias_refusal(text).reason


def test_alias_like_code_of_another_salt_is_accepted():
    alias = make_codec(salt="another-salt").encode(5)
    assert CODEC.decode(alias) is None
    assert CODEC.check_alias(alias) == alias


def test_alias_check_follows_the_configured_codec():
    codec = codec_from(Settings(hashids_salt=SALT, hashids_min_length=8, hashids_alphabet="abdegjklmnopqrvw"))
    alias_refusal(codec.encode(31), codec)
    assert codec.check_alias(CODEC.encode(31)) == CODEC.encode(31)


@hypothesis_settings(max_examples=200, deadline=None)
@given(alias=st.from_regex(r"[A-Za-z0-9_-]{3,12}", fullmatch=True))
def test_accepted_alias_never_decodes_as_a_generated_code(alias):
    try:
        CODEC.check_alias(alias)
    except InvalidInput:
        return
    assert CODEC.decode(alias) is None
    assert not is_reserved(alias)


# --- the gateway's code pattern ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        case("a", True, id="one-char"),
        case("a" * 64, True, id="sixty-four"),
        case("a" * 65, False, id="sixty-five"),
        case("", False, id="empty"),
        case("a.b", False, id="dot"),
        case("a/b", False, id="slash"),
        case("ab%2F", False, id="escape"),
        case("ab\n", False, id="trailing-newline"),
    ],
)
def test_code_pattern_admits_exactly_codes_and_aliases(text, matches):
    assert bool(CODE_PATTERN.fullmatch(text)) is matches


def test_remembered_alphabet_shuffles_give_the_codes_plain_hashids_gives(monkeypatch):
    import hashids as hashids_module

    codec = CodeCodec(salt="compare", min_length=6, alphabet=HASHIDS_DEFAULT_ALPHABET)
    ids = [0, 1, 2, 61, 62, 99, 100, 12345, 10**6, 2**40, 2**62]
    remembered = [codec.encode(i) for i in ids]
    monkeypatch.setattr(hashids_module, "_reorder", hashids_module._reorder.__wrapped__)
    plain = Hashids(salt="compare", min_length=6, alphabet=HASHIDS_DEFAULT_ALPHABET)
    assert remembered == [plain.encode(i) for i in ids]
    assert [codec.decode(code) for code in remembered] == ids


def test_an_id_whose_code_would_be_a_reserved_word_gets_another_code_no_one_else_can_get():
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    plain = Hashids(salt="14", min_length=1, alphabet=alphabet)
    codec = CodeCodec(salt="14", min_length=1, alphabet=alphabet)
    clashing = [n for n in range(3000) if is_reserved(plain.encode(n))]
    assert clashing, "the salt was chosen so that some id's plain code is a reserved word"
    codes = {n: codec.encode(n) for n in range(3000)}
    for n in clashing:
        code = codes[n]
        assert not is_reserved(code) and CODE_PATTERN.fullmatch(code)
        assert codec.decode(code) is None  # not a one-number code: no other id has it ...
        with pytest.raises(InvalidInput):
            codec.check_alias(code)  # ... and no alias may take it
    assert len(set(codes.values())) == len(codes)
    # Every other id keeps the code hashids gives it.
    assert all(codes[n] == plain.encode(n) for n in codes if n not in clashing)
