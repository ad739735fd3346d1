"""The console in a real browser: a person's path through it, with axe on every screen.

A served linkgate (`python -m service serve`, as `make run` serves it), a
target site the browser reaches as http://target.test/, and headless
Chromium. Any error in the browser's console fails the test, and so does any
serious or critical axe-core violation.
"""

from __future__ import annotations

import re

from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser.console_support import (  # noqa: F401 (fixtures)
    TARGET_HOST, Browser, Served, console_browser, console_server, console_target, eventually, local_datetime_in,
)


PAGE_SIZE = 20  # the console's page of links


def wait(driver: WebDriver, timeout: float = 10) -> WebDriverWait:
    return WebDriverWait(driver, timeout)


def heading(driver: WebDriver, text: str) -> None:
    try:
        wait(driver).until(seen.text_to_be_present_in_element((By.CSS_SELECTOR, "main h1"), text))
    except TimeoutException:
        raise AssertionError(f"no heading {text!r}; browser log: {driver.get_log('browser')}") from None


def notice(driver: WebDriver, text: str) -> str:
    wait(driver).until(seen.text_to_be_present_in_element((By.ID, "notice"), text))
    return driver.find_element(By.ID, "notice").text


def fill(driver: WebDriver, element_id: str, text: str) -> None:
    element = driver.find_element(By.ID, element_id)
    element.clear()
    element.send_keys(text)


def card_titles(driver: WebDriver) -> list[str] | None:
    """The titles in the list of links; None while the list is being replaced."""
    try:
        return [card.text for card in driver.find_elements(By.CSS_SELECTOR, "#links-list .card h2")]
    except StaleElementReferenceException:
        return None


def sign_in(driver: WebDriver, key: str) -> None:
    fill(driver, "signin-key", key)
    driver.find_element(By.ID, "signin-key").send_keys(Keys.ENTER)


def tab_stops(driver: WebDriver, count: int) -> list[str]:
    """What Tab reaches from the top of the page, in order (the keyboard alone)."""
    driver.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    reached = []
    for _ in range(count):
        reached.append(driver.execute_script(
            "const e = document.activeElement; return (e.getAttribute('aria-label') || e.textContent || e.value || '').trim()"
        ))
        driver.switch_to.active_element.send_keys(Keys.TAB)
    return reached


def test_a_person_signs_in_creates_finds_follows_counts_disables_a_link_and_manages_keys(
    console_browser: Browser, console_server: Served
):
    browser, linkgate = console_browser, console_server
    driver = browser.driver
    with linkgate.api() as api:
        other = api.post("/api/v1/links", json={"url": "https://example.com/other", "title": "Unrelated"})
        assert other.status_code == 201, other.text
        bulk = api.post("/api/v1/links/batch", json={"links": [
            {"url": f"https://example.com/bulk/{n}", "title": f"Bulk {n}"} for n in range(PAGE_SIZE)
        ]})
        assert [item["status"] for item in bulk.json()["results"]] == [201] * PAGE_SIZE

    # 1. Sign in; a wrong key first is refused with a message and not kept.
    driver.get(f"{linkgate.base}/console")
    heading(driver, "Sign in")
    browser.check("signin")
    browser.expect_failed_request("/api/v1/links?limit=1", 401)
    sign_in(driver, "lg_000000000000_wrong")
    notice(driver, "sign in again")
    assert driver.execute_script("return sessionStorage.length") == 0
    sign_in(driver, linkgate.headers["Authorization"].removeprefix("Bearer "))
    heading(driver, "Links")
    # One page of the newest links, then the next page (keyset: the cursor of the last) on request.
    wait(driver).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#links-list .card")) == PAGE_SIZE)
    assert "Unrelated" not in driver.find_element(By.ID, "links-list").text
    driver.find_element(By.ID, "links-more").send_keys(Keys.ENTER)
    wait(driver).until(lambda d: "Unrelated" in d.find_element(By.ID, "links-list").text)
    assert len(driver.find_elements(By.CSS_SELECTOR, "#links-list .card")) == PAGE_SIZE + 1
    assert not driver.find_element(By.ID, "links-more").is_displayed()
    assert driver.switch_to.active_element.text == "Unrelated (" + other.json()["code"] + ")"
    # The key lives in this tab's session storage only, never in a cookie or local storage.
    assert driver.execute_script("return Object.keys(sessionStorage)") == ["linkgate.console.key"]
    assert driver.execute_script("return localStorage.length") == 0
    assert driver.get_cookies() == []
    assert browser.foreign_requests() == []
    browser.check("links")

    # 2. Create a link with a tag and an expiry; a bad URL first gets its message at the field.
    driver.find_element(By.LINK_TEXT, "New link").click()
    heading(driver, "New link")
    # The password field shows when the server's OpenAPI document has the field (links with passwords).
    with linkgate.api() as api:
        schema = api.get("/openapi.json").json()["components"]["schemas"]["LinkCreate"]
    assert driver.find_element(By.ID, "new-password").is_displayed() == ("password" in schema["properties"])
    browser.check("new")
    browser.expect_failed_request("/api/v1/links", 422)
    fill(driver, "new-url", "ftp://example.com/file")
    driver.find_element(By.CSS_SELECTOR, "#new-form button[type=submit]").click()
    notice(driver, "correct the marked fields")
    url_error = driver.find_element(By.ID, "new-url-error").text
    assert url_error.startswith("Target URL:"), url_error
    assert driver.find_element(By.ID, "new-url").get_attribute("aria-invalid") == "true"
    browser.check("new-errors")
    if "password" not in schema["properties"]:
        # A server whose document says nothing of passwords, yet the field is sent: the console
        # takes it away and says why, instead of showing the raw 422.
        driver.execute_script("document.getElementById('new-password-field').hidden = false")
        fill(driver, "new-url", f"http://{TARGET_HOST}/landing")
        fill(driver, "new-password", "hunter2")
        driver.find_element(By.CSS_SELECTOR, "#new-form button[type=submit]").click()
        notice(driver, "This server does not support link passwords, so the link was not created.")
        assert not driver.find_element(By.ID, "new-password").is_displayed()
    fill(driver, "new-url", f"http://{TARGET_HOST}/landing")
    fill(driver, "new-title", "Spring sale")
    fill(driver, "new-tags", "spring, mail")
    driver.execute_script("arguments[0].value = arguments[1]", driver.find_element(By.ID, "new-until"),
                          local_datetime_in(days=7))
    Select(driver.find_element(By.ID, "new-mode")).select_by_value("forward")
    fill(driver, "new-deny", "fbclid")
    driver.find_element(By.CSS_SELECTOR, "#new-form button[type=submit]").click()
    heading(driver, "Spring sale")
    short_url = driver.find_element(By.ID, "link-short").get_attribute("value")
    code = short_url.rsplit("/", 1)[1]
    assert short_url == f"{linkgate.base}/{code}"
    facts = driver.find_element(By.CSS_SELECTOR, ".js-facts").text
    assert "mail, spring" in facts and "deny fbclid" in facts and "Expires\nnever" not in facts
    qr = driver.find_element(By.CSS_SELECTOR, ".js-qr")
    assert qr.get_attribute("href") == f"{linkgate.base}/{code}/qr?format=png"
    with linkgate.api() as api:
        stored = api.get(f"/api/v1/links/{code}").json()
    assert sorted(stored["tags"]) == ["mail", "spring"] and stored["valid_until"] is not None
    assert stored["query"]["deny"] == ["fbclid"]
    browser.check("link")

    # Every action on the link page is reachable with Tab alone.
    stops = tab_stops(driver, 20)
    for control in ("Copy short URL", "Download QR code", "Disable", "Delete", "Refresh visits"):
        assert control in stops, stops

    # 3. Find it by search (the other link does not match).
    driver.find_element(By.LINK_TEXT, "Links").click()
    heading(driver, "Links")
    fill(driver, "search-q", "spring")
    wait(driver).until(lambda d: len(Select(d.find_element(By.ID, "search-tag")).options) > 1)
    Select(driver.find_element(By.ID, "search-tag")).select_by_value("spring")
    driver.find_element(By.ID, "search-q").send_keys(Keys.ENTER)
    wait(driver).until(lambda d: card_titles(d) == [f"Spring sale ({code})"])
    # Created from tomorrow on: none yet.
    driver.execute_script("arguments[0].value = arguments[1]", driver.find_element(By.ID, "search-from"),
                          local_datetime_in(days=1)[:10])
    driver.find_element(By.ID, "search-q").send_keys(Keys.ENTER)
    wait(driver).until(seen.text_to_be_present_in_element((By.ID, "links-count"), "No links match."))

    # 4. Follow it and land on the target.
    driver.get(short_url)
    heading_on_target = wait(driver).until(seen.presence_of_element_located((By.TAG_NAME, "h1")))
    assert heading_on_target.text == "Landed on the target"
    assert driver.current_url == f"http://{TARGET_HOST}/landing"

    # 5. The visit shows in the console's chart (the in-process consumer folds it within seconds).
    driver.get(f"{linkgate.base}/console#/links/{code}")
    heading(driver, "Spring sale")

    def counted():
        driver.find_element(By.CSS_SELECTOR, ".js-refresh").click()
        return driver.find_element(By.CSS_SELECTOR, ".js-total").get_attribute("data-visits") == "1"

    eventually(counted, what="the visit counted in the console")
    assert driver.find_elements(By.CSS_SELECTOR, ".js-chart canvas"), "uPlot drew no chart"
    assert driver.find_element(By.CSS_SELECTOR, ".js-chart").get_attribute("data-days") == "30"
    tops = driver.find_element(By.CSS_SELECTOR, ".js-tops").text
    assert "Chrome 1" in tops and "desktop 1" in tops and "direct 1" in tops
    browser.check("link-visited")
    driver.find_element(By.CSS_SELECTOR, "details summary").send_keys(Keys.ENTER)
    last_day = driver.find_elements(By.CSS_SELECTOR, ".js-days tbody tr")[-1].text.split()
    assert last_day[1:] == ["1", "1"], last_day
    browser.check("link-visited-table")

    # On a phone-sized screen nothing is wider than the screen.
    driver.set_window_size(390, 844)
    driver.refresh()
    heading(driver, "Spring sale")
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    browser.check("phone")
    driver.set_window_size(1280, 1000)

    # 6. Disable it: its short URL answers 410 (the gone page), and the console says so.
    driver.find_element(By.CSS_SELECTOR, ".js-toggle").send_keys(Keys.ENTER)
    notice(driver, "Link disabled")
    wait(driver).until(seen.text_to_be_present_in_element((By.CSS_SELECTOR, ".js-toggle"), "Enable"))
    assert "Disabled" in driver.find_element(By.CSS_SELECTOR, ".js-facts").text
    browser.check("link-disabled")
    browser.expect_failed_request(f"/{code}", 410)
    # The gone page names no icon, so Chromium asks for /favicon.ico, which linkgate does not serve.
    browser.expect_failed_request("/favicon.ico", 404)
    driver.get(short_url)
    assert browser.status_of_page() == 410
    assert "gone" in driver.find_element(By.TAG_NAME, "body").text.lower()
    assert browser.console_errors() == []

    # Enable it again, copy its short URL, then delete it (after the second thought the console asks for).
    driver.get(f"{linkgate.base}/console#/links/{code}")
    heading(driver, "Spring sale")
    driver.find_element(By.CSS_SELECTOR, ".js-toggle").send_keys(Keys.ENTER)
    notice(driver, "Link enabled.")
    wait(driver).until(seen.text_to_be_present_in_element((By.CSS_SELECTOR, ".js-toggle"), "Disable"))
    with linkgate.api() as api:
        assert api.get(f"/api/v1/links/{code}").json()["status"] == "active"
    driver.execute_script("document.getElementById('notice').textContent = ''")
    driver.find_element(By.CSS_SELECTOR, ".js-copy").click()
    copied = wait(driver).until(lambda d: d.find_element(By.ID, "notice").text)
    # Copied, or (no clipboard permission in this browser) selected for the person to copy.
    assert copied in ("Short URL copied.", "Selected: press Ctrl+C (or ⌘C) to copy."), copied
    driver.find_element(By.CSS_SELECTOR, ".js-delete").send_keys(Keys.ENTER)
    assert driver.switch_to.active_element.text == "Keep it"  # the safe choice has the focus
    driver.find_element(By.CSS_SELECTOR, ".js-delete-yes").send_keys(Keys.ENTER)
    notice(driver, f"Link {code} deleted")  # and its code answers 404 from then on
    heading(driver, "Links")
    with linkgate.api() as api:
        assert api.get(f"/api/v1/links/{code}").status_code == 404
    # Its old console address says so and offers the list.
    browser.expect_failed_request(f"/api/v1/links/{code}", 404)
    driver.get(f"{linkgate.base}/console#/links/{code}")
    assert notice(driver, "Link not found") == f"Link not found: No link has the code '{code}'."
    heading(driver, "Links")

    # 7. As an admin: create a key (shown once), see it listed, revoke it.
    driver.get(f"{linkgate.base}/console#/keys")
    heading(driver, "API keys")
    browser.check("keys")
    fill(driver, "key-name", "ci-deploy")
    Select(driver.find_element(By.ID, "key-role")).select_by_value("editor")
    driver.find_element(By.ID, "key-name").send_keys(Keys.ENTER)
    notice(driver, "Key ci-deploy created")
    secret = driver.find_element(By.ID, "key-secret").get_attribute("value")
    assert secret.startswith("lg_")
    row = wait(driver).until(seen.presence_of_element_located((By.XPATH, "//tr[td[1][text()='ci-deploy']]")))
    assert row.find_elements(By.TAG_NAME, "td")[2].text == "active"
    assert "(the key you signed in with)" in driver.find_element(By.ID, "keys-table").text
    browser.check("keys-created")
    row.find_element(By.TAG_NAME, "button").send_keys(Keys.ENTER)
    notice(driver, "Key ci-deploy revoked")
    wait(driver).until(lambda d: d.find_element(By.XPATH, "//tr[td[1][text()='ci-deploy']]/td[3]").text == "revoked")
    with linkgate.api() as api:
        keys = {key["name"]: key["status"] for key in api.get("/api/v1/keys").json()["data"]}
    assert keys["ci-deploy"] == "revoked"
    # The console talks to the REST API and to nothing else (the OpenAPI document tells it about passwords).
    fetched = browser.fetched_paths()
    assert "/api/v1/keys" in fetched
    assert [path for path in fetched if not path.startswith("/api/v1/") and path != "/openapi.json"] == []
    assert browser.console_errors() == []

    # 8. A key revoked while a tab holds it: the next call answers 401 and the console returns to sign-in.
    driver.execute_script("sessionStorage.setItem('linkgate.console.key', arguments[0])", secret)
    browser.expect_failed_request("/api/v1/", 401)
    driver.get(f"{linkgate.base}/console#/links")  # a change of hash only: the same tab, the same session
    heading(driver, "Sign in")
    notice(driver, "sign in again")
    assert driver.execute_script("return sessionStorage.length") == 0

    # 9. Failed keys from one address are limited (3 a minute here): the console says when to try again.
    browser.expect_failed_request("/api/v1/links?limit=1", 429)
    for _ in range(5):
        driver.execute_script("document.getElementById('notice').textContent = ''")
        sign_in(driver, "lg_000000000000_wrong")
        message = wait(driver).until(lambda d: d.find_element(By.ID, "notice").text)
        if "Too many requests" in message:
            break
    assert re.fullmatch(r"Too many requests for now\. Try again in \d+ s\.", message), message
    assert browser.console_errors() == []


def test_the_api_docs_load_nothing_from_another_host(console_browser: Browser, console_server: Served):
    browser, linkgate = console_browser, console_server
    driver = browser.driver
    driver.get(linkgate.base + "/redoc")  # the old address of the other docs lands on these
    wait(driver, 20).until(seen.text_to_be_present_in_element((By.CSS_SELECTOR, ".swagger-ui .info .title"), "linkgate"))
    assert driver.current_url == linkgate.base + "/docs"
    wait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-tag"))
    assert browser.foreign_requests() == []
    assert browser.console_errors() == []
