"""Shared browser fixtures: Debian's chromium through Selenium, a running linkgate, a local target server.

The browser is found through two environment variables, ``LINKGATE_TEST_CHROMIUM`` (the browser) and
``LINKGATE_TEST_CHROMEDRIVER`` (its driver); ``.ci/run`` sets both. Unset, the browser tests skip (a
developer's machine without a browser); set, a missing or broken binary fails them, loudly.

Nothing is fetched: the driver is the path given (Selenium Manager never runs), and every name a test
visits resolves locally, the target's through ``--host-resolver-rules``.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.api.test_serve import admin_key, cli_env, free_port, migrate, serve, stop

# The target's host name: resolved to 127.0.0.1 by the browser alone.
TARGET_HOST = "landing.example"
# Phone-sized, so the screenshots show the pages as most visitors see them.
WINDOW = (412, 760)
# A phone's browser: headless chromium says "HeadlessChrome", which the stats rightly count as a bot.
USER_AGENT = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/131.0.0.0 Mobile Safari/537.36")


def _executable(variable: str) -> str | None:
    path = os.environ.get(variable)
    if not path:
        return None
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{variable}={path} is not an executable file")
    return path


@pytest.fixture(scope="session")
def browser_binaries() -> tuple[str, str]:
    chromium, driver = _executable("LINKGATE_TEST_CHROMIUM"), _executable("LINKGATE_TEST_CHROMEDRIVER")
    if chromium is None and driver is None:
        pytest.skip("LINKGATE_TEST_CHROMIUM and LINKGATE_TEST_CHROMEDRIVER are not set")
    if chromium is None or driver is None:
        pytest.fail("set both LINKGATE_TEST_CHROMIUM and LINKGATE_TEST_CHROMEDRIVER, or neither")
    version = subprocess.run([chromium, "--version"], capture_output=True, text=True, timeout=60)
    if version.returncode != 0:
        pytest.fail(f"{chromium} --version failed: {version.stderr.strip()}")
    return chromium, driver


@pytest.fixture(scope="session")
def zbarimg(browser_binaries) -> str:
    """The QR reader: required wherever the browser tests run."""
    path = shutil.which("zbarimg")
    if path is None:
        pytest.fail("zbarimg (Debian zbar-tools) is not installed")
    return path


@dataclass
class TargetServer:
    """An HTTP server standing in for the sites links lead to; it notes every request's path."""

    port: int
    requests: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://{TARGET_HOST}:{self.port}{path}"


@pytest.fixture(scope="session")
def target_server() -> Iterator[TargetServer]:
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.path)
            if self.path == "/favicon.ico":
                self.send_response(204)
                self.end_headers()
                return
            body = b"<!doctype html><html lang=en><title>Landing</title><h1>You have arrived</h1></html>"
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield TargetServer(port=server.server_address[1], requests=seen)
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Linkgate:
    base: str
    headers: dict[str, str]

    def create(self, **fields) -> dict:
        response = httpx.post(f"{self.base}/api/v1/links", json=fields, headers=self.headers, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture(scope="session")
def linkgate(tmp_path_factory, browser_binaries) -> Iterator[Linkgate]:
    """`python -m service serve` on SQLite with the in-process cache and visit consumer."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = cli_env(tmp_path_factory.mktemp("linkgate"), LINKGATE_PUBLIC_BASE_URL=base,
                  LINKGATE_VISITS_FLUSH_SECONDS="0.05")
    migrate(env)
    server = serve(env, port)
    try:
        yield Linkgate(base=base, headers=admin_key(env))
    finally:
        stop(server)


@pytest.fixture
def browser(browser_binaries, target_server):
    """A headless chromium whose console log the test checks at the end (see console_errors)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = browser_binaries
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--no-first-run", "--disable-extensions", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                     f"--user-agent={USER_AGENT}", f"--host-resolver-rules=MAP {TARGET_HOST} 127.0.0.1"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver) -> list[dict]:
    """What the browser's console logged at level SEVERE since the last call (CSP refusals included)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.fixture
def screenshot():
    """`screenshot(driver, name)` saves docs/<name>.png when LINKGATE_SCREENSHOTS names a directory."""
    directory = os.environ.get("LINKGATE_SCREENSHOTS")

    def take(driver, name: str) -> None:
        if directory:
            Path(directory).mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(Path(directory) / f"{name}.png"))

    return take
