"""`python -m service serve|migrate` as an operator runs them: real processes, real sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_env(tmp_path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINKGATE_")}
    env.update({
        "LINKGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/serve.db",
        "LINKGATE_HASHIDS_SALT": "serve-test",
        "LINKGATE_LOG_LEVEL": "warning",
    })
    env.update(extra)
    return env


def migrate(env: dict[str, str]) -> None:
    migrated = subprocess.run([sys.executable, "-m", "service", "migrate"], env=env, capture_output=True, text=True)
    assert migrated.returncode == 0, migrated.stderr


def serve(env: dict[str, str], port: int, **popen) -> subprocess.Popen:
    """`python -m service serve` on the port, once /readyz answers 200."""
    server = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port), "--graceful-timeout", "5"], env=env, **popen
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        assert server.poll() is None, f"server exited with {server.returncode}"
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.1)


def admin_key(env: dict[str, str]) -> dict[str, str]:
    """Headers with a new admin key, made as an operator makes one (the CLI)."""
    key = subprocess.run([sys.executable, "-m", "service", "create-key", "--name", f"ops-{time.monotonic_ns()}",
                          "--role", "admin"], env=env, capture_output=True, text=True, check=True).stdout.strip()
    return {"Authorization": f"Bearer {key}"}


def stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.kill()
        server.wait()


def test_migrate_then_serve_answers_and_sigterm_shuts_down_gracefully(tmp_path):
    env = cli_env(tmp_path, LINKGATE_LOG_LEVEL="info")
    migrate(env)
    port = free_port()
    server = serve(env, port, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        code = httpx.post(f"{base}/api/v1/links", json={"url": "https://example.com/"},
                          headers=admin_key(env)).json()["code"]
        assert httpx.get(f"{base}/{code}").headers["location"] == "https://example.com/"
        server.send_signal(signal.SIGTERM)
        # uvicorn finishes in-flight requests, runs the lifespan shutdown, then
        # re-raises the signal so the exit status still says SIGTERM.
        assert server.wait(timeout=10) in (0, -signal.SIGTERM)
        output = server.stdout.read()
        assert "Application shutdown complete" in output, output
    finally:
        stop(server)


def test_a_stdout_nobody_reads_never_stalls_a_redirect_and_the_lost_lines_are_counted(tmp_path):
    env = cli_env(tmp_path, LINKGATE_LOG_LEVEL="info", LINKGATE_ACCESS_LOG="true", LINKGATE_LOG_BUFFER_LINES="200")
    migrate(env)
    port = free_port()
    # A pipe nobody reads: it fills (64 KiB, a few hundred lines), then the buffer does.
    server = serve(env, port, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5, headers=admin_key(env)) as client:
            code = client.post("/api/v1/links", json={"url": "https://example.com/"}).json()["code"]
            slowest = 0.0
            for _ in range(2_000):
                started = time.perf_counter()
                response = client.get(f"/{code}")
                slowest = max(slowest, time.perf_counter() - started)
                assert response.status_code == 302
            # A correctness bound, not a speed target: a blocked write() would hang here for good.
            assert slowest < 1.0
            metrics = client.get("/metrics").text
        dropped = next(
            float(line.split()[-1]) for line in metrics.splitlines()
            if line.startswith("linkgate_log_lines_dropped_total ")
        )
        assert dropped > 1_000
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        # Bounded flushes (lifespan, then exit): a stalled stdout does not hold the shutdown.
        assert server.wait(timeout=15) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 10
    finally:
        stop(server)


def test_sigterm_right_after_a_burst_loses_no_access_line(tmp_path):
    env = cli_env(tmp_path, LINKGATE_LOG_LEVEL="info", LINKGATE_ACCESS_LOG="true")
    migrate(env)
    port = free_port()
    read, write = os.pipe()
    chunks: list[bytes] = []

    def drain() -> None:
        while chunk := os.read(read, 1 << 16):
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    server = serve(env, port, stdout=write, stderr=subprocess.DEVNULL)
    os.close(write)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5, headers=admin_key(env)) as client:
            code = client.post("/api/v1/links", json={"url": "https://example.com/"}).json()["code"]
            ids = [client.get(f"/{code}").headers["x-request-id"] for _ in range(500)]
            ids.append(client.get("/api/v1/links", headers={"x-request-id": "api-call-1"}).headers["x-request-id"])
        server.send_signal(signal.SIGTERM)  # at once: lines of the last requests are still buffered
        assert server.wait(timeout=15) in (0, -signal.SIGTERM)
        reader.join(timeout=10)
        lines = [json.loads(line) for line in b"".join(chunks).decode().splitlines()]
    finally:
        stop(server)
        os.close(read)
    access = [line for line in lines if line["logger"] == "linkgate.access"]
    assert [line["request_id"] for line in access if line["method"] == "GET"][-501:] == ids
    redirect = next(line for line in access if line["route"] == "/{code}")
    assert (redirect["status"], redirect["path"], redirect["message"]) == (302, f"/{code}", f"GET /{code} 302")
    assert redirect["duration_ms"] >= 0
    api = next(line for line in access if line["request_id"] == "api-call-1")
    assert (api["route"], api["status"]) == ("/api/v1/links", 200)
    assert "Application shutdown complete." in [line["message"] for line in lines]


def test_serve_refuses_several_workers_without_a_shared_redis(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--workers", "2"],
        env=cli_env(tmp_path), capture_output=True, text=True, timeout=30,
    )
    assert result.returncode != 0
    assert "LINKGATE_REDIS_URL" in result.stderr


def test_production_refuses_to_start_without_a_salt(tmp_path):
    env = cli_env(tmp_path, LINKGATE_ENV="production")
    del env["LINKGATE_HASHIDS_SALT"]
    result = subprocess.run([sys.executable, "-m", "service", "serve"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "LINKGATE_HASHIDS_SALT" in result.stderr


def test_warm_cache_needs_a_shared_redis(tmp_path):
    result = subprocess.run([sys.executable, "-m", "service", "warm-cache"], env=cli_env(tmp_path),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "LINKGATE_REDIS_URL" in result.stderr


def _start(env, port) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port), "--graceful-timeout", "5"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server did not become ready"
        assert server.poll() is None, server.stdout.read()
        time.sleep(0.1)


def test_the_embedded_default_folds_every_visit_before_it_exits_on_sigterm(tmp_path):
    """`make run`'s Redis lives in the process: stopped right after a burst, no visit may be lost."""
    env = cli_env(tmp_path)
    assert subprocess.run([sys.executable, "-m", "service", "migrate"], env=env, capture_output=True).returncode == 0
    key = subprocess.run([sys.executable, "-m", "service", "create-key", "--name", "ops", "--role", "admin"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    auth = {"Authorization": f"Bearer {key}"}
    port = free_port()
    server = _start(env, port)
    try:
        base = f"http://127.0.0.1:{port}"
        code = httpx.post(f"{base}/api/v1/links", json={"url": "https://example.com/"}, headers=auth).json()["code"]
        browser = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"}
        with httpx.Client(base_url=base, headers=browser) as visitor:
            answers = [visitor.get(f"/{code}").status_code for _ in range(400)]
        assert answers == [302] * 400
        server.send_signal(signal.SIGTERM)  # at once: most visits are still in the process
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    server = _start(env, port)
    try:
        stats = httpx.get(f"http://127.0.0.1:{port}/api/v1/links/{code}/stats", headers=auth).json()
        assert stats["total"]["visits"] == 400, stats["total"]
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/links/{code}", headers=auth).json()["visits"] == 400
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
