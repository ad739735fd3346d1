"""Seed data: the target URLs, the bulk path that stores them, and the code files wrk reads."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from service.app import create_app
from service.config import Settings

# The query a visitor adds in the query-filter workload, and what the filter
# must make of it on a link with the default policy, under the bench's
# operator deny list (LINKGATE_QUERY_DENY=fbclid,gclid): fbclid is stripped;
# ref is the target's own parameter, so the target's value wins
# (on_conflict "target"); the utm_* parameters are appended in order.
VISITOR_QUERY = "utm_source=x&utm_medium=y&fbclid=z&ref=1"
FORWARDED_QUERY = "utm_source=x&utm_medium=y"
QUERY_DENY = "fbclid,gclid"


def target_url(n: int) -> str:
    """The seeded link number n's target: 80 characters for any n below 10 million."""
    return f"https://www.example.com/articles/2026/11/a-slug-{n:07d}?ref=newsletter&n={n:07d}"


def expected_location(n: int, query: str = "") -> str:
    """The Location a visitor of link n must get, computed here, independently of service.query_filter."""
    if not query:
        return target_url(n)
    if query != VISITOR_QUERY:
        raise ValueError(f"no expectation for query {query!r}")
    return f"{target_url(n)}&{FORWARDED_QUERY}"


@dataclass
class Seeded:
    """What was stored: codes[i] leads to target_url(i)."""

    codes: list[str]
    seconds: float

    @property
    def rate(self) -> float:
        return len(self.codes) / self.seconds if self.seconds else 0.0


async def seed(
    settings: Settings, count: int, *, chunk: int, progress: Callable[[str], None] = print
) -> Seeded:
    """Store `count` links through LinkService.bulk_create, inside the app's own lifespan."""
    app = create_app(settings, configure_logs=False)
    codes: list[str] = []
    started = time.perf_counter()
    async with app.router.lifespan_context(app):
        service = app.state.links
        last_report = started
        for first in range(0, count, chunk):
            urls = [target_url(n) for n in range(first, min(first + chunk, count))]
            codes += await service.bulk_create(urls)
            now = time.perf_counter()
            if now - last_report > 5 or len(codes) == count:
                progress(f"  seeded {len(codes):,}/{count:,} ({len(codes) / (now - started):,.0f} links/s)")
                last_report = now
    seconds = time.perf_counter() - started
    if len(codes) != count or len(set(codes)) != count:
        raise RuntimeError(f"bulk_create returned {len(codes)} codes ({len(set(codes))} distinct) for {count} URLs")
    return Seeded(codes=codes, seconds=seconds)


def unknown_codes(known: list[str], count: int, *, alphabet: str, rng: random.Random) -> list[str]:
    """Codes shaped like the seeded ones (same lengths, same alphabet) that no link has."""
    taken = set(known)
    lengths = [len(code) for code in rng.sample(known, min(len(known), 1000))]
    out: set[str] = set()
    while len(out) < count:
        code = "".join(rng.choices(alphabet, k=rng.choice(lengths)))
        if code not in taken:
            out.add(code)
    return sorted(out)


def write_codes(path: Path, codes: list[str]) -> Path:
    path.write_text("\n".join(codes) + "\n")
    return path


LIMITED_URL = "https://www.example.com/articles/2026/11/limited-offer?ref=newsletter"
BROWSER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0"


@dataclass
class Access:
    """What the bench's clients use: an admin key, and a link with a visit limit."""

    api_key: str
    limited_code: str


async def bench_access(settings: Settings, tag: str) -> Access:
    """An admin API key for the create workload, and a link with max_visits for the limited hot one
    (its limit far above what a run can reach: every visit pays the counting, none is refused)."""
    from service.access.grant import Grant
    from service.access.policy import Scope

    app = create_app(settings, configure_logs=False)
    async with app.router.lifespan_context(app):
        key, token = await app.state.keys.create(name=f"bench-{tag}", role="admin")
        principal = await app.state.keys.authenticate(token)
        link = await app.state.links.create(
            grant=Grant(principal=principal, scope=Scope.ANY), url=LIMITED_URL, max_visits=10**12,
        )
    return Access(api_key=token, limited_code=link.code)
