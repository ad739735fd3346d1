"""Settings: defaults, the LINKGATE_ environment, secret files, and what is refused at start."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from service.config import DEV_HASHIDS_SALT, HASHIDS_DEFAULT_ALPHABET, Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Each test sees only the LINKGATE_ variables it sets itself."""
    for name in list(os.environ):
        if name.upper().startswith("LINKGATE_"):
            monkeypatch.delenv(name)


def case(*values, id: str):
    return pytest.param(*values, id=id)


# --- the hashids salt -------------------------------------------------------


@pytest.mark.parametrize(
    "salt",
    [
        case(None, id="unset"),
        case("", id="empty"),
        case("  \n", id="whitespace"),
        case(DEV_HASHIDS_SALT, id="the-development-salt"),
    ],
)
def test_production_refuses_to_start_without_a_salt_of_its_own(salt):
    with pytest.raises(ValidationError, match="LINKGATE_HASHIDS_SALT"):
        Settings(env="production", hashids_salt=salt)


def test_production_refuses_to_start_when_the_env_names_no_salt(monkeypatch):
    monkeypatch.setenv("LINKGATE_ENV", "production")
    with pytest.raises(ValidationError, match="LINKGATE_HASHIDS_SALT"):
        Settings.from_env()


def test_production_starts_with_a_salt():
    settings = Settings(env="production", hashids_salt="s3cret")
    assert settings.effective_salt == "s3cret"
    assert not settings.uses_dev_salt


def test_development_uses_the_default_salt():
    settings = Settings()
    assert settings.env == "development"
    assert settings.effective_salt == DEV_HASHIDS_SALT
    assert settings.uses_dev_salt


def test_salt_from_env_loses_surrounding_whitespace_like_a_secret_file(monkeypatch):
    monkeypatch.setenv("LINKGATE_HASHIDS_SALT", "s3cret\n")
    assert Settings.from_env().hashids_salt == "s3cret"


# --- the secrets directory --------------------------------------------------


@pytest.mark.parametrize(
    "file_name",
    [
        case("linkgate_hashids_salt", id="lower-case"),
        case("LINKGATE_HASHIDS_SALT", id="upper-case"),
    ],
)
def test_salt_is_read_from_the_secrets_directory(monkeypatch, tmp_path, file_name):
    (tmp_path / file_name).write_text("from-a-secret\n")
    monkeypatch.setenv("LINKGATE_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("LINKGATE_ENV", "production")
    settings = Settings.from_env()
    assert settings.hashids_salt == "from-a-secret"
    assert not settings.uses_dev_salt


def test_secret_file_without_the_prefix_is_ignored(monkeypatch, tmp_path):
    (tmp_path / "hashids_salt").write_text("unprefixed")
    monkeypatch.setenv("LINKGATE_SECRETS_DIR", str(tmp_path))
    assert Settings.from_env().hashids_salt is None


def test_any_field_can_come_from_the_secrets_directory(monkeypatch, tmp_path):
    (tmp_path / "linkgate_database_url").write_text("postgresql+asyncpg://app:pw@db/linkgate")
    monkeypatch.setenv("LINKGATE_SECRETS_DIR", str(tmp_path))
    assert Settings.from_env().database_url == "postgresql+asyncpg://app:pw@db/linkgate"


def test_without_a_secrets_directory_from_env_reads_only_the_environment(monkeypatch, tmp_path):
    (tmp_path / "linkgate_hashids_salt").write_text("not-read")
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env().hashids_salt is None


def test_from_env_overrides_win(monkeypatch):
    monkeypatch.setenv("LINKGATE_PORT", "9000")
    assert Settings.from_env(port=9100).port == 9100


# --- environment variables --------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "field", "expected"),
    [
        case("LINKGATE_ALLOWED_SCHEMES", "http,https,ftp", "allowed_schemes", ["http", "https", "ftp"], id="schemes"),
        case("LINKGATE_ALLOWED_SCHEMES", " HTTP , https ,", "allowed_schemes", ["http", "https"], id="schemes-spaces-case"),
        case("LINKGATE_ALLOWED_SCHEMES", '["https"]', "allowed_schemes", ["https"], id="schemes-json"),
        case("LINKGATE_BLOCKED_HOSTS", "evil.example,worse.example", "blocked_hosts", ["evil.example", "worse.example"], id="blocked"),
        case("LINKGATE_BLOCKED_HOSTS", "", "blocked_hosts", [], id="blocked-empty"),
        case("LINKGATE_BLOCKED_HOSTS", "one.example", "blocked_hosts", ["one.example"], id="blocked-one"),
        case("LINKGATE_QUERY_DENY", "fbclid, gclid,session*", "query_deny", ["fbclid", "gclid", "session*"], id="query-deny"),
    ],
)
def test_list_setting_is_read_from_comma_separated_env_text(monkeypatch, name, text, field, expected):
    monkeypatch.setenv(name, text)
    assert getattr(Settings.from_env(), field) == expected


def test_list_setting_with_broken_json_is_refused(monkeypatch):
    monkeypatch.setenv("LINKGATE_ALLOWED_SCHEMES", "[https")
    with pytest.raises(ValidationError, match="allowed_schemes"):
        Settings.from_env()


@pytest.mark.parametrize(
    ("name", "text", "field", "expected"),
    [
        case("LINKGATE_PORT", "9000", "port", 9000, id="int"),
        case("linkgate_port", "9001", "port", 9001, id="lower-case-name"),
        case("LINKGATE_ALLOW_PRIVATE_TARGETS", "true", "allow_private_targets", True, id="bool"),
        case("LINKGATE_MAX_URL_LENGTH", "2048", "max_url_length", 2048, id="url-length"),
        case("LINKGATE_HASHIDS_MIN_LENGTH", "8", "hashids_min_length", 8, id="code-length"),
        case("LINKGATE_DATABASE_URL", "postgresql+asyncpg://db/x", "database_url", "postgresql+asyncpg://db/x", id="database"),
        case("LINKGATE_REDIS_URL", "redis://cache:6379/2", "redis_url", "redis://cache:6379/2", id="redis"),
    ],
)
def test_prefixed_env_var_sets_its_field(monkeypatch, name, text, field, expected):
    monkeypatch.setenv(name, text)
    assert getattr(Settings.from_env(), field) == expected


@pytest.mark.parametrize(
    ("name", "text"),
    [
        # What Kubernetes injects for Services named "redis", "linkgate", "database".
        case("REDIS_PORT", "tcp://10.0.0.7:6379", id="k8s-redis-port"),
        case("REDIS_URL", "redis://elsewhere:6379/0", id="redis-url"),
        case("DATABASE_URL", "postgresql://elsewhere/db", id="database-url"),
        case("PORT", "tcp://10.0.0.8:80", id="port"),
        case("HOST", "0.0.0.0", id="host"),
        case("ENV", "production", id="env"),
        case("HASHIDS_SALT", "unprefixed", id="salt"),
        case("ALLOWED_SCHEMES", "ftp", id="schemes"),
        case("LINKGATE_SERVICE_PORT", "tcp://10.0.0.9:80", id="k8s-service-named-linkgate"),
    ],
)
def test_unprefixed_env_var_changes_nothing(monkeypatch, name, text):
    before = Settings.from_env().model_dump()
    monkeypatch.setenv(name, text)
    assert Settings.from_env().model_dump() == before


# --- refused values ---------------------------------------------------------


@pytest.mark.parametrize(
    "alphabet",
    [
        case("abcdefghijklmno", id="fewer-than-16"),
        case("aabcdefghijklmnopq", id="repeated-character"),
        case("abcdefghijklmnop qr", id="space"),
        case("abcdefghijklmnop/q", id="slash"),
        case("abcdefghijklmnop.q", id="dot"),
        case("abcdefghijklmnopé", id="non-ascii"),
        case("cfhistuCFHISTUab", id="mostly-hashids-separators"),
        case("", id="empty"),
    ],
)
def test_bad_alphabet_is_refused(alphabet):
    with pytest.raises(ValidationError, match="hashids_alphabet"):
        Settings(hashids_alphabet=alphabet)


@pytest.mark.parametrize(
    "alphabet",
    [
        case(HASHIDS_DEFAULT_ALPHABET, id="default"),
        case("abdegjklmnopqrvw", id="16-without-separators"),
        case("0123456789abdegjklmn_-", id="digits-and-url-safe-punctuation"),
    ],
)
def test_usable_alphabet_is_accepted(alphabet):
    assert Settings(hashids_alphabet=alphabet).hashids_alphabet == alphabet


@pytest.mark.parametrize(
    "url",
    [
        case("sho.rt", id="no-scheme"),
        case("/links", id="path-only"),
        case("ftp://sho.rt", id="ftp"),
        case("https://", id="no-host"),
        case("https:///x", id="empty-host"),
        case("https://sho.rt:99999", id="bad-port"),
        case("https://sho.rt:port", id="port-not-a-number"),
        case("https://user:pw@sho.rt", id="user-info"),
        case("https://sho.rt/?via=x", id="query"),
        case("https://sho.rt/#x", id="fragment"),
    ],
)
def test_public_base_url_must_be_absolute_http(url):
    with pytest.raises(ValidationError, match="public_base_url"):
        Settings(public_base_url=url)


@pytest.mark.parametrize(
    ("url", "stored", "host"),
    [
        case("https://sho.rt", "https://sho.rt", "sho.rt", id="plain"),
        case("https://sho.rt/", "https://sho.rt", "sho.rt", id="trailing-slash-dropped"),
        case("http://Sho.RT:8080/s/", "http://Sho.RT:8080/s", "sho.rt", id="port-and-path"),
        case("http://[::1]:8000", "http://[::1]:8000", "::1", id="ipv6"),
    ],
)
def test_public_base_url_is_kept_without_trailing_slash(url, stored, host):
    settings = Settings(public_base_url=url)
    assert settings.public_base_url == stored
    assert settings.public_host == host


@pytest.mark.parametrize(
    ("field", "value"),
    [
        case("env", "staging", id="unknown-env"),
        case("port", 0, id="port-zero"),
        case("hashids_min_length", 0, id="code-length-zero"),
        case("hashids_min_length", 33, id="code-length-over-32"),
        case("max_url_length", 31, id="url-length-too-short"),
        case("default_redirect_status", 303, id="redirect-303"),
    ],
)
def test_out_of_range_setting_is_refused(field, value):
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})


# --- defaults ---------------------------------------------------------------


def test_defaults_match_the_issue():
    settings = Settings()
    assert settings.hashids_min_length == 6
    assert settings.hashids_alphabet == HASHIDS_DEFAULT_ALPHABET
    assert settings.allowed_schemes == ["http", "https"]
    assert settings.max_url_length == 4096
    assert settings.allow_private_targets is False
    assert settings.blocked_hosts == []


def test_settings_are_not_shared_between_instances():
    first = Settings()
    first.blocked_hosts.append("evil.example")
    assert Settings().blocked_hosts == []
