"""Who may do what: the permission matrix on SQLite + fakeredis, and what the policy file can change."""

from __future__ import annotations

import re
from pathlib import Path

import fakeredis
import pytest

from service.access.policy import SHIPPED_POLICY
from tests import permission_matrix
from tests.support import bearer, make_key, make_settings, migrate, running_app

README = Path(__file__).parents[2] / "README.md"


@pytest.fixture
async def bare_client(settings, redis_server):
    """The app, with a client that sends no key of its own."""
    await migrate(settings.database_url)
    async with running_app(settings, fakeredis.FakeAsyncRedis(server=redis_server), role=None) as client:
        yield client


@pytest.mark.parametrize(("role", "route", "whose", "expected"), permission_matrix.CASES)
async def test_permission_matrix(bare_client, role, route, whose, expected):
    await permission_matrix.check_case(bare_client, role, route, whose, expected)


def test_the_readme_permission_table_is_the_matrix():
    text = README.read_text()
    table = text[text.index("<!-- permission matrix"):text.index("<!-- end of permission matrix -->")]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    documented = {}
    for row in rows:
        route, *cells = [cell.strip() for cell in row.strip("|").split("|")]
        documented[route] = cells
    for route in permission_matrix.ROUTES:
        for index, role in enumerate(("admin", "editor", "reader", "none")):
            expected = permission_matrix.EXPECTED[role][route]
            cell = documented[route][index]
            if isinstance(expected, dict):
                for whose, status in expected.items():
                    assert f"{whose} {status}" in cell, (route, role, cell)
            else:
                assert re.fullmatch(rf"{expected}\b.*", cell), (route, role, cell)


ROUTE_SAMPLES = [
    pytest.param(method, path.replace("{code}", "abcdef").replace("{key}", "0123456789ab"), id=f"{method} {path}")
    for method, path, _ in permission_matrix.ROUTES.values()
] + [pytest.param("GET", "/api/v1/nowhere", id="unknown route under /api"),
     pytest.param("PUT", "/api/v1/links", id="wrong method under /api")]


@pytest.mark.parametrize(("method", "path"), ROUTE_SAMPLES)
@pytest.mark.parametrize("credential", [
    pytest.param({}, id="no-key"),
    pytest.param({"Authorization": "Bearer nonsense"}, id="malformed"),
    pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic-auth"),
    pytest.param({"X-Api-Key": "lg_0123456789ab_" + "0" * 48}, id="unknown-key"),
])
async def test_every_route_under_api_answers_401_without_a_valid_key_and_changes_nothing(
    bare_client, method, path, credential
):
    admin = await make_key(bare_client.app, "the-admin", "admin")
    made = await bare_client.post("/api/v1/links", json={"url": "https://example.com/x", "alias": "abcdef"},
                                  headers=bearer(admin))
    assert made.status_code == 201
    response = await bare_client.request(method, path, json={"url": "https://example.com/y"}, headers=credential)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:linkgate:problem:unauthorized"
    assert response.headers["www-authenticate"] == 'Bearer realm="linkgate"'
    assert (await bare_client.get("/api/v1/links/abcdef", headers=bearer(admin))).json() == made.json()


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/abcdef"])
async def test_health_metrics_docs_and_redirects_need_no_key(bare_client, path):
    admin = await make_key(bare_client.app, "the-admin", "admin")
    await bare_client.post("/api/v1/links", json={"url": "https://example.com/x", "alias": "abcdef"},
                           headers=bearer(admin))
    response = await bare_client.get(path)
    assert response.status_code in (200, 302), (path, response.status_code)


@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
async def test_a_key_works_in_either_header(bare_client, header):
    key = await make_key(bare_client.app, "either", "reader")
    value = f"Bearer {key}" if header == "authorization" else key
    assert (await bare_client.get("/api/v1/links", headers={header: value})).status_code == 200


async def test_a_role_lacking_the_permission_gets_403_problem_naming_the_role(bare_client):
    key = await make_key(bare_client.app, "just-reading", "reader")
    response = await bare_client.post("/api/v1/links", json={"url": "https://example.com/"}, headers=bearer(key))
    assert response.status_code == 403
    assert response.json()["type"] == "urn:linkgate:problem:forbidden"
    assert "reader" in response.json()["detail"]


CURATOR_POLICY = """
# an editor over every link: reads and changes anyone's, deletes none, manages no keys
p, curator, links, read, any
p, curator, links, update, any
g, curator, editor
"""


async def test_an_operator_adds_a_role_by_editing_the_policy_file_alone(tmp_path, sqlite_url, redis_server):
    policy = tmp_path / "policy.csv"
    policy.write_text(SHIPPED_POLICY.read_text() + CURATOR_POLICY)
    settings = make_settings(sqlite_url, authz_policy_file=str(policy))
    await migrate(sqlite_url)
    async with running_app(settings, fakeredis.FakeAsyncRedis(server=redis_server), role=None) as client:
        editor = await make_key(client.app, "someone", "editor")
        curator = await make_key(client.app, "curator-1", "curator")
        code = (await client.post("/api/v1/links", json={"url": "https://example.com/a"},
                                  headers=bearer(editor))).json()["code"]
        assert (await client.get(f"/api/v1/links/{code}", headers=bearer(curator))).status_code == 200
        changed = await client.patch(f"/api/v1/links/{code}", json={"url": "https://example.com/b"},
                                     headers=bearer(curator))
        assert changed.status_code == 200
        assert changed.json()["updated_by"] == "curator-1"
        # Inherited from editor: it may create links, and delete only its own.
        own = await client.post("/api/v1/links", json={"url": "https://example.com/c"}, headers=bearer(curator))
        assert own.status_code == 201
        assert (await client.delete(f"/api/v1/links/{code}", headers=bearer(curator))).status_code == 404
        assert (await client.delete(f"/api/v1/links/{own.json()['code']}", headers=bearer(curator))).status_code == 204
        assert (await client.get("/api/v1/keys", headers=bearer(curator))).status_code == 403


async def test_a_policy_file_that_does_not_exist_stops_the_start(tmp_path, sqlite_url):
    settings = make_settings(sqlite_url, authz_policy_file=str(tmp_path / "missing.csv"))
    with pytest.raises(ValueError, match="missing.csv"):
        async with running_app(settings, fakeredis.FakeAsyncRedis(), role=None):
            pass


async def test_the_openapi_document_declares_both_schemes_on_every_api_route(bare_client):
    document = (await bare_client.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "description": schemes["bearer"]["description"]}
    assert schemes["apiKey"]["in"] == "header" and schemes["apiKey"]["name"] == "X-Api-Key"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/api/"):
                assert {"bearer": []} in operation["security"] and {"apiKey": []} in operation["security"], path
                assert "401" in operation["responses"], (method, path)
            else:
                assert "security" not in operation, path
    assert not re.search(r"lg_[0-9a-f]{12}_[0-9a-f]{48}", str(document))
