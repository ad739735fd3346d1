"""Health, readiness, metrics and logs."""

from __future__ import annotations

import json
import logging
import os

from prometheus_client import REGISTRY

from service.log_writer import LogWriter
from service.observability import configure_logging


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_healthz_answers_while_the_process_runs(client):
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_names_the_failing_check(client):
    assert (await client.get("/readyz")).status_code == 200
    from service.store.sql import Database

    state = client.app.state
    real, dead = state.db, Database.open("postgresql+asyncpg://linkgate@127.0.0.1:1/nowhere")
    state.db = dead
    try:
        response = await client.get("/readyz")
    finally:
        state.db = real
        await dead.close()
    assert response.status_code == 503
    assert response.json()["failing"] == ["sql"]


async def test_readyz_fails_until_migrations_are_at_head(tmp_path):
    import fakeredis

    from tests.support import make_settings, running_app

    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path}/unmigrated.db")
    async with running_app(settings, fakeredis.FakeAsyncRedis(), role=None) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == "not at head"


async def test_metrics_count_requests_by_route_template_and_redirects_by_status(client):
    code = (await client.post("/api/v1/links", json={"url": "https://example.com/"})).json()["code"]
    api_before = sample("linkgate_http_requests_total", method="GET", route="/api/v1/links/{code}", status="200")
    redirects_before = sample("linkgate_redirects_total", status="302")
    await client.get(f"/api/v1/links/{code}")
    await client.get(f"/{code}")
    await client.get(f"/{code}")
    text = (await client.get("/metrics")).text
    assert "linkgate_build_info" in text
    assert f'route="/api/v1/links/{code}"' not in text  # templates, never raw paths
    assert sample("linkgate_http_requests_total", method="GET", route="/api/v1/links/{code}", status="200") == api_before + 1
    assert sample("linkgate_redirects_total", status="302") == redirects_before + 2


async def test_a_head_request_is_counted_as_head(client):
    before = sample("linkgate_http_requests_total", method="HEAD", route="/healthz", status="200")
    get_before = sample("linkgate_http_requests_total", method="GET", route="/healthz", status="200")
    assert (await client.head("/healthz")).status_code == 200
    await client.get("/metrics")
    assert sample("linkgate_http_requests_total", method="HEAD", route="/healthz", status="200") == before + 1
    assert sample("linkgate_http_requests_total", method="GET", route="/healthz", status="200") == get_before


async def test_every_response_carries_a_request_id(client):
    response = await client.get("/api/v1/links", headers={"x-request-id": "trace-42"})
    assert response.headers["x-request-id"] == "trace-42"
    assert (await client.get("/api/v1/links/nosuch")).headers["x-request-id"]


def test_logs_are_one_json_object_per_line_with_the_request_id():
    from service.observability import request_id_var

    read, write = os.pipe()
    writer = LogWriter(write, capacity=100)
    configure_logging("INFO", writer=writer)
    root = logging.getLogger()
    token = request_id_var.set("req-7")
    try:
        logging.getLogger("linkgate.test").info("hello %s", "world")
        assert writer.flush(1.0)
    finally:
        request_id_var.reset(token)
        root.handlers[:] = []
        os.close(write)
    with os.fdopen(read) as pipe:
        record = json.loads(pipe.read().strip())
    assert record["message"] == "hello world"
    assert record["level"] == "INFO"
    assert record["request_id"] == "req-7"
    assert "timestamp" in record


async def test_readyz_can_tolerate_shared_dependencies_for_the_kubernetes_probe(client):
    from service.store.sql import Database

    state = client.app.state
    real, dead = state.db, Database.open("postgresql+asyncpg://linkgate@127.0.0.1:1/nowhere")
    state.db = dead
    try:
        response = await client.get("/readyz", params={"tolerate": "sql,redis"})
    finally:
        state.db = real
        await dead.close()
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["failing"] == ["sql"]


async def test_readyz_stays_ready_when_a_newer_release_already_migrated(client):
    from sqlalchemy import text

    engine = client.app.state.db.engine
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = 'from-a-newer-release'"))
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["migrations"] == "ok"


def test_audit_lines_are_json_with_the_audit_fields_and_the_request_id():
    import json as json_module
    import logging

    from service.observability import configure_logging

    lines: list[str] = []

    class Collect:
        def write(self, line: str) -> None:
            lines.append(line)

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    audit = logging.getLogger("linkgate.audit")
    try:
        configure_logging("INFO", writer=Collect())
        audit.info("link.created", extra={"event": "link.created", "code": "abc", "key_id": "0123456789ab",
                                          "key_name": 'odd "name"', "request_id": "req-1"})
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
        audit.handlers[:] = []
        audit.propagate = True
    line = json_module.loads(lines[-1])
    assert line == {"timestamp": line["timestamp"], "level": "INFO", "logger": "linkgate.audit",
                    "message": "link.created", "request_id": "req-1", "event": "link.created", "code": "abc",
                    "key_id": "0123456789ab", "key_name": 'odd "name"'}


def _raw_post(app, authorization: bytes) -> dict:
    """An ASGI scope of POST /api/v1/links with a key and a JSON body announced."""
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/api/v1/links", "raw_path": b"/api/v1/links", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"test"), (b"authorization", authorization),
                    (b"content-type", b"application/json"), (b"content-length", b"34")],
        "client": ("127.0.0.1", 5555), "server": ("test", 80), "app": app, "state": {},
    }


async def test_a_client_that_left_before_the_answer_is_counted_and_logged_as_499_not_blamed_for_its_body(
    settings, redis_server,
):
    # The client closed its connection while the request waited (here: before its body was read).
    # The app then answers 400 "error parsing the body" to nobody; the metrics and the access
    # line must say the client left (499), not that it sent a bad body.
    import fakeredis

    from tests.support import migrate, running_app

    await migrate(settings.database_url)
    logged = settings.model_copy(update={"access_log": True})
    async with running_app(logged, fakeredis.FakeAsyncRedis(server=redis_server)) as client:
        app = client.app
        lines: list[str] = []
        access_log = app.access_log
        real_write, access_log.write = access_log.write, lines.append
        statuses = ("201", "400", "499", "500")
        before = {s: sample("linkgate_http_requests_total", method="POST", route="/api/v1/links", status=s)
                  for s in statuses}

        async def gone():
            return {"type": "http.disconnect"}

        async def nowhere(message) -> None:
            pass

        try:
            await app(_raw_post(app, client.headers["authorization"].encode()), gone, nowhere)
        finally:
            access_log.write = real_write
    counted = {s: sample("linkgate_http_requests_total", method="POST", route="/api/v1/links", status=s) - before[s]
               for s in statuses}
    assert counted == {"201": 0, "400": 0, "499": 1, "500": 0}
    [line] = [json.loads(text) for text in lines if '"route": "/api/v1/links"' in text]
    assert (line["status"], line["method"], line["path"]) == (499, "POST", "/api/v1/links")


async def test_a_client_that_stays_keeps_the_status_of_its_answer(client):
    # The same raw request with its body delivered: a create, counted as the 201 it was.
    app = client.app
    before = sample("linkgate_http_requests_total", method="POST", route="/api/v1/links", status="201")
    body = b'{"url": "https://example.com/stay"}'
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        return {"type": "http.disconnect"}  # asked again only once the answer went out

    async def send(message) -> None:
        sent.append(message)

    scope = _raw_post(app, client.headers["authorization"].encode())
    scope["headers"] = [(k, str(len(body)).encode() if k == b"content-length" else v) for k, v in scope["headers"]]
    await app(scope, receive, send)
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [201]
    assert sample("linkgate_http_requests_total", method="POST", route="/api/v1/links", status="201") == before + 1
