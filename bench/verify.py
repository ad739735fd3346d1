"""After each wrk run, a sample of answers checked one by one, so a fast wrong answer cannot count."""

from __future__ import annotations

import random

import httpx

from .report import Verification
from .seed import VISITOR_QUERY, expected_location

def _client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=10.0, follow_redirects=False)


async def redirects(
    base_url: str, samples: list[tuple[str, str]], *, status: int = 302, query: str = ""
) -> Verification:
    """GET /<code>[?query] for each (code, expected Location): the status and the exact Location."""
    result = Verification()
    async with _client(base_url) as client:
        for code, location in samples:
            path = f"/{code}?{query}" if query else f"/{code}"
            try:
                response = await client.get(path)
            except httpx.HTTPError as exc:
                result.record(f"{path}: {exc!r}")
                continue
            got = response.headers.get("location")
            if response.status_code != status or got != location:
                result.record(f"{path}: {response.status_code} {got!r}, expected {status} {location!r}")
            else:
                result.record(None)
    return result


def seeded_sample(codes: list[str], size: int, rng: random.Random, *, query: str = "") -> list[tuple[str, str]]:
    picks = rng.sample(range(len(codes)), min(size, len(codes)))
    return [(codes[n], expected_location(n, query)) for n in picks]


async def not_found(base_url: str, codes: list[str]) -> Verification:
    """Unknown codes answer 404 (HTML) with no Location."""
    result = Verification()
    async with _client(base_url) as client:
        for code in codes:
            try:
                response = await client.get(f"/{code}")
            except httpx.HTTPError as exc:
                result.record(f"/{code}: {exc!r}")
                continue
            if response.status_code != 404 or "location" in response.headers:
                result.record(f"/{code}: {response.status_code}, expected 404")
            else:
                result.record(None)
    return result


async def creates(base_url: str, tag: str, size: int, api_key: str) -> Verification:
    """The newest links (made by wrk) redirect to their URLs; then `size` fresh creates round-trip."""
    result = Verification()
    async with _client(base_url) as client:
        client.headers["Authorization"] = f"Bearer {api_key}"
        listed = await client.get("/api/v1/links", params={"limit": 100})
        if listed.status_code != 200:
            result.record(f"GET /api/v1/links: {listed.status_code}")
            return result
        newest = listed.json()["data"][: size // 2]
        for link in newest:
            if f"created-{tag}-" not in link["url"]:
                result.record(f"newest link {link['code']} is not from this run: {link['url']}")
                continue
            response = await client.get(f"/{link['code']}")
            if response.status_code != 302 or response.headers.get("location") != link["url"]:
                result.record(f"/{link['code']}: {response.status_code} {response.headers.get('location')!r}")
            else:
                result.record(None)
        for n in range(size - len(newest)):
            url = f"https://www.example.com/articles/2026/11/checked-{tag}-{n:07d}?ref=newsletter"
            created = await client.post("/api/v1/links", json={"url": url})
            if created.status_code != 201 or created.json().get("url") != url:
                result.record(f"POST {url}: {created.status_code} {created.text[:200]}")
                continue
            code = created.json()["code"]
            response = await client.get(f"/{code}")
            if response.status_code != 302 or response.headers.get("location") != url:
                result.record(f"/{code}: {response.status_code} {response.headers.get('location')!r}")
            else:
                result.record(None)
    return result


async def ceiling(base_url: str, location: bytes, size: int) -> Verification:
    result = Verification()
    async with _client(base_url) as client:
        for n in range(size):
            response = await client.get(f"/c{n}")
            if response.status_code != 302 or response.headers.get("location") != location.decode():
                result.record(f"/c{n}: {response.status_code}")
            else:
                result.record(None)
    return result


async def floor_creates(base_url: str, size: int) -> Verification:
    """The create floor (bench/floor.py) answers 201 with the URL it was sent."""
    result = Verification()
    async with _client(base_url) as client:
        for n in range(size):
            url = f"https://www.example.com/articles/2026/11/floor-{n:07d}?ref=newsletter"
            response = await client.post("/api/v1/links", json={"url": url})
            if response.status_code != 201 or response.json().get("url") != url:
                result.record(f"POST {url}: {response.status_code} {response.text[:200]}")
            else:
                result.record(None)
    return result


__all__ = ["VISITOR_QUERY", "ceiling", "creates", "floor_creates", "not_found", "redirects", "seeded_sample"]
