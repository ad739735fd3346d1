"""Password-protected links on SQLite + fakeredis: the API, the form, the header, the limits, the visit."""

from __future__ import annotations

import re

import fakeredis
from sqlalchemy import event, select

from service.store.models import Link
from tests.support import make_settings, migrate, running_app

TARGET = "https://example.com/secret/place?x=1"
BROWSER = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
           "accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def _leaks_target(response) -> bool:
    text = response.text + " ".join(f"{k}: {v}" for k, v in response.headers.items())
    return "example.com" in text or "secret" in text


async def _protected(client, password: str = "open sesame", **fields) -> str:
    response = await client.post("/api/v1/links", json={"url": TARGET, "password": password, **fields})
    assert response.status_code == 201, response.text
    return response.json()["code"]


async def test_the_api_shows_password_protected_and_never_the_password_or_its_hash(client):
    response = await client.post("/api/v1/links", json={"url": TARGET, "password": "open sesame"})
    body = response.json()
    assert body["password_protected"] is True
    assert "password" not in body and "password_hash" not in body and "argon2" not in response.text
    code = body["code"]
    assert (await client.get(f"/api/v1/links/{code}")).json()["password_protected"] is True
    async with client.app.state.db.reading() as session:
        stored = (await session.execute(select(Link.password_hash).where(Link.code == code))).scalar_one()
    assert stored.startswith("$argon2id$") and "open sesame" not in stored
    plain = (await client.post("/api/v1/links", json={"url": TARGET})).json()
    assert plain["password_protected"] is False


async def test_patch_sets_and_removes_a_password(client):
    code = (await client.post("/api/v1/links", json={"url": TARGET})).json()["code"]
    assert (await client.get(f"/{code}")).status_code == 302
    patched = await client.patch(f"/api/v1/links/{code}", json={"password": "pw"})
    assert patched.json()["password_protected"] is True
    assert (await client.get(f"/{code}", headers=BROWSER)).status_code == 200  # the form now
    removed = await client.patch(f"/api/v1/links/{code}", json={"password": None})
    assert removed.json()["password_protected"] is False
    assert (await client.get(f"/{code}")).status_code == 302


async def test_an_empty_password_is_refused_with_422(client):
    response = await client.post("/api/v1/links", json={"url": TARGET, "password": ""})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_visitor_gets_the_form_never_the_target_and_no_visit_is_counted(client):
    code = await _protected(client)
    recorder = client.app.state.visit_recorder
    before = recorder.backlog
    response = await client.get(f"/{code}", headers=BROWSER)
    assert response.status_code == 200
    assert 'type="password"' in response.text and 'method="post"' in response.text
    assert "location" not in response.headers
    assert not _leaks_target(response)
    assert "form-action 'self'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    assert recorder.backlog == before
    head = await client.head(f"/{code}", headers=BROWSER)
    assert head.status_code == 200 and head.content == b"" and "location" not in head.headers


async def test_a_wrong_password_gets_the_form_again_with_401_and_no_target(client):
    code = await _protected(client)
    response = await client.post(f"/{code}", data={"password": "nope"}, headers=BROWSER)
    assert response.status_code == 401
    assert 'role="alert"' in response.text and 'type="password"' in response.text
    assert "www-authenticate" in response.headers
    assert not _leaks_target(response)


async def test_the_right_password_is_a_303_to_the_target_and_counts_one_visit(client):
    code = await _protected(client)
    recorder = client.app.state.visit_recorder
    before = recorder.backlog
    response = await client.post(f"/{code}?utm=1", data={"password": "open sesame"})
    assert response.status_code == 303
    assert response.headers["location"] == TARGET + "&utm=1"
    assert recorder.backlog == before + 1


async def test_a_browser_is_taken_on_by_a_page_because_form_action_covers_redirects(client):
    code = await _protected(client)
    response = await client.post(f"/{code}", data={"password": "open sesame"},
                                 headers={**BROWSER, "sec-fetch-mode": "navigate"})
    assert response.status_code == 200
    assert re.search(r'<meta http-equiv="refresh" content="0; url=https://example.com/secret/place\?x=1">',
                     response.text)
    assert 'rel="noopener noreferrer"' in response.text
    assert "script" not in response.text


async def test_the_header_opens_the_link_for_an_api_client(client):
    code = await _protected(client)
    right = await client.get(f"/{code}", headers={"x-link-password": "open sesame"})
    assert right.status_code == 302 and right.headers["location"] == TARGET
    permanent = await _protected(client, redirect_status=301)
    opened = await client.get(f"/{permanent}", headers={"x-link-password": "open sesame"})
    # A permanent redirect is kept by browsers and proxies: never one that a password opened.
    assert opened.status_code == 301 and opened.headers["cache-control"] == "private, no-store"
    wrong = await client.get(f"/{code}", headers={"x-link-password": "guess", "accept": "application/json"})
    assert wrong.status_code == 401
    assert wrong.json()["type"] == "urn:linkgate:problem:password-wrong"
    assert not _leaks_target(wrong)
    missing = await client.get(f"/{code}", headers={"accept": "application/json"})
    assert missing.status_code == 401
    assert missing.json()["type"] == "urn:linkgate:problem:password-required"


async def test_the_redirect_knows_a_link_is_protected_from_its_cached_entry_without_sql(client):
    code = await _protected(client)
    assert (await client.get(f"/{code}", headers=BROWSER)).status_code == 200  # now cached
    client.app.state.redirector.forget_all()  # only Redis has it now
    statements: list[str] = []
    engine = client.app.state.db.engine.sync_engine
    listener = lambda *a: statements.append(a[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        response = await client.get(f"/{code}", headers=BROWSER)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert response.status_code == 200 and 'type="password"' in response.text
    # (The coordinator's relay polls the outbox meanwhile: not the redirect's.)
    assert [s for s in statements if re.search(r"\blinks\b", s)] == []


async def test_attempts_are_limited_per_address(sqlite_url, redis_server):
    settings = make_settings(sqlite_url, password_attempts_per_address="3/minute")
    await migrate(sqlite_url)
    async with running_app(settings, fakeredis.FakeAsyncRedis(server=redis_server)) as client:
        code = await _protected(client)
        statuses = [(await client.post(f"/{code}", data={"password": "x"}, headers=BROWSER)).status_code
                    for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        # Over the limit even the right password is not checked.
        limited = await client.post(f"/{code}", data={"password": "open sesame"}, headers=BROWSER)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert not _leaks_target(limited)
        header = await client.get(f"/{code}", headers={"x-link-password": "open sesame"})
        assert header.status_code == 429


async def test_attempts_are_limited_per_link_across_addresses(sqlite_url, redis_server):
    settings = make_settings(sqlite_url, password_attempts_per_link="2/minute", trusted_proxies=["127.0.0.0/8"])
    await migrate(sqlite_url)
    async with running_app(settings, fakeredis.FakeAsyncRedis(server=redis_server)) as client:
        code = await _protected(client)
        other = await _protected(client)
        statuses = []
        for n in range(3):
            headers = {**BROWSER, "x-forwarded-for": f"203.0.113.{n + 1}"}
            statuses.append((await client.post(f"/{code}", data={"password": "x"}, headers=headers)).status_code)
        assert statuses == [401, 401, 429]
        # Another link's own limit is untouched.
        assert (await client.post(f"/{other}", data={"password": "x"}, headers=BROWSER)).status_code == 401


async def test_a_gone_protected_link_answers_410_not_the_form(client):
    code = await _protected(client, disabled=True)
    response = await client.get(f"/{code}", headers=BROWSER)
    assert response.status_code == 410
    posted = await client.post(f"/{code}", data={"password": "open sesame"}, headers=BROWSER)
    assert posted.status_code == 410


async def test_an_unknown_code_posted_to_answers_404(client):
    response = await client.post("/nosuchcode", data={"password": "x"}, headers=BROWSER)
    assert response.status_code == 404


async def test_max_visits_admits_only_after_the_unlock(client):
    code = await _protected(client, max_visits=1)
    for _ in range(3):  # forms and wrong passwords take no admission
        await client.get(f"/{code}", headers=BROWSER)
        await client.post(f"/{code}", data={"password": "x"})
    person = {"user-agent": BROWSER["user-agent"]}  # a bot's visit would not count toward the limit
    assert (await client.post(f"/{code}", data={"password": "open sesame"}, headers=person)).status_code == 303
    assert (await client.post(f"/{code}", data={"password": "open sesame"}, headers=person)).status_code == 410


async def test_an_export_keeps_a_link_private_when_imported_again(client, tmp_path):
    import io

    from service.lifecycle import transfer

    code = await _protected(client, alias="private-one")
    out = io.StringIO()
    await transfer.export_links(client.app.state.links, out, "jsonl")
    exported = [line for line in out.getvalue().splitlines() if "private-one" in line]
    assert len(exported) == 1 and "$argon2id$" in exported[0] and "open sesame" not in exported[0]
    moved = exported[0].replace("private-one", "private-two")
    report = await transfer.import_links(client.app.state.links, transfer.read_rows(io.StringIO(moved + "\n"), "jsonl"),
                                         owner_id=None)
    assert report.created == 1, report.refused
    assert (await client.get("/private-two", headers=BROWSER)).status_code == 200  # the form
    right = await client.get("/private-two", headers={"x-link-password": "open sesame"})
    assert right.status_code == 302 and right.headers["location"] == TARGET
    forged = '{"url": "https://example.com/", "alias": "forged", "password_hash": "plain text"}\n'
    refused = await transfer.import_links(client.app.state.links, transfer.read_rows(io.StringIO(forged), "jsonl"),
                                          owner_id=None)
    assert refused.created == 0 and "password_hash" in refused.refused[0][1]
