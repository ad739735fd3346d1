"""The QR marker and the qr source of visits (pure)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

import pytest

from service.pages.marker import QR_VISIT, marked, strip_marker
from service.visits import schema
from service.visits.enrich import Enricher
from service.visits.fold import Folder

PHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
         "Version/18.1 Mobile/15E148 Safari/604.1")
DEC_1 = 20423 * 86_400_000


@pytest.mark.parametrize(("query", "left", "qr"), [
    (b"qr=1", b"", True),
    (b"qr=1&utm_source=poster", b"utm_source=poster", True),
    (b"a=1&qr=1", b"a=1&qr=1", False),
    (b"qr=10", b"qr=10", False),
    (b"qr=1x&b=2", b"qr=1x&b=2", False),
    (b"", b"", False),
], ids=["alone", "first", "not-first", "other-value", "longer-value", "empty"])
def test_only_a_leading_qr_marker_is_stripped_and_noted(query, left, qr):
    scope: dict = {}
    assert strip_marker(query, scope) == left
    assert (QR_VISIT in scope) is qr


def test_the_marked_url_is_the_short_url_with_the_marker():
    assert marked("https://sho.rt/abc") == "https://sho.rt/abc?qr=1"


def test_visits_from_the_qr_code_fold_into_the_qr_source():
    folder = Folder(Enricher())
    item = schema.decode({b"v": b"1", b"visits": schema.encode(
        [["198.51.100.0", None, PHONE, None, None]],
        [[DEC_1, 7, "abc", 302, "GET", 0, True], [DEC_1, 7, "abc", 302, "GET", 0, True],
         [DEC_1, 7, "abc", 302, "GET", 0, False]])})
    groups, orphans = defaultdict(int), defaultdict(lambda: [0, 0])
    delta = folder.delta(groups, orphans, folder.count(item, groups, orphans, {}))
    dec1 = date(2025, 12, 1)
    phone = ("direct", "unknown", "Mobile Safari", "iOS", "mobile")
    assert sorted(row for row in delta.groups if row[0] == 7) == sorted([
        (7, dec1, dec1, *phone, "link", 0, 1), (7, dec1, dec1, *phone, "qr", 0, 2)])
