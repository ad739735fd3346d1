"""GET /{code}/qr on SQLite + fakeredis: the image a real reader decodes, its parameters, its caching."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
import segno

from service.visits import schema

ZBARIMG = shutil.which("zbarimg")
# .ci/run installs zbar-tools with the browser tier and sets LINKGATE_TEST_CHROMIUM: there the reader
# must be present (the tests fail without it); only a machine without that tier skips them.
needs_zbar = pytest.mark.skipif(
    ZBARIMG is None and not os.environ.get("LINKGATE_TEST_CHROMIUM"),
    reason="zbarimg (Debian zbar-tools) is not installed and the browser tier is not requested",
)


def decode(png: bytes, tmp_path) -> list[str]:
    """What zbarimg reads in the image: one line per symbol found."""
    path = tmp_path / "code.png"
    path.write_bytes(png)
    done = subprocess.run([ZBARIMG, "--quiet", "--raw", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


async def _code(client, **fields) -> str:
    return (await client.post("/api/v1/links", json={"url": "https://example.com/q", **fields})).json()["code"]


@needs_zbar
async def test_a_reader_finds_the_short_url_with_the_qr_marker_in_the_png(client, tmp_path):
    code = await _code(client)
    response = await client.get(f"/{code}/qr", params={"format": "png", "size": 300})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG")
    assert decode(response.content, tmp_path) == [f"https://sho.rt/{code}?qr=1"]


@needs_zbar
@pytest.mark.parametrize("ecc", ["L", "M", "Q", "H"], ids=lambda e: f"ecc-{e}")
async def test_every_error_correction_level_reads_back(client, tmp_path, ecc):
    code = await _code(client)
    response = await client.get(f"/{code}/qr", params={"format": "png", "ecc": ecc, "fg": "#1a3d6e", "bg": "fff"})
    assert decode(response.content, tmp_path) == [f"https://sho.rt/{code}?qr=1"]


async def test_svg_is_the_default_and_carries_the_colours(client):
    code = await _code(client)
    response = await client.get(f"/{code}/qr", params={"fg": "#AA0000", "bg": "ffeedd"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert response.text.startswith("<svg")
    assert 'stroke="#a00"' in response.text and 'fill="#fed"' in response.text  # segno writes the short form


def png_width(png: bytes) -> int:
    return int.from_bytes(png[16:20], "big")  # IHDR


@pytest.mark.parametrize(("asked", "svg"), [(1, 64), (64, 64), (300, 300), (100000, 2048)],
                         ids=["below", "least", "between", "above"])
async def test_an_svg_is_the_size_asked_for_clamped_to_64_2048(client, asked, svg):
    code = await _code(client)
    response = await client.get(f"/{code}/qr", params={"size": asked})
    assert f'width="{svg}" height="{svg}"' in response.text


async def test_a_png_is_whole_pixels_per_module_and_no_larger_than_asked(client):
    code = await _code(client)
    modules = segno.make(f"https://sho.rt/{code}?qr=1", error="M", micro=False,
                         boost_error=False).symbol_size(scale=1, border=0)[0]
    for margin in (0, 4, 16):
        png = (await client.get(f"/{code}/qr", params={"format": "png", "size": 500, "margin": margin})).content
        side = modules + 2 * margin
        assert png_width(png) == (500 // side) * side
    big = png_width((await client.get(f"/{code}/qr", params={"format": "png", "size": 5000})).content)
    assert 2048 - (modules + 8) < big <= 2048


@pytest.mark.parametrize(
    "params",
    [{"format": "gif"}, {"size": "big"}, {"margin": 17}, {"margin": -1}, {"ecc": "X"}, {"fg": "red"},
     {"bg": "#12345"}, {"fg": "#1234567"}],
    ids=["format", "size-not-int", "margin-high", "margin-low", "ecc", "fg-name", "bg-5-digits", "fg-7-digits"],
)
async def test_a_bad_value_answers_422_problem_json(client, params):
    code = await _code(client)
    response = await client.get(f"/{code}/qr", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:linkgate:problem:invalid-input"


async def test_an_etag_and_cache_headers_and_304_on_if_none_match(client):
    code = await _code(client)
    first = await client.get(f"/{code}/qr", params={"format": "png"})
    etag = first.headers["etag"]
    assert etag.startswith('"') and "max-age=86400" in first.headers["cache-control"]
    again = await client.get(f"/{code}/qr", params={"format": "png"}, headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    other = await client.get(f"/{code}/qr", params={"format": "png", "ecc": "H"})
    assert other.headers["etag"] != etag


async def test_an_unknown_code_answers_404_and_a_gone_link_410_not_an_image(client):
    missing = await client.get("/nosuchcode/qr")
    assert missing.status_code == 404 and missing.json()["type"] == "urn:linkgate:problem:link-not-found"
    disabled = await _code(client, disabled=True, fallback_url="https://example.com/else")
    gone = await client.get(f"/{disabled}/qr", headers={"accept": "image/png,image/*"})
    assert gone.status_code == 410 and gone.json()["type"] == "urn:linkgate:problem:link-gone"
    later = datetime.now(UTC) + timedelta(days=1)
    scheduled = await _code(client, valid_since=later.isoformat())
    assert (await client.get(f"/{scheduled}/qr")).status_code == 404
    page = await client.get(f"/{disabled}/qr", headers={"accept": "text/html"})
    assert page.status_code == 410 and "<h1>This link is gone</h1>" in page.text


async def test_a_qr_code_is_not_a_visit(client):
    code = await _code(client)
    recorder = client.app.state.visit_recorder
    before = recorder.backlog
    await client.get(f"/{code}/qr")
    assert recorder.backlog == before


async def test_the_marker_is_stripped_and_the_visit_counted_as_qr(client):
    code = await _code(client)
    recorder = client.app.state.visit_recorder
    plain = await client.get(f"/{code}")
    scanned = await client.get(f"/{code}?qr=1")
    with_more = await client.get(f"/{code}?qr=1&utm_source=poster")
    assert plain.headers["location"] == "https://example.com/q"
    assert scanned.headers["location"] == "https://example.com/q"
    assert with_more.headers["location"] == "https://example.com/q?utm_source=poster"
    not_first = await client.get(f"/{code}?a=1&qr=1")
    assert not_first.headers["location"] == "https://example.com/q?a=1&qr=1"  # only the first place is the marker
    sent = []

    async def capture(entries, **kwargs):
        sent.extend(entries)

    recorder._stream.append = capture
    assert await recorder.flush()
    visits = [visit for _, document in sent
              for visit in schema.expand(schema.decode({b"v": b"1", b"visits": document}))]
    assert [visit.qr for visit in visits] == [False, True, True, False]


async def test_scans_show_as_the_qr_source_in_the_stats(client):
    code = await _code(client)
    browser = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"}
    for query in ("?qr=1", "?qr=1", ""):
        await client.get(f"/{code}{query}", headers=browser)
    app = client.app
    await app.state.visit_recorder.flush()
    assert await app.state.visit_consumer.drain(timeout_seconds=10)
    stats = (await client.get(f"/api/v1/links/{code}/stats")).json()
    assert stats["sources"] == [{"name": "qr", "visits": 2}, {"name": "link", "visits": 1}]
