"""API keys: made once, stored hashed, checked on every request, revoked for good, never logged."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import fakeredis
import pytest
from sqlalchemy import select

from service.store.models import ApiKey
from tests.api.test_serve import cli_env
from tests.support import bearer, make_key, make_settings, migrate, running_app

KEY = re.compile(r"lg_([0-9a-f]{12})_([0-9a-f]{48})")


class Clock:
    """A wall clock and a monotonic one that tests move by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
        self.mono = 1000.0

    def wall(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


async def stored(app, key_id: str) -> ApiKey:
    async with app.state.db.reading() as session:
        return (await session.execute(select(ApiKey).where(ApiKey.key_id == key_id))).scalar_one()


async def test_a_key_made_over_the_api_is_shown_once_and_then_only_by_its_public_id(client):
    made = await client.post("/api/v1/keys", json={"name": "ci-deploy", "role": "editor", "expires_in": "90d"})
    assert made.status_code == 201
    body = made.json()
    match = KEY.fullmatch(body["key"])
    assert match and match.group(1) == body["id"]
    assert made.headers["location"] == f"/api/v1/keys/{body['id']}"
    assert made.headers["cache-control"] == "no-store"
    assert body["role"] == "editor" and body["status"] == "active"
    assert datetime.fromisoformat(body["expires_at"]) - datetime.fromisoformat(body["created_at"]) == timedelta(days=90)
    shown = (await client.get(f"/api/v1/keys/{body['id']}")).json()
    listed = (await client.get("/api/v1/keys")).json()["data"]
    assert "key" not in shown and all("key" not in entry for entry in listed)
    assert body["key"] not in str(listed) and match.group(2) not in str(shown)
    works = await client.get("/api/v1/links", headers=bearer(body["key"]))
    assert works.status_code == 200


async def test_only_a_hash_of_the_secret_is_stored(client):
    token = (await client.post("/api/v1/keys", json={"name": "hashed", "role": "reader"})).json()["key"]
    key_id, secret = KEY.fullmatch(token).groups()
    row = await stored(client.app, key_id)
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(vars(row))
    assert len(secret) * 4 >= 128  # hex digits carry 4 bits each


async def test_with_a_pepper_the_hash_is_an_hmac_and_a_new_pepper_invalidates_every_key(sqlite_url, redis_server):
    await migrate(sqlite_url)
    peppered = make_settings(sqlite_url, api_key_pepper="pepper-one")
    async with running_app(peppered, fakeredis.FakeAsyncRedis(server=redis_server)) as client:
        token = client.key
        key_id, secret = KEY.fullmatch(token).groups()
        row = await stored(client.app, key_id)
        assert row.secret_hash == hmac.new(b"pepper-one", secret.encode(), hashlib.sha256).hexdigest()
        assert (await client.get("/api/v1/links")).status_code == 200
    repeppered = make_settings(sqlite_url, api_key_pepper="pepper-two")
    async with running_app(repeppered, fakeredis.FakeAsyncRedis(server=redis_server), role=None) as client:
        assert (await client.get("/api/v1/links", headers=bearer(token))).status_code == 401


@pytest.mark.parametrize(("body", "field", "status"), [
    pytest.param({"name": "x", "role": "boss"}, "role", 422, id="unknown-role"),
    pytest.param({"name": "bad name!", "role": "reader"}, "name", 422, id="bad-name"),
    pytest.param({"name": "x", "role": "reader", "expires_in": "soon"}, "expires_in", 422, id="bad-duration"),
    pytest.param({"name": "x", "role": "reader", "expires_in": "1d", "expires_at": "2030-01-01T00:00:00Z"},
                 "expires_in", 422, id="both-expiries"),
    pytest.param({"name": "x", "role": "reader", "expires_at": "2020-01-01T00:00:00Z"}, "expires_at", 422,
                 id="expiry-in-the-past"),
    pytest.param({"name": "x", "role": "reader", "secret": "mine"}, "secret", 422, id="unknown-field"),
])
async def test_a_bad_key_request_answers_422_naming_the_field(client, body, field, status):
    response = await client.post("/api/v1/keys", json=body)
    assert response.status_code == status
    assert any(error["field"] == field for error in response.json()["errors"]), response.json()


async def test_a_key_name_is_unique_for_good_even_after_revocation(client):
    first = (await client.post("/api/v1/keys", json={"name": "dup", "role": "reader"})).json()
    assert (await client.delete(f"/api/v1/keys/{first['id']}")).status_code == 204
    again = await client.post("/api/v1/keys", json={"name": "dup", "role": "reader"})
    assert again.status_code == 409
    assert again.json()["type"] == "urn:linkgate:problem:key-name-taken"


async def test_an_unknown_key_id_answers_404_and_a_malformed_one_422(client):
    assert (await client.get("/api/v1/keys/0123456789ab")).status_code == 404
    assert (await client.delete("/api/v1/keys/0123456789ab")).status_code == 404
    assert (await client.get("/api/v1/keys/NOT-AN-ID")).status_code == 422


async def test_a_key_pasted_into_a_path_is_not_echoed_back(client):
    secret_part = KEY.fullmatch(client.key).group(2)
    for path in (f"/api/v1/keys/{client.key}", f"/api/v1/links/{client.key}", f"/{client.key}"):
        response = await client.get(path, headers={"accept": "application/json"})
        assert response.status_code in (404, 422), path
        assert secret_part not in response.text, path


async def test_revoking_answers_401_from_the_next_request_on_this_replica(client):
    made = (await client.post("/api/v1/keys", json={"name": "short-lived", "role": "reader"})).json()
    assert (await client.get("/api/v1/links", headers=bearer(made["key"]))).status_code == 200
    assert (await client.delete(f"/api/v1/keys/{made['id']}")).status_code == 204
    refused = await client.get("/api/v1/links", headers=bearer(made["key"]))
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]
    assert (await client.get(f"/api/v1/keys/{made['id']}")).json()["status"] == "revoked"


async def test_another_replica_refuses_a_revoked_key_within_the_cache_ttl(sqlite_url, redis_server):
    await migrate(sqlite_url)
    settings = make_settings(sqlite_url, api_key_cache_ttl_seconds=2.0)
    shared = fakeredis.FakeAsyncRedis(server=redis_server)
    clock = Clock()
    async with running_app(settings, shared) as a, running_app(settings, shared, role=None) as b:
        b.app.state.keys.monotonic = clock.monotonic
        made = (await a.post("/api/v1/keys", json={"name": "roaming", "role": "reader"})).json()
        assert (await b.get("/api/v1/links", headers=bearer(made["key"]))).status_code == 200
        await a.delete(f"/api/v1/keys/{made['id']}")
        assert (await a.get("/api/v1/links", headers=bearer(made["key"]))).status_code == 401
        clock.advance(1.9)  # B checked the key less than the TTL ago: it may still trust it
        assert (await b.get("/api/v1/links", headers=bearer(made["key"]))).status_code == 200
        clock.advance(0.2)  # past the TTL: B reads the key again and refuses it
        assert (await b.get("/api/v1/links", headers=bearer(made["key"]))).status_code == 401


async def test_a_key_answers_401_once_it_expires_without_waiting_for_any_cache(client):
    clock = Clock()
    keys = client.app.state.keys
    keys.clock = clock.wall
    token = await make_key(client.app, "expiring", "reader", expires_at=clock.now + timedelta(hours=1))
    assert (await client.get("/api/v1/links", headers=bearer(token))).status_code == 200
    clock.now += timedelta(minutes=59)
    assert (await client.get("/api/v1/links", headers=bearer(token))).status_code == 200
    clock.now += timedelta(minutes=1)
    expired = await client.get("/api/v1/links", headers=bearer(token))
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    key_id = KEY.fullmatch(token).group(1)
    assert (await client.get(f"/api/v1/keys/{key_id}")).json()["status"] == "expired"


async def test_last_used_is_written_in_the_background_at_most_once_a_minute(client):
    clock = Clock()
    keys = client.app.state.keys
    keys.clock, keys.monotonic = clock.wall, clock.monotonic
    token = await make_key(client.app, "busy", "reader")
    key_id = KEY.fullmatch(token).group(1)
    for _ in range(5):
        await client.get("/api/v1/links", headers=bearer(token))
    assert (await stored(client.app, key_id)).last_used_at is None  # nothing written per request
    assert await keys.flush_last_used() >= 1
    assert (await stored(client.app, key_id)).last_used_at == clock.now
    first = clock.now
    clock.advance(30)
    await client.get("/api/v1/links", headers=bearer(token))
    await keys.flush_last_used()
    assert (await stored(client.app, key_id)).last_used_at == first  # within the minute: not again
    clock.advance(31)
    await client.get("/api/v1/links", headers=bearer(token))
    await keys.flush_last_used()
    assert (await stored(client.app, key_id)).last_used_at == clock.now
    shown = (await client.get(f"/api/v1/keys/{key_id}")).json()
    assert datetime.fromisoformat(shown["last_used_at"]) == clock.now


async def test_every_log_line_of_a_session_names_keys_by_id_and_never_carries_a_secret(client, caplog):
    caplog.set_level(logging.DEBUG)
    made = (await client.post("/api/v1/keys", json={"name": "audited", "role": "editor"})).json()
    token = made["key"]
    code = (await client.post("/api/v1/links", json={"url": "https://example.com/a"},
                              headers=bearer(token))).json()["code"]
    await client.patch(f"/api/v1/links/{code}", json={"url": "https://example.com/b"}, headers=bearer(token))
    await client.delete(f"/api/v1/links/{code}", headers=bearer(token))
    await client.get("/api/v1/links", headers={"X-Api-Key": token[:-1] + "0"})  # a wrong secret
    await client.get(f"/api/v1/keys/{token}")
    await client.delete(f"/api/v1/keys/{made['id']}")
    await client.get("/api/v1/links", headers=bearer(token))  # revoked
    secrets_sent = {KEY.fullmatch(token).group(2), KEY.fullmatch(client.key).group(2)}
    # Every logger but the test's own HTTP client (httpx logs the URLs it was asked for).
    everything = "\n".join(
        f"{record.getMessage()} {vars(record)}" for record in caplog.records if record.name != "httpx"
    )
    for secret in secrets_sent:
        assert secret not in everything
        assert secret[:16] not in everything
    audit = [record for record in caplog.records if record.name == "linkgate.audit"]
    events = [(record.event, getattr(record, "key_name", None)) for record in audit]
    assert ("key.created", "audited") in events
    assert ("link.created", "audited") in events
    assert ("link.updated", "audited") in events
    assert ("link.deleted", "audited") in events
    assert ("key.revoked", "audited") in events
    assert all(record.key_id for record in audit)


def run_cli(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_the_cli_makes_lists_and_revokes_keys_with_the_key_alone_on_stdout(tmp_path):
    env = cli_env(tmp_path)
    assert run_cli(env, "migrate").returncode == 0
    made = run_cli(env, "create-key", "--name", "ci", "--role", "admin", "--expires-in", "90d")
    assert made.returncode == 0, made.stderr
    assert KEY.fullmatch(made.stdout.strip()), made.stdout  # KEY=$(python -m service create-key ...) works
    assert made.stdout.count("\n") == 1
    assert "ci" in made.stderr and KEY.fullmatch(made.stdout.strip()).group(2) not in made.stderr
    listed = run_cli(env, "list-keys")
    assert listed.returncode == 0
    header, row = listed.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "ROLE", "STATUS", "CREATED", "EXPIRES", "LAST", "USED"]
    assert row.split()[1:4] == ["ci", "admin", "active"]
    assert KEY.fullmatch(made.stdout.strip()).group(2) not in listed.stdout
    assert run_cli(env, "revoke-key", "ci").returncode == 0
    assert run_cli(env, "list-keys").stdout.splitlines()[1].split()[3] == "revoked"


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["--name", "x", "--role", "boss"], "--role", id="unknown-role"),
    pytest.param(["--name", "x", "--role", "admin", "--expires-in", "forever"], "--expires-in", id="bad-duration"),
    pytest.param(["--name", "x y", "--role", "admin"], "--name", id="bad-name"),
])
def test_the_cli_refuses_a_bad_key_on_stderr_with_nothing_on_stdout(tmp_path, args, message):
    env = cli_env(tmp_path)
    run_cli(env, "migrate")
    result = run_cli(env, "create-key", *args)
    assert result.returncode != 0
    assert result.stdout == ""
    assert message in result.stderr


def test_revoking_an_unknown_key_name_fails_with_a_message(tmp_path):
    env = cli_env(tmp_path)
    run_cli(env, "migrate")
    result = run_cli(env, "revoke-key", "nobody")
    assert result.returncode != 0 and "nobody" in result.stderr
