"""Link lifecycle on SQLite + fakeredis: what visitors get, state changes, visit limits, finding, bulk."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fakeredis
import pytest
from sqlalchemy import event

from tests import lifecycle_table
from tests.api.test_serve import cli_env
from tests.support import bearer, make_key, make_settings, migrate, running_app

README = Path(__file__).parents[2] / "README.md"
BROWSER = {"user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"}


def iso(moment: datetime) -> str:
    return moment.isoformat()


@pytest.mark.parametrize(("state", "fallback", "gone_url"), lifecycle_table.CASES)
async def test_what_a_visitor_gets(sqlite_url, redis_server, state, fallback, gone_url):
    settings = make_settings(sqlite_url, gone_redirect_url="https://example.com/gone" if gone_url else None)
    await migrate(sqlite_url)
    async with running_app(settings, fakeredis.FakeAsyncRedis(server=redis_server)) as client:
        await lifecycle_table.check_case(client, state, fallback, gone_url)


def test_the_readme_visitor_table_is_the_one_the_tests_run():
    text = README.read_text()
    table = text[text.index("<!-- visitor table"):text.index("<!-- end of visitor table -->")]
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip()
            for line in table.splitlines() if line.startswith("| ") and "---" not in line}
    for state in lifecycle_table.STATES:
        row = next(answer for names, answer in rows.items() if re.search(rf"\b{state}\b", names))
        if state in lifecycle_table.GONE:
            assert "`fallback_url`" in row and "LINKGATE_GONE_REDIRECT_URL" in row and "410" in row, state
        else:
            assert str(lifecycle_table.expected(state, fallback=False, gone_url=False)[0]) in row, state


async def test_expiry_is_decided_from_the_cached_entry_on_the_clock_without_sql(client):
    state = client.app.state
    clock = [datetime.now(UTC).timestamp()]
    client.app.redirect_gateway.wall_clock = lambda: clock[0]
    until = datetime.fromtimestamp(clock[0], UTC) + timedelta(minutes=10)
    code = (await client.post("/api/v1/links", json={"url": "https://example.com/t", "valid_until": iso(until)})).json()["code"]
    assert (await client.get(f"/{code}")).status_code == 302
    statements: list[str] = []
    event.listen(state.db.engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    clock[0] += 599
    assert (await client.get(f"/{code}")).status_code == 302
    clock[0] += 1
    assert (await client.get(f"/{code}")).status_code == 410
    assert statements == []  # both answers came from the cache and the clock


async def test_a_permanent_redirect_is_never_cached_past_the_links_expiry(client):
    clock = [datetime.now(UTC).timestamp()]
    client.app.redirect_gateway.wall_clock = lambda: clock[0]
    until = datetime.fromtimestamp(clock[0], UTC) + timedelta(seconds=600)
    code = (await client.post("/api/v1/links", json={"url": "https://example.com/p", "redirect_status": 301,
                                                     "valid_until": iso(until)})).json()["code"]
    assert (await client.get(f"/{code}")).headers["cache-control"] == "public, max-age=600"
    clock[0] += 590
    assert (await client.get(f"/{code}")).headers["cache-control"] == "public, max-age=10"
    plain = (await client.post("/api/v1/links", json={"url": "https://example.com/q", "redirect_status": 301})).json()
    assert (await client.get(f"/{plain['code']}")).headers["cache-control"] == "public, max-age=3600"


NOW = datetime.now(UTC)


@pytest.mark.parametrize(("body", "field"), [
    pytest.param({"valid_until": iso(NOW - timedelta(minutes=1))}, "valid_until", id="until-in-the-past"),
    pytest.param({"valid_since": iso(NOW + timedelta(days=2)), "valid_until": iso(NOW + timedelta(days=1))},
                 "valid_until", id="until-before-since"),
    pytest.param({"valid_until": "2030-01-01T00:00:00"}, "valid_until", id="no-time-zone"),
    pytest.param({"max_visits": 0}, "max_visits", id="max-visits-zero"),
    pytest.param({"max_visits": 5, "redirect_status": 308}, "redirect_status", id="limited-and-permanent"),
    pytest.param({"fallback_url": "https://sho.rt/elsewhere"}, "fallback_url", id="fallback-loops-back"),
    pytest.param({"fallback_url": "http://10.0.0.1/"}, "fallback_url", id="fallback-private"),
    pytest.param({"title": "t" * 201}, "title", id="title-too-long"),
    pytest.param({"tags": ["ok", "not ok"]}, "tags[1]", id="tag-with-space"),
    pytest.param({"tags": [f"t{i}" for i in range(21)]}, "tags", id="too-many-tags"),
    pytest.param({"tags": ["x" * 65]}, "tags[0]", id="tag-too-long"),
])
async def test_a_lifecycle_that_cannot_hold_is_refused_with_422_naming_the_field(client, body, field):
    response = await client.post("/api/v1/links", json={"url": "https://example.com/", **body})
    assert response.status_code == 422, response.text
    assert any(error["field"] == field for error in response.json()["errors"]), response.json()


TRANSITIONS = [
    # change, status after, who (owner is an editor)
    pytest.param({"disabled": True}, 200, "disabled", "owner", id="owner-disables"),
    pytest.param({"disabled": False}, 200, "active", "owner", id="owner-enables"),
    pytest.param({"blocked": True}, 403, "active", "owner", id="owner-cannot-block"),
    pytest.param({"blocked": True}, 200, "blocked", "admin", id="admin-blocks"),
    pytest.param({"valid_until": iso(NOW - timedelta(seconds=1))}, 200, "expired", "owner", id="window-closed"),
    pytest.param({"valid_since": iso(NOW + timedelta(hours=1))}, 200, "scheduled", "owner", id="scheduled-later"),
    pytest.param({"max_visits": 1}, 200, "active", "owner", id="limited"),
    pytest.param({"disabled": None}, 422, "active", "owner", id="disabled-null"),
]


@pytest.mark.parametrize(("change", "code_expected", "status_after", "who"), TRANSITIONS)
async def test_state_transitions(client, change, code_expected, status_after, who):
    editor = bearer(await make_key(client.app, "owner", "editor"))
    code = (await client.post("/api/v1/links", json={"url": "https://example.com/s"}, headers=editor)).json()["code"]
    if change == {"disabled": False}:
        await client.patch(f"/api/v1/links/{code}", json={"disabled": True}, headers=editor)
    answer = await client.patch(f"/api/v1/links/{code}", json=change, headers=editor if who == "owner" else None)
    assert answer.status_code == code_expected, answer.text
    assert (await client.get(f"/api/v1/links/{code}")).json()["status"] == status_after


async def test_only_an_admin_unblocks_and_the_owner_cannot_reenable_a_blocked_link(client):
    editor = bearer(await make_key(client.app, "owner", "editor"))
    code = (await client.post("/api/v1/links", json={"url": "https://example.com/b"}, headers=editor)).json()["code"]
    await client.patch(f"/api/v1/links/{code}", json={"blocked": True})
    await client.patch(f"/api/v1/links/{code}", json={"disabled": False}, headers=editor)
    assert (await client.get(f"/{code}")).status_code == 410
    assert (await client.patch(f"/api/v1/links/{code}", json={"blocked": False}, headers=editor)).status_code == 403
    assert (await client.patch(f"/api/v1/links/{code}", json={"blocked": False})).json()["status"] == "active"
    assert (await client.get(f"/{code}")).status_code == 302


async def test_a_limited_link_admits_exactly_max_visits_and_bots_do_not_use_it_up(client):
    code = (await client.post("/api/v1/links", json={"url": "https://example.com/l", "max_visits": 3})).json()["code"]
    previewers = ["facebookexternalhit/1.1", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
                  "WhatsApp/2.23.20.0", "curl/8.5.0"]
    for agent in previewers:
        assert (await client.get(f"/{code}", headers={"user-agent": agent})).status_code == 302
    answers = [(await client.get(f"/{code}", headers=BROWSER)).status_code for _ in range(5)]
    assert answers == [302, 302, 302, 410, 410]
    assert (await client.get(f"/{code}", headers={"user-agent": "facebookexternalhit/1.1"})).status_code == 410
    await client.app.state.visit_limits.flush()
    shown = (await client.get(f"/api/v1/links/{code}")).json()
    assert (shown["visits_counted"], shown["status"]) == (3, "exhausted")


async def test_bots_count_when_the_operator_says_so(sqlite_url, redis_server):
    await migrate(sqlite_url)
    async with running_app(make_settings(sqlite_url, max_visits_count_bots=True),
                           fakeredis.FakeAsyncRedis(server=redis_server)) as client:
        code = (await client.post("/api/v1/links", json={"url": "https://example.com/l", "max_visits": 1})).json()["code"]
        assert (await client.get(f"/{code}", headers={"user-agent": "facebookexternalhit/1.1"})).status_code == 302
        assert (await client.get(f"/{code}", headers=BROWSER)).status_code == 410


async def test_a_redis_flush_does_not_reset_a_limit(client, redis_server):
    code = (await client.post("/api/v1/links", json={"url": "https://example.com/f", "max_visits": 4})).json()["code"]
    for _ in range(3):
        assert (await client.get(f"/{code}", headers=BROWSER)).status_code == 302
    await client.app.state.visit_limits.flush()
    await client.app.state.cache.redis.flushall()
    client.app.state.redirector.forget_all()
    answers = [(await client.get(f"/{code}", headers=BROWSER)).status_code for _ in range(3)]
    assert answers == [302, 410, 410]


async def test_with_redis_away_the_limit_is_enforced_through_sql_exactly(client, redis_server):
    code = (await client.post("/api/v1/links", json={"url": "https://example.com/r", "max_visits": 5})).json()["code"]
    for _ in range(2):
        assert (await client.get(f"/{code}", headers=BROWSER)).status_code == 302
    redis_server.connected = False
    answers = await asyncio.gather(*(client.get(f"/{code}", headers=BROWSER) for _ in range(10)))
    assert sorted(a.status_code for a in answers) == [302] * 3 + [410] * 7
    redis_server.connected = True
    shown = (await client.get(f"/api/v1/links/{code}")).json()
    assert shown["visits_counted"] == 5


async def test_max_visits_cannot_go_below_the_visits_already_counted(client):
    code = (await client.post("/api/v1/links", json={"url": "https://example.com/m", "max_visits": 10})).json()["code"]
    for _ in range(4):
        await client.get(f"/{code}", headers=BROWSER)
    refused = await client.patch(f"/api/v1/links/{code}", json={"max_visits": 3})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "max_visits"
    assert (await client.patch(f"/api/v1/links/{code}", json={"max_visits": 4})).json()["status"] in ("active", "exhausted")
    raised = await client.patch(f"/api/v1/links/{code}", json={"max_visits": 6})
    assert raised.status_code == 200
    assert [(await client.get(f"/{code}", headers=BROWSER)).status_code for _ in range(3)] == [302, 302, 410]


async def test_listing_filters_by_tags_text_status_and_creation_time_and_pages_through_them(client):
    made = []
    for n in range(7):
        body = {"url": f"https://shop.example/item/{n}", "title": f"Item {n}", "tags": ["Shop"] + (["Sale"] if n % 2 else [])}
        if n == 6:
            body["disabled"] = True
        made.append((await client.post("/api/v1/links", json=body)).json())
    await client.post("/api/v1/links", json={"url": "https://other.example/", "title": "Other", "tags": ["misc"]})

    async def codes(**params):
        out, cursor = [], None
        while True:
            page = (await client.get("/api/v1/links", params={**params, "limit": 2, **({"cursor": cursor} if cursor else {})})).json()
            out += [link["code"] for link in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return out

    assert await codes(tag=["shop", "SALE"]) == [made[n]["code"] for n in (5, 3, 1)]
    assert await codes(q="ITEM 4") == [made[4]["code"]]
    assert await codes(q="shop.example/item/1") == [made[1]["code"]]
    assert await codes(q="100%_") == []
    assert await codes(status="disabled") == [made[6]["code"]]
    assert len(await codes(status="active", tag="shop")) == 6
    since = made[3]["created_at"]
    assert await codes(created_after=since, tag="shop") == [made[n]["code"] for n in (6, 5, 4)]
    assert await codes(created_before=since, tag="shop") == [made[n]["code"] for n in (2, 1, 0)]
    tags = (await client.get("/api/v1/tags")).json()["data"]
    assert tags == [{"tag": "shop", "links": 7}, {"tag": "sale", "links": 3}, {"tag": "misc", "links": 1}]
    assert (await client.get("/api/v1/links", params={"status": "sleeping"})).status_code == 422


async def test_tags_show_only_what_the_key_may_see(client):
    editor = bearer(await make_key(client.app, "tagger", "editor"))
    await client.post("/api/v1/links", json={"url": "https://example.com/a", "tags": ["mine"]}, headers=editor)
    await client.post("/api/v1/links", json={"url": "https://example.com/b", "tags": ["theirs"]})
    assert (await client.get("/api/v1/tags", headers=editor)).json()["data"] == [{"tag": "mine", "links": 1}]


async def test_a_batch_answers_one_result_per_item_in_order_and_a_bad_item_stops_no_other(client):
    items = [{"url": "https://example.com/1"}, {"url": "ftp://nope"}, {"url": "https://example.com/3", "alias": "batch-three"},
             {"url": "https://example.com/4", "alias": "batch-three"}, {"nonsense": True}, {"url": "https://example.com/6", "tags": ["b"]}]
    answer = await client.post("/api/v1/links/batch", json={"links": items})
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [r["index"] for r in results] == list(range(6))
    statuses = [r["status"] for r in results]
    assert statuses[0] == 201 and statuses[1] == 422 and statuses[4] == 422 and statuses[5] == 201
    assert sorted(statuses[2:4]) == [201, 409]
    assert results[1]["problem"]["errors"][0]["field"] == "url"
    assert results[5]["link"]["tags"] == ["b"]
    for result in results:
        if result["status"] == 201:
            assert (await client.get(f"/{result['link']['code']}")).status_code == 302
    assert (await client.post("/api/v1/links/batch", json={"links": [{"url": "https://e.com/"}] * 1001})).status_code == 422
    assert (await client.post("/api/v1/links/batch", json={"links": []})).status_code == 422


def run_cli(env, *args, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service", *args], env=env, capture_output=True, text=True,
                          timeout=120, input=stdin)


def test_import_export_round_trips_into_an_empty_database_and_is_safe_to_run_twice(tmp_path):
    source = cli_env(tmp_path / "a")
    (tmp_path / "a").mkdir()
    assert run_cli(source, "migrate").returncode == 0
    assert run_cli(source, "create-key", "--name", "importer", "--role", "editor").returncode == 0
    rows = tmp_path / "links.csv"
    rows.write_text(
        "url,alias,title,tags,valid_until,max_visits,redirect_status\n"
        "https://example.com/one,,One,a|B,,,\n"
        "https://example.com/two,two-alias,Two,,2031-01-01T00:00:00Z,5,307\n"
        "not a url,,,,,,\n"
        "https://example.com/four,,,,,,303\n"
        "https://example.com/five,,Five,,,,301\n"
    )
    first = run_cli(source, "import", str(rows), "--owner", "importer")
    assert first.returncode == 0, first.stderr
    assert "created 3, skipped 0 (already there), refused 2" in first.stdout
    assert re.search(r"line 4: url: ", first.stdout) and re.search(r"line 5: redirect_status", first.stdout)
    again = run_cli(source, "import", str(rows), "--owner", "importer")
    assert "skipped 1 (already there)" in again.stdout  # the alias; rows without one are new links
    exported = run_cli(source, "export", "--format", "jsonl")
    assert exported.returncode == 0
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    assert {r.get("alias") for r in records} == {"two-alias", None}
    target = cli_env(tmp_path / "b")
    (tmp_path / "b").mkdir()
    run_cli(target, "migrate")
    imported = run_cli(target, "import", "-", "--format", "jsonl", stdin=exported.stdout)
    assert f"created {len(records)}," in imported.stdout, imported.stdout + imported.stderr
    assert run_cli(target, "export", "--format", "jsonl").stdout == exported.stdout
    assert "skipped 5" in run_cli(target, "import", "-", "--format", "jsonl", stdin=exported.stdout).stdout


def test_purge_deletes_links_gone_before_a_date_and_keeps_their_codes_reserved(tmp_path):
    env = cli_env(tmp_path)
    run_cli(env, "migrate")
    rows = tmp_path / "old.jsonl"
    rows.write_text(
        json.dumps({"url": "https://example.com/old", "alias": "old-one", "valid_until": "2020-01-01T00:00:00Z"}) + "\n"
        + json.dumps({"url": "https://example.com/new", "alias": "new-one", "valid_until": "2035-01-01T00:00:00Z"}) + "\n"
    )
    assert "created 2" in run_cli(env, "import", str(rows)).stdout
    purged = run_cli(env, "purge", "--gone-before", "2025-01-01")
    assert "purged 1 links" in purged.stdout, purged.stdout + purged.stderr
    exported = run_cli(env, "export", "--format", "jsonl").stdout
    assert "new-one" in exported and "old-one" not in exported
    # The purged link's code stays taken: importing it again makes nothing new.
    assert "created 0, skipped 2 (already there), refused 0" in run_cli(env, "import", str(rows)).stdout
