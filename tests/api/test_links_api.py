"""The REST API of links, on SQLite + fakeredis, through httpx."""

from __future__ import annotations

import asyncio
import base64

import pytest

PROBLEM = "application/problem+json"


async def create(client, **body):
    body.setdefault("url", "https://example.com/landing")
    return await client.post("/api/v1/links", json=body)


async def test_create_answers_201_with_the_link_and_its_location(client):
    response = await create(client, url="https://example.com/a?x=1")
    assert response.status_code == 201
    body = response.json()
    assert body["url"] == "https://example.com/a?x=1"
    assert body["redirect_status"] == 302
    assert body["short_url"] == f"https://sho.rt/{body['code']}"
    assert len(body["code"]) >= 6
    assert body["created_at"].endswith("Z")
    assert response.headers["location"] == f"/api/v1/links/{body['code']}"


async def test_generated_codes_are_hashids_of_the_row_id(client):
    codes = [(await create(client)).json()["code"] for _ in range(3)]
    codec = client.app.state.links.codec
    assert [codec.decode(code) for code in codes] == [1, 2, 3]


async def test_get_answers_the_same_shape_as_create(client):
    created = (await create(client, alias="my-link", redirect_status=308)).json()
    response = await client.get("/api/v1/links/my-link")
    assert response.status_code == 200
    assert response.json() == created


async def test_unknown_code_answers_404_problem_json(client):
    response = await client.get("/api/v1/links/nosuch")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"] == "urn:linkgate:problem:link-not-found"
    assert body["status"] == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"url": "ftp://example.com/x"}, "url", id="scheme-not-allowed"),
        pytest.param({"url": "https://bank.com@evil.example/"}, "url", id="userinfo"),
        pytest.param({"url": "https://sho.rt/abc"}, "url", id="own-host-loops"),
        pytest.param({"url": "http://10.0.0.1/admin"}, "url", id="private-ip"),
        pytest.param({"url": "https://example.com/" + "a" * 5000}, "url", id="too-long"),
        pytest.param({"url": "https://example.com", "alias": "ab"}, "alias", id="alias-too-short"),
        pytest.param({"url": "https://example.com", "alias": "docs"}, "alias", id="alias-reserved"),
        pytest.param({"url": "https://example.com", "alias": "a b c"}, "alias", id="alias-bad-chars"),
        pytest.param({"url": "https://example.com", "redirect_status": 303}, "redirect_status", id="status-303"),
        pytest.param({"url": 42}, "url", id="url-not-text"),
        pytest.param({}, "url", id="url-missing"),
        pytest.param({"url": "https://example.com", "colour": "red"}, "colour", id="unknown-field"),
    ],
)
async def test_bad_create_answers_422_naming_the_field(client, body, field):
    response = await client.post("/api/v1/links", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == "urn:linkgate:problem:invalid-input"
    assert any(error["field"].startswith(field) for error in problem["errors"]), problem


async def test_malformed_json_answers_422_not_500(client):
    response = await client.post(
        "/api/v1/links", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_a_body_that_is_not_utf8_answers_a_documented_400_problem(client, method):
    await create(client, alias="kept-link")
    response = await client.request(
        method, "/api/v1/links" if method == "POST" else "/api/v1/links/kept-link",
        content=b'{"url": "\xff"}', headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "urn:linkgate:problem:bad-request"
    path = "/api/v1/links" if method == "POST" else "/api/v1/links/{code}"
    document = (await client.get("/openapi.json")).json()
    assert "400" in document["paths"][path][method.lower()]["responses"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        pytest.param("PUT", "/api/v1/links", {"GET", "HEAD", "POST"}, id="collection"),
        pytest.param("OPTIONS", "/api/v1/links", {"GET", "HEAD", "POST"}, id="collection-options"),
        pytest.param("POST", "/api/v1/links/some-code", {"GET", "HEAD", "PATCH", "DELETE"}, id="one-link"),
        pytest.param("DELETE", "/healthz", {"GET", "HEAD"}, id="probe"),
    ],
)
async def test_an_unsupported_method_answers_405_allowing_every_method_of_the_path(
    client, method, path, allowed
):
    response = await client.request(method, path)
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/api/v1/links",
                                  "/api/v1/links/{code}", "/api/v1/links/unknown-code"])
async def test_head_answers_what_get_answers_without_the_body(client, path):
    code = (await create(client)).json()["code"]
    path = path.replace("{code}", code)
    get, head = await client.get(path), await client.head(path)
    assert head.status_code == get.status_code
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    if "content-length" in get.headers and path != "/metrics":  # metrics move between the two
        assert head.headers["content-length"] == get.headers["content-length"]


async def test_alias_that_decodes_as_a_generated_code_is_refused(client):
    future_code = client.app.state.links.codec.encode(1000)
    response = await create(client, alias=future_code)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "alias"


async def test_taken_alias_answers_409(client):
    assert (await create(client, alias="launch")).status_code == 201
    response = await create(client, alias="launch", url="https://other.example/")
    assert response.status_code == 409
    assert response.json()["type"] == "urn:linkgate:problem:alias-taken"


async def test_racing_creates_of_one_alias_give_one_201_and_the_rest_409(client):
    responses = await asyncio.gather(
        *(create(client, alias="race", url=f"https://example.com/{i}") for i in range(20))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 19


async def test_list_is_newest_first_with_keyset_pagination(client):
    made = [(await create(client, url=f"https://example.com/{i}")).json()["code"] for i in range(7)]
    seen, cursor = [], None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/api/v1/links", params=params)).json()
        assert len(page["data"]) <= 3
        seen += [link["code"] for link in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))


async def test_list_limit_is_capped(client, settings):
    response = await client.get("/api/v1/links", params={"limit": settings.list_max_limit + 1})
    assert response.status_code == 422


async def test_list_refuses_a_forged_cursor(client):
    response = await client.get("/api/v1/links", params={"cursor": "bm90LWEtY3Vyc29y"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "cursor"


@pytest.mark.parametrize(
    "row_id", [2**63, 10**30], ids=["just-past-bigint", "far-past-bigint"]
)
async def test_list_refuses_a_cursor_past_any_row_id_with_422_not_500(client, row_id):
    await create(client)
    cursor = base64.urlsafe_b64encode(f"id:{row_id}".encode()).decode().rstrip("=")
    response = await client.get("/api/v1/links", params={"cursor": cursor})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"][0]["field"] == "cursor"


async def test_list_takes_a_cursor_at_the_largest_row_id(client):
    created = (await create(client)).json()
    cursor = base64.urlsafe_b64encode(f"id:{2**63 - 1}".encode()).decode().rstrip("=")
    response = await client.get("/api/v1/links", params={"cursor": cursor})
    assert response.status_code == 200
    assert [link["code"] for link in response.json()["data"]] == [created["code"]]


async def test_patch_changes_url_and_status_and_the_next_redirect_uses_them(client):
    code = (await create(client, url="https://old.example/")).json()["code"]
    assert (await client.get(f"/{code}")).headers["location"] == "https://old.example/"
    response = await client.patch(
        f"/api/v1/links/{code}", json={"url": "https://new.example/", "redirect_status": 307}
    )
    assert response.status_code == 200
    assert response.json()["url"] == "https://new.example/"
    redirect = await client.get(f"/{code}")
    assert redirect.status_code == 307
    assert redirect.headers["location"] == "https://new.example/"


async def test_patch_validates_like_create(client):
    code = (await create(client)).json()["code"]
    response = await client.patch(f"/api/v1/links/{code}", json={"url": "javascript:alert(1)"})
    assert response.status_code == 422
    assert (await client.get(f"/api/v1/links/{code}")).json()["url"] == "https://example.com/landing"


@pytest.mark.parametrize("body", [{"url": None}, {"redirect_status": None}], ids=["null-url", "null-status"])
async def test_patch_refuses_null_for_required_fields(client, body):
    code = (await create(client)).json()["code"]
    response = await client.patch(f"/api/v1/links/{code}", json=body)
    assert response.status_code == 422


async def test_patch_of_unknown_code_answers_404(client):
    response = await client.patch("/api/v1/links/nosuch", json={"redirect_status": 301})
    assert response.status_code == 404


async def test_delete_answers_204_then_the_api_404_the_redirect_410_and_the_code_is_never_reused(client):
    code = (await create(client, alias="gone-soon")).json()["code"]
    generated = (await create(client)).json()["code"]
    assert (await client.get("/gone-soon")).status_code == 302
    for victim in (code, generated):
        assert (await client.delete(f"/api/v1/links/{victim}")).status_code == 204
        assert (await client.get(f"/api/v1/links/{victim}")).status_code == 404
        assert (await client.get(f"/{victim}")).status_code == 410  # gone, not "never existed"
        assert (await client.delete(f"/api/v1/links/{victim}")).status_code == 404
    assert (await create(client, alias="gone-soon")).status_code == 409
    fresh = [(await create(client)).json()["code"] for _ in range(3)]
    assert generated not in fresh


async def test_openapi_document_lists_the_link_routes(client):
    spec = (await client.get("/openapi.json")).json()
    assert {"/api/v1/links", "/api/v1/links/{code}"} <= set(spec["paths"])
    assert (await client.get("/docs")).status_code == 200


async def test_openapi_documents_every_error_as_problem_json_that_the_api_really_sends(client):
    spec = (await client.get("/openapi.json")).json()
    problem = {"$ref": "#/components/schemas/Problem"}
    documented = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if int(status) >= 400 and "content" in answer:
                    assert answer["content"] == {"application/problem+json": {"schema": problem}}, (method, path)
                    documented[(method, path, int(status))] = True
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert ("post", "/api/v1/links", 409) in documented
    assert ("get", "/api/v1/links/{code}", 404) in documented
    # What the API sends on an error has the documented fields.
    required = set(spec["components"]["schemas"]["Problem"]["required"])
    for response in (
        await client.get("/api/v1/links/nope"),
        await client.post("/api/v1/links", json={"url": "ftp://x"}),
    ):
        assert response.headers["content-type"] == "application/problem+json"
        assert required <= set(response.json())


async def test_bulk_create_stores_links_that_redirect_and_clears_cached_misses_of_their_codes(client):
    state = client.app.state
    future_code = state.links.codec.encode(8)
    assert (await client.get(f"/{future_code}")).status_code == 404  # a cached miss now
    state.redirector.forget_all()
    codes = await state.links.bulk_create([f"https://example.com/bulk/{i}" for i in range(50)])
    assert len(set(codes)) == 50
    assert [state.links.codec.decode(code) for code in codes] == list(range(1, 51))
    assert not any([await state.cache.redis.exists(state.cache.key(code)) for code in codes])
    assert (await client.get(f"/{future_code}")).headers["location"] == "https://example.com/bulk/7"
    response = await client.get(f"/{codes[7]}")
    assert response.headers["location"] == "https://example.com/bulk/7"
    single = (await create(client)).json()["code"]
    assert client.app.state.links.codec.decode(single) == 51


async def test_bulk_create_refuses_the_whole_batch_if_one_url_breaks_a_rule(client):
    from service.errors import InvalidInput

    with pytest.raises(InvalidInput):
        await client.app.state.links.bulk_create(["https://example.com/ok", "http://127.0.0.1/"])
    assert (await client.get("/api/v1/links")).json()["data"] == []


async def test_concurrent_creates_each_get_their_own_code_and_url(client):
    bodies = [
        {"url": f"https://example.com/c/{i}"} | ({"query": {"mode": "drop"}} if i % 3 == 0 else {})
        for i in range(60)
    ]
    responses = await asyncio.gather(*(client.post("/api/v1/links", json=b) for b in bodies))
    assert all(r.status_code == 201 for r in responses)
    links = [r.json() for r in responses]
    assert len({link["code"] for link in links}) == 60
    for body, link in zip(bodies, links, strict=True):
        assert link["url"] == body["url"]
        assert link["query"] == ({"mode": "drop", "allow": [], "deny": [], "on_conflict": "target", "add": {}}
                                 if "query" in body else None)
        stored = (await client.get(f"/api/v1/links/{link['code']}")).json()
        assert stored == link
        assert (await client.get(f"/{link['code']}?x=1")).headers["location"] == (
            body["url"] if "query" in body else body["url"] + "?x=1"
        )


async def test_an_oversized_body_answers_413_problem_without_being_read_whole(client):
    body = b'{"url": "https://example.com/' + b"a" * (200 * 1024) + b'"}'
    response = await client.post("/api/v1/links", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert (await client.get("/api/v1/links")).json()["data"] == []


async def test_warm_cache_writes_the_newest_links_to_redis_so_visits_skip_sql(client):
    from sqlalchemy import event

    state = client.app.state
    codes = await state.links.bulk_create([f"https://example.com/warm/{i}" for i in range(30)])
    assert (await client.delete(f"/api/v1/links/{codes[-1]}")).status_code == 204
    assert await state.links.warm_cache(10, chunk=4) == 10
    newest_live = codes[-11:-1]
    assert all([await state.cache.redis.exists(state.cache.key(code)) for code in newest_live])
    assert not await state.cache.redis.exists(state.cache.key(codes[0]))
    selects: list[str] = []
    # Lookups of links only: the app's own background work (the visit consumer, the outbox
    # relay) may query other tables at any moment.
    event.listen(state.db.engine.sync_engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: "FROM links" in statement and selects.append(statement))
    state.redirector.forget_all()
    assert (await client.get(f"/{newest_live[0]}")).headers["location"] == "https://example.com/warm/19"
    assert selects == []
