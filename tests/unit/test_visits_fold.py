"""The event format, folding events into aggregate rows, and the arithmetic of stats ranges (all pure)."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date

import jsonschema
import pytest

from service.errors import InvalidInput
from service.visits import schema
from service.visits.aggregates import split_by_months
from service.visits.enrich import Enricher
from service.visits.fold import SERVICE, Folder
from service.visits.stats import MAX_DAYS, parse_day, stats_range, top

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/18.1 Mobile/15E148 Safari/604.1")
DAY_MS = 86_400_000
DEC_1 = 20423 * DAY_MS  # 2025-12-01 00:00 UTC


def envelope(clients, visits) -> schema.Envelope:
    return schema.decode({b"v": b"1", b"visits": schema.encode(clients, visits)})


def test_an_entry_decodes_and_expands_to_one_visit_per_event():
    entry = envelope(
        [["203.0.113.0", "00112233aabbccdd", CHROME, "t.co", None]],
        [[DEC_1 + 5, 7, "abc", 302, "GET", 0, False], [DEC_1 + 9, None, "nope", 404, "HEAD", 0, False]],
    )
    first, second = schema.expand(entry)
    assert (first.ts, first.link_id, first.code, first.status, first.address, first.referrer_host) == (
        DEC_1 + 5, 7, "abc", 302, "203.0.113.0", "t.co")
    assert (second.link_id, second.status, second.method, second.visitor) == (None, 404, "HEAD", "00112233aabbccdd")


@pytest.mark.parametrize(("fields", "error"), [
    pytest.param({b"v": b"2", b"visits": b"{}"}, schema.UnsupportedVersion, id="newer-version"),
    pytest.param({b"visits": b"{}"}, schema.UnsupportedVersion, id="no-version"),
    pytest.param({b"v": b"1", b"visits": b"not json"}, schema.InvalidEntry, id="not-json"),
    pytest.param({b"v": b"1", b"visits": b'{"clients": []}'}, schema.InvalidEntry, id="no-visits"),
    pytest.param({b"v": b"1"}, schema.InvalidEntry, id="no-document"),
])
def test_entries_that_are_not_version_1_documents_are_refused(fields, error):
    with pytest.raises(error):
        schema.decode(fields)


def test_the_json_schema_accepts_what_linkgate_writes_and_refuses_a_raw_address():
    document = json.loads(schema.encode(
        [["203.0.113.0", "00112233aabbccdd", CHROME, "t.co", "/x"], [None, None, "", None, None]],
        [[DEC_1, 7, "abc", 302, "GET", 0, False], [DEC_1, None, "zz", 404, "HEAD", 1, False]],
    ))
    validator = jsonschema.Draft202012Validator(json.loads(schema.SCHEMA_FILE.read_text()))
    validator.validate(document)
    document["clients"][0][1] = "not a hash"
    assert not validator.is_valid(document)
    document["visits"][0][3] = 200
    assert not validator.is_valid(document)


@pytest.fixture(scope="module")
def folder() -> Folder:
    return Folder(Enricher())


def fold(folder: Folder, *envelopes, codes=None):
    groups, orphans, visitors, visits = defaultdict(int), defaultdict(lambda: [0, 0]), {}, 0
    for item in envelopes:
        visits += folder.count(item, groups, orphans, codes or {}, visitors)
    return folder.delta(groups, orphans, visits, visitors)


def test_visits_fold_into_groups_per_link_day_and_kind_of_client_and_the_whole_services(folder):
    delta = fold(folder, envelope(
        [["203.0.113.0", "00000000000000ff", CHROME, "t.co", None], ["198.51.100.0", None, IPHONE, None, None],
         ["192.0.2.0", "0000000000000001", "curl/8.5.0", None, None],
         ["192.0.2.0", "00000000000000fe", CHROME, "t.co", None]],
        [[DEC_1 + 1, 7, "abc", 302, "GET", 0, False], [DEC_1 + 2, 7, "abc", 302, "GET", 0, False],
         [DEC_1 + 3, 7, "abc", 302, "GET", 1, False], [DEC_1 + 4, 7, "abc", 302, "GET", 2, False],
         [DEC_1 + 4, 7, "abc", 302, "GET", 3, False],
         [DEC_1 + 5, None, "gone", 404, "GET", 2, False], [DEC_1 + DAY_MS, 8, "def", 301, "GET", 1, False]],
    ))
    dec1, dec2 = date(2025, 12, 1), date(2025, 12, 2)
    chrome = ("t.co", "unknown", "Chrome", "Windows", "desktop", "link")
    iphone = ("direct", "unknown", "Mobile Safari", "iOS", "mobile", "link")
    curl = ("direct", "unknown", "curl", "unknown", "bot", "link")
    assert delta.visits == 7
    # Two visitors alike (Chrome from t.co) are one group of 3 visits.
    assert sorted(delta.groups) == sorted([
        (7, dec1, dec1, *chrome, 0, 3), (7, dec1, dec1, *iphone, 0, 1), (7, dec1, dec1, *curl, 1, 1),
        (8, dec2, dec1, *iphone, 0, 1),
        (SERVICE, dec1, dec1, *chrome, 0, 3), (SERVICE, dec1, dec1, *iphone, 0, 1),
        (SERVICE, dec1, dec1, *curl, 1, 1), (SERVICE, dec2, dec1, *iphone, 0, 1),
    ])
    assert delta.totals == {7: [4, 1], 8: [1, 0]}
    assert delta.orphans == {(dec1, 404): [0, 1]}
    # Visitors without a hash (DNT, excluded) are not uniques; bots are kept apart.
    assert sorted(delta.visitors) == sorted([
        (7, dec1, 255, 0), (7, dec1, 1, 1), (7, dec1, 254, 0),
        (SERVICE, dec1, 255, 0), (SERVICE, dec1, 1, 1), (SERVICE, dec1, 254, 0),
    ])


def test_a_redirect_without_a_link_id_counts_for_the_link_its_code_names(folder):
    item = envelope([[None, None, CHROME, None, None]], [[DEC_1, None, "old", 302, "GET", 0, False],
                                                        [DEC_1, None, "unknown", 302, "GET", 0, False]])
    delta = fold(folder, item, codes={"old": 42, "unknown": None})
    assert delta.totals == {42: [1, 0]}


@pytest.mark.parametrize("visits", [
    pytest.param([[DEC_1, 7, "abc", 302, "GET", 5, False]], id="client-out-of-range"),
    pytest.param([[DEC_1, 7, "abc", 302, "GET", -1, False]], id="negative-client"),
    pytest.param([["soon", 7, "abc", 302, "GET", 0, False]], id="time-not-a-number"),
    pytest.param([[DEC_1, 7]], id="short-row"),
])
def test_a_malformed_entry_is_refused_whole(folder, visits):
    groups = defaultdict(int)
    with pytest.raises(schema.InvalidEntry):
        folder.count(envelope([[None, None, CHROME, None, None]], visits), groups, defaultdict(list), {})
    assert not groups


TODAY = date(2026, 6, 15)


@pytest.mark.parametrize(("start", "end", "expected"), [
    pytest.param(None, None, (date(2026, 5, 17), TODAY), id="last-30-days"),
    pytest.param(None, date(2026, 1, 30), (date(2026, 1, 1), date(2026, 1, 30)), id="30-days-to-to"),
    pytest.param(date(2026, 6, 1), None, (date(2026, 6, 1), TODAY), id="from-to-today"),
    pytest.param(date(2025, 5, 12), date(2026, 6, 15), (date(2025, 5, 12), TODAY), id="400-days"),
    pytest.param(TODAY, TODAY, (TODAY, TODAY), id="one-day"),
])
def test_stats_ranges(start, end, expected):
    assert stats_range(start, end, today=TODAY) == expected


@pytest.mark.parametrize(("start", "end"), [
    pytest.param(date(2025, 5, 11), TODAY, id="401-days"),
    pytest.param(date(2026, 6, 2), date(2026, 6, 1), id="from-after-to"),
])
def test_ranges_over_400_days_or_backwards_are_refused(start, end):
    with pytest.raises(InvalidInput):
        stats_range(start, end, today=TODAY)
    assert MAX_DAYS == 400


@pytest.mark.parametrize("text", ["2026-13-01", "2026-02-30", "26-01-01", "2026-1-1", "1999-12-31", "9999-12-31"])
def test_days_that_are_not_dates_in_range_are_refused(text):
    with pytest.raises(InvalidInput):
        parse_day("from", text)


def test_top_keeps_ten_and_adds_up_the_rest_as_other():
    values = {f"site{n:02d}": [n, 100] for n in range(1, 15)}
    listed = top(values, include_bots=False)
    assert [item["name"] for item in listed[:3]] == ["site14", "site13", "site12"]
    assert listed[-1] == {"name": "other", "visits": 1 + 2 + 3 + 4}
    assert len(listed) == 11
    with_bots = top(values, include_bots=True)
    assert with_bots[0] == {"name": "site14", "visits": 114}
    assert top({"a": [0, 3]}, include_bots=False) == []


@pytest.mark.parametrize(("start", "end", "months", "edges"), [
    pytest.param(date(2025, 1, 15), date(2025, 3, 10), (date(2025, 2, 1), date(2025, 2, 1)),
                 [(date(2025, 1, 15), date(2025, 1, 31)), (date(2025, 3, 1), date(2025, 3, 10))], id="edges"),
    pytest.param(date(2025, 1, 1), date(2025, 12, 31), (date(2025, 1, 1), date(2025, 12, 1)), [], id="a-year"),
    pytest.param(date(2025, 1, 15), date(2025, 1, 20), None, [(date(2025, 1, 15), date(2025, 1, 20))],
                 id="within-a-month"),
    pytest.param(date(2024, 2, 1), date(2024, 2, 29), (date(2024, 2, 1), date(2024, 2, 1)), [], id="leap-february"),
])
def test_a_range_splits_into_whole_months_and_the_days_around_them(start, end, months, edges):
    assert split_by_months(start, end) == (months, edges)
