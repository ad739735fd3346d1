"""Fuzz the REST API against its own OpenAPI document (schemathesis + hypothesis).

The promise under test: whatever a client sends, the API answers a success
that matches the document or a clear 4xx (RFC 9457 problem JSON), never a 5xx,
and never loses or corrupts a link it was not asked to change.

Schemathesis turns the document into hypothesis strategies (requests valid by
the schema, and requests that break it) and checks each answer against the
document. The requests go through httpx to the app in-process, its lifespan
running on a migrated SQLite file and in-process fakeredis, all on one anyio
portal's event loop, so the tests themselves stay synchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.provisional import urls
from schemathesis import GenerationMode
from schemathesis.checks import ignored_auth, positive_data_acceptance

from service.app import create_app
from service.query_filter import FilterLimits, QueryPolicy, compile_filter
from tests.support import make_settings, migrate, running_app

PROBLEM = "application/problem+json"
LINKS = "/api/v1/links"

# Fixed examples and no example database, so CI runs the same requests every time.
FUZZ = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)

# A value valid by the schema is not always valid by the rules (a private IP,
# a reserved alias): those answer 422, so "positive data is accepted" does not hold.
# The admin key the client adds to requests without credentials of their own
# looks generated to schemathesis's ignored_auth; requests with generated
# credentials are sent without it and must answer 401 (Api.send), and
# tests/api/test_permissions.py covers every route without a key.
EXCLUDED_CHECKS = [positive_data_acceptance, ignored_auth]
AUTH_HEADERS = {"authorization", "x-api-key"}


@functools.cache
def api_schema() -> schemathesis.BaseSchema:
    """The OpenAPI document the app serves at /openapi.json (building it opens no connection)."""
    app = create_app(make_settings("sqlite+aiosqlite://"), configure_logs=False)
    return schemathesis.openapi.from_dict(app.openapi())


def _can_be_broken(operation: dict) -> bool:
    """Whether the document constrains anything a request sends, so that a request can break it.

    A plain string (a path code, ``?tolerate=``) takes any value; an operation
    with nothing else has no invalid request to generate.
    """
    if "requestBody" in operation:
        return True
    plain = ({"type": "string"}, {"anyOf": [{"type": "string"}, {"type": "null"}]})
    return any(
        {key: value for key, value in parameter["schema"].items() if key not in ("title", "description")}
        not in plain
        for parameter in operation.get("parameters", [])
    )


# Creating and changing links have tests of their own below, which also check
# what was stored; every other operation the document lists is fuzzed here.
WRITES = {("POST", LINKS), ("PATCH", f"{LINKS}/{{code}}")}
OPERATIONS = [
    pytest.param(method.upper(), path, mode, id=f"{method.upper()} {path} {mode}")
    for path, methods in api_schema().raw_schema["paths"].items()
    for method, operation in methods.items()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if (method.upper(), path) not in WRITES and (mode is GenerationMode.POSITIVE or _can_be_broken(operation))
]


class Api:
    """A blocking client for the running app: each request runs on the portal's event loop."""

    def __init__(self, portal: BlockingPortal, client: httpx.AsyncClient, bare: httpx.AsyncClient) -> None:
        self._portal = portal
        self._client = client
        self._bare = bare  # the same app, sending no key of its own

    def request(self, method: str, url: str, **kwargs) -> httpx.Response:
        return self._portal.call(functools.partial(self._client.request, method, url, **kwargs))

    def get(self, url: str, **kwargs) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    @property
    def settings(self):
        return self._client.app.state.settings  # type: ignore[attr-defined]

    def send(self, case: schemathesis.Case) -> httpx.Response:
        """The generated request, as schemathesis would send it with requests."""
        kwargs = case.as_transport_kwargs(base_url=str(self._client.base_url))
        kwargs.pop("cookies", None)  # the API reads none; httpx takes cookies per client only
        if isinstance(kwargs.get("data"), (bytes, str)):
            kwargs["content"] = kwargs.pop("data")
        headers = dict(kwargs.pop("headers", None) or {})
        if AUTH_HEADERS & {name.lower() for name in headers}:
            # Credentials schemathesis made up: sent alone, they must not get in.
            response = self._portal.call(functools.partial(
                self._bare.request, kwargs.pop("method"), kwargs.pop("url"), headers=headers, **kwargs
            ))
            assert response.status_code in (401, 429), f"made-up credentials got {response.status_code}"
            return response
        return self.request(kwargs.pop("method"), kwargs.pop("url"), headers=headers, **kwargs)


@contextlib.contextmanager
def serving(directory: Path) -> Iterator[Api]:
    """The app on a migrated SQLite file and in-process fakeredis, its lifespan running."""
    database_url = f"sqlite+aiosqlite:///{directory}/linkgate.db"
    asyncio.run(migrate(database_url))
    # Without a Redis URL the lifespan opens fakeredis itself, on the portal's loop.
    # Tracking off: a link's `visits` grows (eventually) with every redirect the
    # checks make, and these tests compare links as they were answered; the
    # stats routes are fuzzed all the same (tests/api/test_stats.py counts visits).
    settings = make_settings(database_url, redis_url=None, rate_limit_per_address="off", tracking=False)
    with start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(running_app(settings, None)) as client:
            bare = httpx.AsyncClient(transport=client._transport, base_url=client.base_url)
            try:
                yield Api(portal, client, bare)
            finally:
                portal.call(bare.aclose)


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[Api]:
    with serving(tmp_path_factory.mktemp("fuzz")) as api:
        yield api


def unguessable_alias() -> str:
    return "fz" + secrets.token_hex(19)


@dataclass(frozen=True)
class Sentinel:
    """A link no generated request can name, as the API showed it before any fuzzing."""

    code: str
    stored: dict
    redirect_status: int
    location: str


def _observe(api: Api, code: str) -> Sentinel:
    stored = api.get(f"{LINKS}/{code}")
    assert stored.status_code == 200, stored.text
    redirect = api.get(f"/{code}?utm_source=fuzz&x=1")
    return Sentinel(code, stored.json(), redirect.status_code, redirect.headers.get("location", ""))


@pytest.fixture(scope="module")
def sentinels(api) -> tuple[Sentinel, ...]:
    """One link under a random 40-character alias, one with a generated code, with a query policy."""
    made = api.post(LINKS, json={
        "url": "https://example.com/kept?lang=en", "alias": unguessable_alias(), "redirect_status": 308,
        "query": {"allow": ["utm_*"], "add": {"src": "sentinel"}},
    })
    assert made.status_code == 201, made.text
    generated = api.post(LINKS, json={"url": "https://example.org/also/kept"})
    assert generated.status_code == 201, generated.text
    return _observe(api, made.json()["code"]), _observe(api, generated.json()["code"])


def assert_sentinels_unchanged(api: Api, sentinels: tuple[Sentinel, ...]) -> None:
    for sentinel in sentinels:
        assert _observe(api, sentinel.code) == sentinel


def assert_answer_is_clear(response: httpx.Response) -> None:
    """Never a 5xx; every 4xx is RFC 9457 problem JSON with type, title, status and detail."""
    request = response.request
    assert response.status_code < 500, f"{request.method} {request.url}: {response.text}"
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type", "")
    assert content_type.split(";")[0].strip() == PROBLEM, f"{response.status_code} as {content_type!r}"
    body = response.json()
    missing = {"type", "title", "status", "detail"} - body.keys()
    assert not missing, f"problem without {sorted(missing)}: {body}"
    assert body["status"] == response.status_code, body
    assert body["type"].startswith("urn:linkgate:problem:"), body


def assert_redirects_as_stored(api: Api, link: dict) -> None:
    """The redirect, through whichever cache holds the link, answers what the API shows."""
    redirect = api.get(f"/{link['code']}")
    answer = (redirect.status_code, redirect.headers.get("location"))
    if link["status"] == "scheduled":
        assert answer == (404, None)  # not public yet
        return
    if link["status"] != "active":
        assert answer == ((302, link["fallback_url"]) if link["fallback_url"] else (410, None))
        return
    if link["password_protected"]:
        assert answer == (200, None)  # the password form: the target only once the password is right
        return
    policy = QueryPolicy(**link["query"]) if link["query"] is not None else None
    expected = compile_filter(policy, FilterLimits.from_settings(api.settings)).apply(link["url"], "")[0]
    if link["max_visits"] is not None and answer[0] in (302, 410):
        # A limited link may have been used up by earlier checks of this very test.
        assert answer in ((link["redirect_status"], expected), (410, None), (302, link["fallback_url"]))
        return
    assert answer == (link["redirect_status"], expected)


@pytest.mark.parametrize(("method", "path", "mode"), OPERATIONS)
def test_any_request_gets_a_documented_answer_never_a_5xx_and_leaves_other_links_alone(
    api, sentinels, method, path, mode
):
    @FUZZ
    @given(case=api_schema()[path][method].as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        response = api.send(case)
        assert_answer_is_clear(response)
        case.validate_response(response, excluded_checks=EXCLUDED_CHECKS)
        if method != "GET":  # a write is where a stray change would come from: pin it to its example
            assert_sentinels_unchanged(api, sentinels)

    check()
    assert_sentinels_unchanged(api, sentinels)


@pytest.mark.parametrize("path", list(api_schema().raw_schema["paths"]))
def test_an_undocumented_method_answers_405_problem_json_allowing_exactly_the_documented_ones(api, path):
    concrete = re.sub(r"\{[^}]+\}", "0123456789ab", path)
    # Every template that serves this path (/api/v1/links/batch is also /api/v1/links/{code}).
    documented = {
        method.upper()
        for template, methods in api_schema().raw_schema["paths"].items()
        if re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)), concrete)
        for method in methods
    }
    # HEAD is served wherever GET is (RFC 9110); the document does not repeat every GET as HEAD.
    allowed = documented | ({"HEAD"} if "GET" in documented else set())
    for method in {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} - allowed:
        response = api.request(method, concrete)
        assert response.status_code == 405, (method, response.text)
        assert_answer_is_clear(response)
        assert {m.strip() for m in response.headers["allow"].split(",")} == allowed, method


# Targets the service may accept or refuse. A valid generated body gets one of
# them half the time, so the write paths succeed often enough to be checked too.
TARGETS = st.one_of(
    st.sampled_from([
        "https://example.com/",
        "https://example.com/a b?q=1&q=2#frag",
        "HTTPS://Bücher.Example/straße?x=ä",
        "https://example.com/search?",
        "http://example.net:8080/p;x?y=1#",
        "https://example.com/%zz%",
        "http://127.0.0.1/admin",
        "https://sho.rt/loop",
        "javascript:alert(1)",
    ]),
    urls(),
)


def targets_for(mode: GenerationMode) -> st.SearchStrategy[str | None]:
    # A request that breaks the schema keeps its broken body: a target put in
    # could mend it, and then the API would rightly accept it.
    return st.none() | TARGETS if mode is GenerationMode.POSITIVE else st.none()


def _with_target(case: schemathesis.Case, target: str | None) -> None:
    if target is not None and isinstance(case.body, dict):
        case.body = {**case.body, "url": target}


def newest_link(api: Api) -> dict | None:
    page = api.get(f"{LINKS}?limit=1")
    assert page.status_code == 200, page.text
    return next(iter(page.json()["data"]), None)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_a_refused_create_stores_nothing_and_an_accepted_one_reads_back_as_answered(api, sentinels, mode):
    @FUZZ
    @given(case=api_schema()[LINKS]["POST"].as_strategy(generation_mode=mode), target=targets_for(mode))
    def check(case: schemathesis.Case, target: str | None) -> None:
        _with_target(case, target)
        before = newest_link(api)
        response = api.send(case)
        assert_answer_is_clear(response)
        case.validate_response(response, excluded_checks=EXCLUDED_CHECKS)
        if response.status_code == 201:
            link = response.json()
            assert response.headers["location"] == f"{LINKS}/{link['code']}"
            assert newest_link(api) == link
            assert_redirects_as_stored(api, link)
        else:
            assert newest_link(api) == before

    check()
    assert_sentinels_unchanged(api, sentinels)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_a_patch_applies_exactly_what_it_answers_or_changes_nothing(api, sentinels, mode):
    alias = unguessable_alias()
    made = api.post(LINKS, json={"url": "https://example.com/start", "alias": alias})
    assert made.status_code == 201, made.text
    operation = api_schema()[f"{LINKS}/{{code}}"]["PATCH"]

    @FUZZ
    @given(
        case=operation.as_strategy(generation_mode=mode, path_parameters={"code": alias}),
        target=targets_for(mode),
    )
    def check(case: schemathesis.Case, target: str | None) -> None:
        _with_target(case, target)
        before = api.get(f"{LINKS}/{alias}").json()
        response = api.send(case)
        assert_answer_is_clear(response)
        case.validate_response(response, excluded_checks=EXCLUDED_CHECKS)
        after = api.get(f"{LINKS}/{alias}").json()
        if response.status_code == 200:
            assert after == response.json()
            sent = case.body
            for field in ("url", "redirect_status", "query"):
                if field not in sent:
                    assert after[field] == before[field], field
            if "redirect_status" in sent:
                assert after["redirect_status"] == sent["redirect_status"]
            if "query" in sent and sent["query"] is None:
                assert after["query"] is None
            assert (after["code"], after["created_at"]) == (before["code"], before["created_at"])
        else:
            assert after == before
        assert_redirects_as_stored(api, after)

    check()
    assert_sentinels_unchanged(api, sentinels)


def test_any_sequence_of_creates_reads_updates_and_deletes_keeps_what_the_api_acknowledged(tmp_path):
    """Schemathesis chains the operations (a created or listed code is read, patched, deleted);
    every link keeps the last state a 2xx answered for it, and a deleted one stays gone."""
    acknowledged: dict[str, dict | None] = {}  # code -> the link as last answered, None once deleted

    def record(case: schemathesis.Case, response: httpx.Response) -> None:
        assert_answer_is_clear(response)
        code = (case.path_parameters or {}).get("code")
        status = response.status_code
        if code in acknowledged:
            link = acknowledged[code]
            if link is None:
                assert status not in (200, 204), f"{case.method} reached deleted {code}: {response.text}"
            else:
                assert status != 404, f"{case.method} lost live {code}"
            if case.method == "GET" and link is not None and case.path == f"{LINKS}/{{code}}":
                assert response.json() == link
        if case.method == "POST" and status == 201:
            acknowledged[response.json()["code"]] = response.json()
        elif case.method == "PATCH" and status == 200:
            acknowledged[code] = response.json()
        elif case.method == "DELETE" and status == 204:
            acknowledged[code] = None

    def accepted_half_the_time(case: schemathesis.Case) -> None:
        """Half the valid creates get a URL the rules accept, so chains start from them.

        No alias: whether one is taken depends on earlier scenarios, and
        hypothesis needs a scenario to answer the same way every time it runs.
        """
        if case.meta is None or not case.meta.generation.mode.is_positive or not isinstance(case.body, dict):
            return
        body = {name: value for name, value in case.body.items() if name != "alias"}
        if len(repr(body)) % 2 == 0:
            body["url"] = f"https://example.com/made/{len(acknowledged)}"
        case.body = body

    with serving(tmp_path) as api:

        # Links only: a chain through GET /keys could revoke the key the client sends.
        class Workflow(api_schema().include(path_regex=f"^{LINKS}").as_state_machine()):
            def setup(self) -> None:
                # Something for a listing to hand on to GET, PATCH and DELETE.
                made = api.post(LINKS, json={"url": "https://example.com/listed"})
                acknowledged[made.json()["code"]] = made.json()

            def call(self, case: schemathesis.Case, **kwargs) -> schemathesis.Response:
                if case.method == "POST":
                    accepted_half_the_time(case)
                # Made-up credentials are fuzzed per operation above; a chain runs as the admin.
                if case.headers:
                    case.headers = {k: v for k, v in case.headers.items() if k.lower() not in AUTH_HEADERS}
                response = api.send(case)
                record(case, response)
                return schemathesis.Response.from_any(response)

            def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
                case.validate_response(response, excluded_checks=EXCLUDED_CHECKS)

        Workflow.run(settings=settings(FUZZ, max_examples=20, stateful_step_count=6))

        patched_or_deleted = [
            link for link in acknowledged.values() if link is None or link["updated_at"] > link["created_at"]
        ]
        assert patched_or_deleted, "no sequence patched or deleted a link"
        for code, link in acknowledged.items():
            now = api.get(f"{LINKS}/{code}")
            if link is None:
                assert now.status_code == 404, now.text
                assert api.get(f"/{code}").status_code == 410
            else:
                assert now.json() == link
                assert_redirects_as_stored(api, link)
