"""`python -m service serve|migrate` as an operator runs them: real processes, real sockets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
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


def test_migrate_then_serve_answers_and_sigterm_shuts_down_gracefully(tmp_path):
    env = cli_env(tmp_path, LINKGATE_LOG_LEVEL="info")
    migrated = subprocess.run([sys.executable, "-m", "service", "migrate"], env=env, capture_output=True, text=True)
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port), "--graceful-timeout", "5"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            assert server.poll() is None, server.stdout.read()
            time.sleep(0.1)
        key = subprocess.run([sys.executable, "-m", "service", "create-key", "--name", "ops", "--role", "admin"],
                             env=env, capture_output=True, text=True, check=True).stdout.strip()
        code = httpx.post(f"{base}/api/v1/links", json={"url": "https://example.com/"},
                          headers={"Authorization": f"Bearer {key}"}).json()["code"]
        assert httpx.get(f"{base}/{code}").headers["location"] == "https://example.com/"
        server.send_signal(signal.SIGTERM)
        # uvicorn finishes in-flight requests, runs the lifespan shutdown, then
        # re-raises the signal so the exit status still says SIGTERM.
        assert server.wait(timeout=10) in (0, -signal.SIGTERM)
        output = server.stdout.read()
        assert "Application shutdown complete" in output, output
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


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
