"""The visitor pages on SQLite + fakeredis: preview, the 404/410 pages, the headers, templates, assets."""

from __future__ import annotations

import html

import fakeredis
import pytest

from service.pages.render import Pages
from tests.support import make_settings, migrate, running_app

BROWSER = {"accept": "text/html", "user-agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36"}
CSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"


async def test_the_preview_shows_target_title_date_and_a_plain_continue_link(client):
    created = await client.post("/api/v1/links", json={"url": "https://example.com/a?b=1&c=2",
                                                       "title": "Spring <sale> & more"})
    code = created.json()["code"]
    response = await client.get(f"/{code}+")
    assert response.status_code == 200
    assert response.headers["x-robots-tag"] == "noindex"
    page = response.text
    assert "https://example.com/a?b=1&amp;c=2" in page  # as text, escaped
    assert "Spring &lt;sale&gt; &amp; more" in page and "<sale>" not in page
    assert created.json()["created_at"][:10] in page
    assert '<a class="button" href="https://example.com/a?b=1&amp;c=2" rel="noopener noreferrer">Continue</a>' in page
    assert response.headers["content-security-policy"] == CSP


async def test_a_preview_is_not_a_visit(client):
    code = (await client.post("/api/v1/links", json={"url": "https://example.com/p"})).json()["code"]
    recorder = client.app.state.visit_recorder
    before = recorder.backlog
    await client.get(f"/{code}+")
    assert recorder.backlog == before


async def test_the_preview_of_a_password_link_says_only_that_a_password_is_needed(client):
    code = (await client.post("/api/v1/links", json={"url": "https://example.com/hidden", "title": "Hidden title",
                                                     "password": "pw"})).json()["code"]
    response = await client.get(f"/{code}+")
    assert response.status_code == 200
    assert "needs a password" in response.text
    assert "example.com" not in response.text and "Hidden title" not in response.text
    assert "example.com" not in str(response.headers)


async def test_the_preview_of_an_unknown_code_is_404_and_of_a_gone_link_410(client):
    assert (await client.get("/nosuchcode+")).status_code == 404
    code = (await client.post("/api/v1/links", json={"url": "https://example.com/g",
                                                     "fallback_url": "https://example.com/else"})).json()["code"]
    await client.delete(f"/api/v1/links/{code}")
    gone = await client.get(f"/{code}+")
    assert gone.status_code == 410  # a preview leads nowhere by itself: not the fallback
    assert "example.com" not in gone.text


@pytest.mark.parametrize("path", ["/nosuchcode", "/nosuchcode/qr", "/nosuchcode+"], ids=["redirect", "qr", "preview"])
async def test_the_404_page_is_the_template_with_the_strict_policy(client, path):
    response = await client.get(path, headers=BROWSER)
    assert response.status_code == 404
    assert "<h1>Link not found</h1>" in response.text
    assert '<link rel="stylesheet" href="/static/pages.css">' in response.text
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_the_410_page_is_the_template(client):
    code = (await client.post("/api/v1/links", json={"url": "https://example.com/d", "disabled": True})).json()["code"]
    response = await client.get(f"/{code}", headers=BROWSER)
    assert response.status_code == 410
    assert "<h1>This link is gone</h1>" in response.text
    assert response.headers["content-security-policy"] == CSP


def test_no_template_loads_anything_from_elsewhere_or_runs_script():
    pages = Pages()
    rendered = [pages.not_found_html, pages.gone_html,
                pages.render("password.html", short_url="https://sho.rt/x", wrong=True),
                pages.render("unlocked.html", location="https://example.com/"),
                pages.render("error.html", title="Too many", message="Wait"),
                pages.render("preview.html", short_url="s", path="/x", created_at=__import__("datetime").datetime.now(),
                             protected=False, url="https://example.com/", title=None)]
    for page in rendered:
        text = page.decode()
        assert "<script" not in text and " style=" not in text and "<style" not in text
        for attribute in ("src=", "href="):
            for value in text.split(attribute)[1:]:
                url = html.unescape(value[1:].split('"', 1)[0])
                assert url.startswith("/") or url.startswith("https://example.com"), url
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in text
        assert '<html lang="en">' in text


async def test_an_operator_template_directory_overrides_pages_by_file_name(sqlite_url, redis_server, tmp_path):
    (tmp_path / "not_found.html").write_text(
        '{% extends "base.html" %}{% block title %}Nope{% endblock %}'
        "{% block main %}<h1>Acme: no such link</h1>{% endblock %}"
    )
    (tmp_path / "base.html").write_text(
        "<!doctype html><html lang=\"en\"><title>{% block title %}{% endblock %} · Acme</title>"
        "<body class=\"acme\">{% block main %}{% endblock %}</body></html>"
    )
    settings = make_settings(sqlite_url, templates_dir=str(tmp_path))
    await migrate(sqlite_url)
    async with running_app(settings, fakeredis.FakeAsyncRedis(server=redis_server)) as client:
        missing = await client.get("/nosuchcode", headers=BROWSER)
        assert "<h1>Acme: no such link</h1>" in missing.text and 'class="acme"' in missing.text
        code = (await client.post("/api/v1/links", json={"url": "https://example.com/x",
                                                         "disabled": True})).json()["code"]
        gone = await client.get(f"/{code}", headers=BROWSER)
        # Not overridden: the shipped page, inside the operator's base.
        assert "<h1>This link is gone</h1>" in gone.text and 'class="acme"' in gone.text


def test_a_templates_dir_that_is_not_a_directory_stops_the_start(tmp_path):
    with pytest.raises(ValueError, match="LINKGATE_TEMPLATES_DIR"):
        Pages(tmp_path / "missing")


@pytest.mark.parametrize(("path", "media_type", "start"), [
    ("/robots.txt", "text/plain; charset=utf-8", b"User-agent: *"),
    ("/favicon.ico", "image/x-icon", b"\x00\x00\x01\x00"),
    ("/static/pages.css", "text/css; charset=utf-8", b"/*"),
], ids=["robots", "favicon", "css"])
async def test_the_pages_own_files_are_served_with_a_validator(client, path, media_type, start):
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.content.startswith(start)
    again = await client.get(path, headers={"if-none-match": response.headers["etag"]})
    assert again.status_code == 304
