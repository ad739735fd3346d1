"""Target URL rules: what a short link may point at, and the form it is stored in."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from service.config import Settings
from service.errors import InvalidInput
from service.targets import TargetRules, normalise_target


def make_rules(**overrides) -> TargetRules:
    values = {"public_base_url": "https://sho.rt", "hashids_salt": "unit-test-salt"}
    values.update(overrides)
    return TargetRules.from_settings(Settings(**values))


RULES = make_rules()
PRIVATE_ALLOWED = make_rules(allow_private_targets=True)


def refusal(url: str, rules: TargetRules = RULES) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        normalise_target(url, rules)
    assert info.value.field == "url"
    assert info.value.reason.strip()
    return info.value


def case(*values, id: str):
    return pytest.param(*values, id=id)


# --- accepted targets and their stored form ---------------------------------


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        case("https://example.com/a?b=c#d", "https://example.com/a?b=c#d", id="already-normal"),
        case("https://bücher.de/x", "https://xn--bcher-kva.de/x", id="idn-to-punycode"),
        case("https://BÜCHER.de/x", "https://xn--bcher-kva.de/x", id="idn-upper-case"),
        case("https://ｅｘａｍｐｌｅ.com/", "https://example.com/", id="full-width-host"),
        case("https://example。com/", "https://example.com/", id="ideographic-full-stop"),
        case("https://xn--bcher-kva.de/x", "https://xn--bcher-kva.de/x", id="punycode-kept"),
        case("https://EXAMPLE.Com/Path", "https://example.com/Path", id="host-lowered-path-not"),
        case("HTTPS://example.com/", "https://example.com/", id="scheme-lowered"),
        case("https://example.com.", "https://example.com/", id="trailing-dot-dropped"),
        case("https://example.com", "https://example.com/", id="empty-path-becomes-slash"),
        case("https://example.com?q=1", "https://example.com/?q=1", id="empty-path-before-query"),
        case("https://example.com/a b", "https://example.com/a%20b", id="space-in-path"),
        case("https://example.com/?q=a b", "https://example.com/?q=a%20b", id="space-in-query"),
        case("https://example.com/ü?q=ü", "https://example.com/%C3%BC?q=%C3%BC", id="non-ascii-encoded"),
        case("https://example.com/#ü", "https://example.com/#%C3%BC", id="non-ascii-fragment"),
        case("https://example.com/a\u2028b", "https://example.com/a%E2%80%A8b", id="line-separator-encoded"),
        case("https://example.com/a<b>\"{|}", "https://example.com/a%3Cb%3E%22%7B%7C%7D", id="unsafe-ascii"),
        case("https://example.com/%7Euser%20x", "https://example.com/%7Euser%20x", id="escapes-kept"),
        case("https://example.com/?q=%C3%BC%2F", "https://example.com/?q=%C3%BC%2F", id="escapes-in-query-kept"),
        case("https://example.com/a%2", "https://example.com/a%2", id="broken-escape-left-alone"),
        case("https://example.com/p#section-2", "https://example.com/p#section-2", id="fragment-kept"),
        case("https://example.com/p#a#b", "https://example.com/p#a#b", id="second-hash-kept"),
        case("https://example.com/p?", "https://example.com/p?", id="bare-question-mark-kept"),
        case("https://example.com/p?a=1&b=&c", "https://example.com/p?a=1&b=&c", id="query-kept-as-is"),
        case("https://example.com:8443/", "https://example.com:8443/", id="port-kept"),
        case("https://example.com:08443/", "https://example.com:8443/", id="port-leading-zero"),
        case("https://example.com:/", "https://example.com/", id="empty-port-dropped"),
        case("  https://example.com/  ", "https://example.com/", id="surrounding-spaces"),
        case("https://_dmarc.example.com/", "https://_dmarc.example.com/", id="underscore-label"),
        case("https://r3---sn-abc.example.com/", "https://r3---sn-abc.example.com/", id="double-hyphens"),
        case("https://www.sho.rt/", "https://www.sho.rt/", id="subdomain-of-own-host-is-not-own-host"),
    ],
)
def test_accepted_target_is_stored_in_normal_form(url, stored):
    assert normalise_target(url, RULES) == stored


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        case("http://8.8.8.8/", "http://8.8.8.8/", id="ipv4"),
        case("http://[2001:4860:4860::8888]/", "http://[2001:4860:4860::8888]/", id="ipv6"),
        case("http://[2001:4860:4860:0:0:0:0:8888]/", "http://[2001:4860:4860::8888]/", id="ipv6-compressed"),
        case("http://[2001:4860:4860::8888]:8080/x", "http://[2001:4860:4860::8888]:8080/x", id="ipv6-port"),
        case("http://134744072/", "http://8.8.8.8/", id="ipv4-as-one-number"),
        case("http://0x8.0x8.0x8.0x8/", "http://8.8.8.8/", id="ipv4-hex"),
        case("http://[::ffff:8.8.8.8]/", "http://[::ffff:808:808]/", id="ipv4-mapped-public"),
    ],
)
def test_public_ip_target_is_accepted(url, stored):
    assert normalise_target(url, RULES) == stored


def test_stored_url_is_pure_ascii():
    stored = normalise_target("https://bücher.de/straße?q=naïve café#süß", RULES)
    assert stored.isascii()
    assert " " not in stored


# --- schemes ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        case("ftp://example.com/file", id="ftp"),
        case("javascript:alert(1)", id="javascript"),
        case("data:text/html,<script>alert(1)</script>", id="data"),
        case("file:///etc/passwd", id="file"),
        case("mailto:someone@example.com", id="mailto"),
        case("ws://example.com/", id="websocket"),
    ],
)
def test_scheme_outside_the_default_list_is_refused(url):
    error = refusal(url)
    assert "scheme" in error.reason
    assert "http, https" in error.reason


def test_configured_schemes_are_accepted():
    rules = make_rules(allowed_schemes=["http", "https", "ftp"])
    assert normalise_target("FTP://Files.Example.com/a", rules) == "ftp://files.example.com/a"


def test_scheme_dropped_from_configuration_is_refused():
    rules = make_rules(allowed_schemes=["https"])
    assert "scheme 'http'" in refusal("http://example.com/", rules).reason


# --- hosts, user info, garbage ----------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        case("https://bank.com@evil.example/", id="host-lookalike-user"),
        case("https://bank.com:pass@evil.example/", id="user-and-password"),
        case("https://user@example.com/", id="user-only"),
        case("https://@example.com/", id="empty-user"),
        case("https://a%40b@example.com/", id="encoded-at-in-user"),
        case("https://bank.com\\@evil.example/", id="backslash-before-at"),
    ],
)
def test_userinfo_in_target_is_refused(url):
    assert "user name or password" in refusal(url).reason


@pytest.mark.parametrize(
    "url",
    [
        case("not a url", id="words"),
        case("example.com/path", id="no-scheme"),
        case("//example.com", id="scheme-relative"),
        case("/relative/path", id="path-only"),
        case("https:///path", id="empty-host"),
        case("https://", id="scheme-only"),
        case("https:example.com", id="no-slashes"),
        case("https://exa mple.com/", id="space-in-host"),
        case("https://a..com/", id="empty-label"),
        case("https://.example.com/", id="leading-dot"),
        case("https://ex!ample.com/", id="bang-in-host"),
        case("https://ex%61mple.com/", id="escape-in-host"),
        case("https://xn--/", id="empty-punycode"),
        case("https://xn--zz.com/", id="broken-punycode"),
        case("https://" + "a" * 64 + ".com/", id="label-over-63"),
        case("https://" + ".".join(["a" * 60] * 5) + ".com/", id="host-over-253"),
        case("https://\u202emoc.example/", id="bidi-override-in-host"),
        case("http://example.123/", id="numeric-last-label"),
        case("http://1.2.3.4.5/", id="five-part-ipv4"),
        case("http://256.1.1.1/", id="ipv4-octet-over-255"),
        case("http://0x/", id="bare-hex-prefix"),
        case("http://[::1/", id="unclosed-bracket"),
        case("http://[v1.x]/", id="ipvfuture"),
        case("http://[1.2.3.4]/", id="ipv4-in-brackets"),
        case("http://[2001:4860:4860::8888]evil.example/", id="text-after-ipv6"),
        case("http://[2001:4860:4860::8888%25eth0]/", id="ipv6-zone"),
        case("https://evil.com\uff03@bank.com/", id="full-width-hash"),
        case("https://example.com\uff0f/", id="full-width-slash"),
    ],
)
def test_garbage_is_refused(url):
    refusal(url)


@pytest.mark.parametrize(
    "url",
    [
        case("https://example.com:99999/", id="over-65535"),
        case("https://example.com:65536/", id="just-over"),
        case("https://example.com:0/", id="zero"),
        case("https://example.com:-1/", id="negative"),
        case("https://example.com:+80/", id="plus-sign"),
        case("https://example.com:http/", id="name"),
        case("https://example.com:８０/", id="full-width-digits"),
        case("https://example.com:80:80/", id="two-ports"),
    ],
)
def test_invalid_port_is_refused(url):
    assert "port" in refusal(url).reason


# --- control characters -----------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        case("https://example.com/a\r\nSet-Cookie: x=1", id="crlf-in-path"),
        case("https://example.com/a\nb", id="lf"),
        case("https://example.com/a\rb", id="cr"),
        case("https://example.com/a\tb", id="tab"),
        case("https://example.com/a\x00b", id="nul"),
        case("https://exa\x00mple.com/", id="nul-in-host"),
        case("https://example.com/\x7f", id="del"),
        case("https://example.com/\x85", id="c1-next-line"),
        case("https://example.com/\n", id="trailing-lf"),
        case("\thttps://example.com/", id="leading-tab"),
        case("https://example.com/?q=\x1b[31m", id="escape-in-query"),
    ],
)
def test_control_characters_are_refused(url):
    assert "control characters" in refusal(url).reason


def test_lone_surrogate_is_refused_not_a_crash():
    refusal("https://example.com/\ud800")


def test_empty_target_is_refused():
    assert "empty" in refusal("   ").reason


# --- length -----------------------------------------------------------------


def test_default_length_limit_is_4096_characters():
    base = "https://example.com/"
    assert normalise_target(base + "a" * (4096 - len(base)), RULES)
    assert "4096" in refusal(base + "a" * (4097 - len(base))).reason


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        case("https://example.com/" + "a" * 44, True, id="at-limit"),
        case("https://example.com/" + "a" * 45, False, id="one-over"),
        case("https://example.com/" + "ü" * 20, False, id="short-raw-long-once-encoded"),
        case("https://example.com", True, id="slash-added-within-limit"),
    ],
)
def test_length_limit_applies_raw_and_after_normalisation(url, accepted):
    rules = dataclasses.replace(RULES, max_length=64)
    if accepted:
        assert len(normalise_target(url, rules)) <= 64
    else:
        assert "longer than 64" in refusal(url, rules).reason


def test_length_limit_comes_from_settings():
    rules = make_rules(max_url_length=100)
    refusal("https://example.com/" + "a" * 81, rules)


# --- the service's own host and operator-blocked hosts ----------------------


@pytest.mark.parametrize(
    "url",
    [
        case("https://sho.rt/abc", id="same"),
        case("http://sho.rt/abc", id="other-scheme"),
        case("https://SHO.RT/abc", id="upper-case"),
        case("https://sho.rt./abc", id="trailing-dot"),
        case("https://sho.rt:443/abc", id="default-port"),
        case("https://sho.rt:8080/abc", id="other-port"),
        case("https://ｓｈｏ.ｒｔ/abc", id="full-width"),
    ],
)
def test_link_to_the_service_itself_is_refused(url):
    assert "would loop" in refusal(url).reason


@pytest.mark.parametrize(
    ("public_base_url", "target"),
    [
        case("https://Sho.RT./", "https://sho.rt/x", id="base-with-case-and-dot"),
        case("https://bücher.de", "https://xn--bcher-kva.de/x", id="idn-base-punycode-target"),
        case("https://xn--bcher-kva.de", "https://bücher.de/x", id="punycode-base-idn-target"),
        case("http://10.0.0.5:8000", "http://10.0.0.5/x", id="ipv4-base"),
        case("http://10.0.0.5:8000", "http://167772165/x", id="ipv4-base-numeric-target"),
        case("http://[fd00:0:0::5]:8000", "http://[fd00::5]/x", id="ipv6-base"),
    ],
)
def test_own_host_is_refused_however_the_base_url_writes_it(public_base_url, target):
    rules = make_rules(public_base_url=public_base_url, allow_private_targets=True)
    assert "would loop" in refusal(target, rules).reason


@pytest.mark.parametrize(
    "url",
    [
        case("https://evil.example/", id="listed"),
        case("https://EVIL.example./x", id="case-and-dot"),
        case("https://bad.example/", id="listed-with-case-and-dot"),
        case("https://xn--bcher-kva.de/", id="listed-as-idn"),
        case("https://bücher.de/", id="listed-as-idn-target-idn"),
    ],
)
def test_operator_blocked_host_is_refused(url):
    rules = make_rules(blocked_hosts=["evil.example", " Bad.Example. ", "bücher.de"])
    assert "blocked by the operator" in refusal(url, rules).reason


def test_blocked_hosts_from_env_text_are_refused(monkeypatch):
    monkeypatch.setenv("LINKGATE_BLOCKED_HOSTS", "evil.example, worse.example")
    rules = make_rules()
    refusal("https://worse.example/", rules)
    assert normalise_target("https://fine.example/", rules) == "https://fine.example/"


# --- internal addresses -----------------------------------------------------

INTERNAL_TARGETS = [
    case("http://127.0.0.1/", "http://127.0.0.1/", id="loopback"),
    case("http://127.8.9.10/", "http://127.8.9.10/", id="loopback-range"),
    case("http://10.1.2.3/", "http://10.1.2.3/", id="private-10"),
    case("http://192.168.1.1/", "http://192.168.1.1/", id="private-192-168"),
    case("http://172.16.0.1/", "http://172.16.0.1/", id="private-172-16"),
    case("http://169.254.169.254/latest/meta-data/", "http://169.254.169.254/latest/meta-data/", id="metadata"),
    case("http://100.64.0.1/", "http://100.64.0.1/", id="carrier-grade-nat"),
    case("http://0.0.0.0/", "http://0.0.0.0/", id="unspecified"),
    case("http://224.0.0.1/", "http://224.0.0.1/", id="multicast"),
    case("http://240.0.0.1/", "http://240.0.0.1/", id="reserved"),
    case("http://255.255.255.255/", "http://255.255.255.255/", id="broadcast"),
    case("http://[::1]/", "http://[::1]/", id="ipv6-loopback"),
    case("http://[0:0:0:0:0:0:0:1]:8080/", "http://[::1]:8080/", id="ipv6-loopback-long"),
    case("http://[::]/", "http://[::]/", id="ipv6-unspecified"),
    case("http://[fe80::1]/", "http://[fe80::1]/", id="ipv6-link-local"),
    case("http://[fd12:3456::1]/", "http://[fd12:3456::1]/", id="ipv6-unique-local"),
    case("http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/", id="ipv4-mapped-loopback"),
    case("http://[::ffff:169.254.169.254]/", "http://[::ffff:a9fe:a9fe]/", id="ipv4-mapped-metadata"),
    case("http://2130706433/", "http://127.0.0.1/", id="one-number"),
    case("http://0x7f.0.0.1/", "http://127.0.0.1/", id="hex-octet"),
    case("http://0x7f000001/", "http://127.0.0.1/", id="hex-number"),
    case("http://0177.0.0.1/", "http://127.0.0.1/", id="octal-octet"),
    case("http://127.1/", "http://127.0.0.1/", id="two-parts"),
    case("http://10.1/", "http://10.0.0.1/", id="two-parts-private"),
    case("http://127.0.0.1./", "http://127.0.0.1/", id="trailing-dot"),
    case("http://１２７.０.０.１/", "http://127.0.0.1/", id="full-width-digits"),
    case("http://127.0.0.1:8000/admin", "http://127.0.0.1:8000/admin", id="with-port"),
    case("http://localhost/", "http://localhost/", id="localhost"),
    case("http://LOCALHOST:8080/", "http://localhost:8080/", id="localhost-upper"),
    case("http://localhost./", "http://localhost/", id="localhost-trailing-dot"),
    case("http://app.localhost/", "http://app.localhost/", id="sub-localhost"),
    case("http://ｌｏｃａｌｈｏｓｔ/", "http://localhost/", id="localhost-full-width"),
]


@pytest.mark.parametrize(("url", "stored"), INTERNAL_TARGETS)
def test_internal_target_is_refused_by_default(url, stored):
    reason = refusal(url).reason
    assert "internal address" in reason or "localhost" in reason


@pytest.mark.parametrize(("url", "stored"), INTERNAL_TARGETS)
def test_internal_target_is_allowed_when_private_targets_are(url, stored):
    assert normalise_target(url, PRIVATE_ALLOWED) == stored


def test_localhost_lookalike_names_are_not_localhost():
    assert normalise_target("http://localhost.example.com/", RULES) == "http://localhost.example.com/"
    assert normalise_target("http://mylocalhost/", RULES) == "http://mylocalhost/"


# --- reasons a person can act on --------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        case("not a url", "must be absolute", id="relative"),
        case("https:///x", "needs a host", id="no-host"),
        case("gopher://x.example/", "allowed: http, https", id="scheme"),
        case("https://u:p@x.example/", "user:pass@host", id="userinfo"),
        case("https://x.example:0/", "1 to 65535", id="port"),
        case("http://10.0.0.1/", "internal address (10.0.0.1)", id="internal"),
        case("http://[::1]junk/", "only ':port'", id="after-ipv6"),
        case("https://x.example/\r\n", "control characters", id="control"),
    ],
)
def test_refusal_reason_says_what_to_fix(url, words):
    assert words in refusal(url).reason


# --- properties -------------------------------------------------------------

_SCHEMES = st.sampled_from(["http", "https", "HTTP", "ftp", "javascript", "", "h ttp"])
_HOSTS = st.one_of(
    st.text(max_size=20),
    st.from_regex(r"[a-zA-Z0-9.-]{1,20}", fullmatch=True),
    st.sampled_from(["example.com", "bücher.de", "127.1", "[::1]", "[2001:db8::1]", "8.8.8.8", "sho.rt", "localhost"]),
    st.ip_addresses().map(lambda ip: f"[{ip}]" if ip.version == 6 else str(ip)),
)
_URLISH = st.builds(
    lambda scheme, userinfo, host, port, rest: f"{scheme}://{userinfo}{host}{port}{rest}",
    _SCHEMES,
    st.sampled_from(["", "", "", "user@", "a:b@"]),
    _HOSTS,
    st.one_of(st.just(""), st.integers(-1, 70000).map(lambda p: f":{p}"), st.text(max_size=4).map(lambda p: f":{p}")),
    st.one_of(
        st.just(""),
        st.text(max_size=40),
        st.text(alphabet="/?#%&=:@[]ü \t", max_size=20),
        # Surrogates, controls and odd spaces: what a broken client or a fuzzer sends.
        st.text(alphabet=st.characters(categories=["Cs", "Cc", "Zs", "Zl", "Zp"]), max_size=5).map("/".__add__),
    ),
)


@pytest.mark.parametrize("rules", [RULES, PRIVATE_ALLOWED], ids=["default-rules", "private-allowed"])
@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(url=st.one_of(st.text(max_size=80), _URLISH))
def test_any_text_is_refused_or_stored_as_clean_ascii_that_normalises_to_itself(rules, url):
    try:
        stored = normalise_target(url, rules)
    except InvalidInput as error:
        assert error.field == "url"
        assert error.reason
        return
    assert stored.isascii()
    assert not any(ch <= " " or ch == "\x7f" for ch in stored)
    parts = urlsplit(stored)
    assert parts.scheme in rules.allowed_schemes
    assert parts.hostname
    assert len(stored) <= rules.max_length
    assert normalise_target(stored, rules) == stored


@given(
    scheme=st.sampled_from(["http", "https"]),
    host=st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9-]{1,10}){0,3}\.[a-z]{2,5}", fullmatch=True),
    path=st.text(alphabet="abcXYZ019!$%&'()*+,/:;=?@~._-", max_size=60),
)
@hypothesis_settings(max_examples=300, deadline=None)
def test_the_fast_path_for_plain_urls_stores_what_the_full_rules_store(scheme, host, path):
    from service.targets import _normalise_in_full

    url = f"{scheme}://{host}/{path}"
    try:
        expected = _normalise_in_full(url, RULES)
    except InvalidInput as refused:
        with pytest.raises(InvalidInput) as caught:
            normalise_target(url, RULES)
        assert caught.value.reason == refused.reason
    else:
        assert normalise_target(url, RULES) == expected
