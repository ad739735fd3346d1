"""The pages linkgate serves to browsers (the console, the API docs) load nothing from another host."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

from service.pages.console.routes import CONTENT_SECURITY_POLICY

PAGES = ["/console", "/docs", "/redoc"]
_CSS_URL = re.compile(r"url\(\s*['\"]?([^'\")]+)")


class _References(HTMLParser):
    """Every URL a page makes the browser fetch or follow, and its inline scripts and styles."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs) -> None:
        attrs = dict(attrs)
        for name in ("src", "href", "action", "data", "poster", "srcset"):
            if attrs.get(name):
                self.urls.append(attrs[name])
        if "style" in attrs:
            self.inline.append(f"style attribute on <{tag}>")
        if tag == "style":
            self.inline.append("<style>")
        if any(name.startswith("on") for name in attrs):
            self.inline.append(f"event handler on <{tag}>")
        self._in_script = tag == "script" and "src" not in attrs

    def handle_data(self, data) -> None:
        if self._in_script and data.strip():
            self.inline.append("<script> without src")

    def handle_endtag(self, tag) -> None:
        if tag == "script":
            self._in_script = False


def references(html: str) -> _References:
    parser = _References()
    parser.feed(html)
    return parser


def foreign(urls: list[str], page_url: str) -> list[str]:
    origin = urlsplit(page_url)[:2]
    return [u for u in urls if not u.startswith(("#", "data:")) and urlsplit(urljoin(page_url, u))[:2] != origin]


@pytest.mark.parametrize("page", PAGES, ids=PAGES)
async def test_a_page_and_its_stylesheets_reference_only_linkgate_itself(client, page):
    response = await client.get(page, follow_redirects=True)
    assert response.status_code == 200
    page_url = str(response.url)
    found = references(response.text)
    assert found.urls, "no references at all: the parser read nothing"
    assert foreign(found.urls, page_url) == []
    for url in found.urls:
        if url.endswith(".css"):
            css = await client.get(urljoin(page_url, url))
            assert css.status_code == 200, url
            assert foreign(_CSS_URL.findall(css.text), urljoin(page_url, url)) == [], url


async def test_the_console_page_has_no_inline_code_and_a_strict_policy(client):
    response = await client.get("/console")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    policy = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert policy["default-src"] == "'none'" and policy["script-src"] == "'self'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    found = references(response.text)
    assert found.inline == []
    for url in found.urls:
        if url.startswith("/console/static/"):
            asset = await client.get(url)
            assert asset.status_code == 200, url
            assert asset.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


async def test_the_console_needs_no_key_to_load_but_its_api_calls_do(client):
    # The page and its files are public (a person signs in inside it); the data is not.
    assert (await client.get("/console", headers={"authorization": ""})).status_code == 200
    assert (await client.get("/console/static/console.js", headers={"authorization": ""})).status_code == 200
    assert (await client.get("/api/v1/links", headers={"authorization": ""})).status_code == 401


async def test_console_is_a_reserved_word_not_a_code(client):
    response = await client.post("/api/v1/links", json={"url": "https://example.com/", "alias": "console"})
    assert response.status_code == 422
    assert (await client.get("/console/")).status_code == 308
