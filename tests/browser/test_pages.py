"""The visitor pages in a real browser: the password flow, a QR scan, and a console log with no errors."""

from __future__ import annotations

import subprocess
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.browser.conftest import TARGET_HOST, console_errors

PASSWORD = "correct horse"


def wait_for(driver, condition, timeout: float = 10.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def find(driver, css: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def styled(driver) -> bool:
    """The page's own style sheet applied (CSP let it load): main is a centred column."""
    return driver.execute_script("return getComputedStyle(document.querySelector('main')).maxWidth") != "none"


def test_the_password_flow_from_form_to_target(browser, linkgate, target_server, screenshot):
    link = linkgate.create(url=target_server.url("/private?from=form"), password=PASSWORD)
    browser.get(link["short_url"])
    assert browser.title.startswith("Password needed")
    assert TARGET_HOST not in browser.page_source and "private" not in browser.page_source
    assert styled(browser)
    screenshot(browser, "pages-password")

    find(browser, "#password").send_keys("wrong guess")
    find(browser, "button[type=submit]").click()
    alert = wait_for(browser, lambda d: d.find_elements("css selector", "[role=alert]"))
    assert "not right" in alert[0].text
    assert TARGET_HOST not in browser.page_source
    screenshot(browser, "pages-password-wrong")
    # A wrong password is a 401, which the console notes as a failed load: expected, and the only entry.
    logged = console_errors(browser)
    assert all("401" in entry["message"] for entry in logged), logged

    requests_before = len(target_server.requests)
    find(browser, "#password").send_keys(PASSWORD)
    find(browser, "button[type=submit]").click()
    wait_for(browser, lambda d: urlsplit(d.current_url).hostname == TARGET_HOST)
    assert browser.title == "Landing"
    assert "/private?from=form" in target_server.requests[requests_before:]
    assert console_errors(browser) == []


def test_a_scanned_qr_code_reaches_the_target_without_its_marker_and_counts_as_qr(
    browser, linkgate, target_server, zbarimg, tmp_path
):
    link = linkgate.create(url=target_server.url("/poster"))
    png = httpx.get(f"{linkgate.base}/{link['code']}/qr", params={"format": "png", "size": 400}, timeout=10)
    assert png.status_code == 200
    image = tmp_path / "qr.png"
    image.write_bytes(png.content)
    read = subprocess.run([zbarimg, "--quiet", "--raw", str(image)], capture_output=True, text=True, timeout=30)
    assert read.returncode == 0, read.stderr
    scanned = read.stdout.strip()
    assert scanned == f"{link['short_url']}?qr=1"

    browser.get(scanned)
    wait_for(browser, lambda d: urlsplit(d.current_url).hostname == TARGET_HOST)
    assert browser.title == "Landing"
    assert urlsplit(browser.current_url).query == ""  # the marker never reached the target
    assert "/poster" in target_server.requests
    assert console_errors(browser) == []

    deadline = time.monotonic() + 20
    while True:
        stats = httpx.get(f"{linkgate.base}/api/v1/links/{link['code']}/stats", headers=linkgate.headers,
                          timeout=10).json()
        if stats["sources"]:
            break
        assert time.monotonic() < deadline, "the visit was not folded into the stats"
        time.sleep(0.2)
    assert stats["sources"] == [{"name": "qr", "visits": 1}]


@pytest.mark.parametrize("page", ["preview", "preview-password", "not-found", "gone"])
def test_each_page_renders_styled_with_no_console_errors(browser, linkgate, target_server, screenshot, page):
    if page == "preview":
        code = linkgate.create(url=target_server.url("/spring/sale?lang=en"), title="Spring sale")["code"]
        path = f"/{code}+"
    elif page == "preview-password":
        code = linkgate.create(url=target_server.url("/hidden"), password=PASSWORD)["code"]
        path = f"/{code}+"
    elif page == "not-found":
        path = "/no-such-code"
    else:
        path = "/" + linkgate.create(url=target_server.url("/off"), disabled=True)["code"]
    requests_before = len(target_server.requests)
    browser.get(linkgate.base + path)
    assert styled(browser)
    if page == "preview":
        assert target_server.url("/spring/sale?lang=en") in find(browser, ".target").text
        assert find(browser, "a.button").get_attribute("rel") == "noopener noreferrer"
        # The QR code on the page loaded (an image the policy allows, from this service).
        assert browser.execute_script("return document.querySelector('img').naturalWidth") > 0
    if page == "preview-password":
        assert "hidden" not in browser.page_source and TARGET_HOST not in browser.page_source
    assert target_server.requests[requests_before:] == []  # nothing reached the target
    screenshot(browser, f"pages-{page}")
    logged = console_errors(browser)
    if page in ("not-found", "gone"):
        # The page's own status (404/410) is the one entry the console makes of it.
        assert all(("404" in entry["message"] or "410" in entry["message"]) for entry in logged), logged
    else:
        assert logged == []
