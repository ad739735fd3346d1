"""Fixtures of the console's browser test: a served linkgate, a target site, headless Chromium.

The browser is Debian's `chromium` driven by its `chromedriver`, found through
LINKGATE_TEST_CHROMIUM and LINKGATE_TEST_CHROMEDRIVER: unset, the browser
tests skip (a developer's machine without a browser); set to something that
does not run, they fail.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.api.test_serve import admin_key, cli_env, free_port, migrate, serve, stop

VENDOR = Path(__file__).parent / "vendor"
TARGET_HOST = "target.test"
# A desktop Chrome's User-Agent: HeadlessChrome's own is counted as a bot, and bots are left out of the stats.
USER_AGENT = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/131.0.0.0 Safari/537.36")
SERIOUS = ("serious", "critical")


def browser_binaries() -> tuple[str, str]:
    chromium, driver = os.environ.get("LINKGATE_TEST_CHROMIUM"), os.environ.get("LINKGATE_TEST_CHROMEDRIVER")
    if not chromium and not driver:
        pytest.skip("LINKGATE_TEST_CHROMIUM and LINKGATE_TEST_CHROMEDRIVER are not set")
    for name, path in (("LINKGATE_TEST_CHROMIUM", chromium), ("LINKGATE_TEST_CHROMEDRIVER", driver)):
        if not path:
            pytest.fail(f"{name} is not set (both browser variables are needed)")
        try:
            subprocess.run([path, "--version"], capture_output=True, timeout=30, check=True)
        except (OSError, subprocess.SubprocessError) as exc:
            pytest.fail(f"{name}={path} does not run: {exc}")
    return chromium, driver


class _TargetPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/favicon.ico":
            self.send_response(204)
            self.end_headers()
            return
        body = b"<!doctype html><html lang=en><title>Target</title><h1>Landed on the target</h1></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def console_target() -> Iterator[str]:
    """A site on 127.0.0.1 that the browser reaches as http://target.test/ (see --host-resolver-rules)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TargetPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Served:
    base: str
    headers: dict[str, str]

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers=self.headers, timeout=10)


@pytest.fixture(scope="module")
def console_server(tmp_path_factory) -> Iterator[Served]:
    """`python -m service serve` on a free port, as `make run` serves it (SQLite, in-process Redis and consumer).

    One per test module (starting one takes seconds); each test gets a browser of its own.
    """
    browser_binaries()  # skip (or fail) before starting anything
    tmp_path = tmp_path_factory.mktemp("console")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # A small limit for requests without a valid key, so the test can meet a 429.
    env = cli_env(tmp_path, LINKGATE_PUBLIC_BASE_URL=base, LINKGATE_RATE_LIMIT_PER_ADDRESS="3/minute")
    migrate(env)
    server = serve(env, port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield Served(base=base, headers=admin_key(env))
    finally:
        stop(server)


@dataclass
class Browser:
    """A Chromium session with the checks every screen gets: no console errors, no serious axe violations."""

    driver: object = field(repr=False)
    base: str
    screenshots: Path | None
    allowed: list[tuple[str, int]] = field(default_factory=list)
    axe_source: str = field(default_factory=lambda: (VENDOR / "axe.min.js").read_text(), repr=False)

    def expect_failed_request(self, path: str, status: int) -> None:
        """A request the next steps make on purpose and that Chromium logs as an error."""
        self.allowed.append((path, status))

    def console_errors(self) -> list[str]:
        errors = []
        for entry in self.driver.get_log("browser"):
            if entry["level"] != "SEVERE":
                continue
            message = entry["message"]
            if entry.get("source") == "network" and any(
                path in message and f"status of {status}" in message for path, status in self.allowed
            ):
                continue
            errors.append(message)
        return errors

    def check(self, screen: str) -> None:
        """The screen shown now: no console error so far, and axe finds nothing serious or critical."""
        assert self.console_errors() == [], f"browser console errors on {screen}"
        self.driver.execute_script(self.axe_source)
        result = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']})"
            ".then(r => done(r.violations), e => done({error: String(e)}));"
        )
        assert not isinstance(result, dict), result
        serious = [
            {"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result if v["impact"] in SERIOUS
        ]
        assert serious == [], f"axe on {screen}:\n{json.dumps(serious, indent=1)}"
        if self.screenshots is not None:
            self.screenshot(screen)

    def screenshot(self, screen: str) -> None:
        """The whole page (up to 2,000 px tall) as docs/console-*.png would show it."""
        size = self.driver.get_window_size()
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(size["width"], min(max(height + 140, 600), 2000))
        self.driver.execute_script("window.scrollTo(0, 0)")
        self.driver.save_screenshot(str(self.screenshots / f"console-{screen}.png"))
        self.driver.set_window_size(size["width"], size["height"])

    def status_of_page(self) -> int:
        """The HTTP status of the document shown (Navigation Timing's responseStatus)."""
        return self.driver.execute_script("return performance.getEntriesByType('navigation')[0].responseStatus")

    def fetched_paths(self) -> list[str]:
        """The paths the page's script fetched (since the document loaded)."""
        return self.driver.execute_script(
            "return performance.getEntriesByType('resource').filter(e => e.initiatorType === 'fetch')"
            ".map(e => new URL(e.name).pathname)"
        )

    def foreign_requests(self) -> list[str]:
        """Everything the page loaded from a host other than linkgate's."""
        return self.driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
            ".filter(u => !u.startsWith(location.origin + '/') && !u.startsWith('data:'))"
        )


@pytest.fixture
def console_browser(console_server, console_target) -> Iterator[Browser]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
        "--window-size=1280,1000", f"--user-agent={USER_AGENT}",
        f"--host-resolver-rules=MAP {TARGET_HOST} {console_target}",
        # Navigations to http:// stay http:// (no HTTPS upgrade attempt to the plain target site).
        "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_script_timeout(60)
    shots = os.environ.get("LINKGATE_CONSOLE_SCREENSHOTS")
    try:
        yield Browser(driver=driver, base=console_server.base, screenshots=Path(shots) if shots else None)
    finally:
        driver.quit()


def local_datetime_in(days: int) -> str:
    """A value for <input type=datetime-local>: now plus `days`, in the machine's (so the browser's) zone."""
    return (dt.datetime.now() + dt.timedelta(days=days)).replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M")


def eventually(check, *, timeout: float = 30.0, every: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        time.sleep(every)
