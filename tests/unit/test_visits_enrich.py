"""Browser, OS, device type and bot flag from the User-Agent; the country from a MaxMind database."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.visits.enrich import UNKNOWN, Enricher, device_type
from tests.support_geoip import COUNTRIES, REGISTERED_ONLY, build_country_db

FIXTURE = Path(__file__).parents[1] / "data" / "user-agents.tsv"


def fixture_rows() -> list:
    rows = []
    for number, line in enumerate(FIXTURE.read_text().splitlines(), 1):
        if line.startswith("#"):
            continue
        kind, bot, device, browser, os, user_agent = line.split("\t", 5)
        rows.append(pytest.param(kind, bot == "1", device, browser, os, user_agent, id=f"{number}-{kind}"))
    return rows


ROWS = fixture_rows()


def test_the_fixture_has_over_200_real_user_agents_of_every_kind():
    assert len(ROWS) >= 200
    kinds = {row.values[0] for row in ROWS}
    assert kinds == {"desktop", "mobile", "inapp", "tablet", "tv", "crawler", "preview", "monitor", "tool"}
    assert {"curl/8.5.0", "TelegramBot (like TwitterBot)", "WhatsApp/2.23.20.0 A"} <= {r.values[5] for r in ROWS}


@pytest.fixture(scope="module")
def enricher() -> Enricher:
    return Enricher()


@pytest.mark.parametrize(("kind", "bot", "device", "browser", "os", "user_agent"), ROWS)
def test_each_user_agent_is_classified_as_the_fixture_says(enricher, kind, bot, device, browser, os, user_agent):
    agent = enricher.agent(user_agent)
    assert (agent.bot, agent.device, agent.browser, agent.os) == (bot, device, browser, os)


def test_no_browser_of_the_fixture_is_taken_for_a_bot_and_no_bot_for_a_browser(enricher):
    wrong = [r.values[5] for r in ROWS if enricher.agent(r.values[5]).bot != r.values[1]]
    assert not wrong


def test_an_agent_is_parsed_once_per_distinct_string(enricher):
    text = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0 cache-test"
    assert enricher.agent(text) is enricher.agent(text)


@pytest.mark.parametrize(("text", "family", "expected"), [
    pytest.param("Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X)", "iPad", "tablet", id="ipad"),
    pytest.param("Mozilla/5.0 (Linux; Android 13; SM-X200) Chrome/120.0.0.0 Safari/537.36", None, "tablet",
                 id="android-without-mobile"),
    pytest.param("Mozilla/5.0 (Linux; Android 13; Pixel 7) Chrome/116.0.0.0 Mobile Safari/537.36", None, "mobile",
                 id="android-mobile"),
    pytest.param("Mozilla/5.0 (SMART-TV; LINUX; Tizen 6.0) TV Safari/537.36", None, "tv", id="tv-first"),
    pytest.param("Mozilla/5.0 (Windows NT 10.0; Win64; x64)", None, "desktop", id="windows"),
    pytest.param("SomethingElse/1.0", None, UNKNOWN, id="unknown"),
])
def test_device_types(text, family, expected):
    assert device_type(text, bot=False, device_family=family) == expected


def test_a_bot_is_a_bot_whatever_its_device():
    assert device_type("Mozilla/5.0 (iPhone; ...) Googlebot", bot=True, device_family="Spider") == "bot"


@pytest.fixture(scope="module")
def country_db(tmp_path_factory) -> Path:
    return build_country_db(tmp_path_factory.mktemp("geo") / "countries.mmdb")


def test_countries_come_from_the_operators_database_by_network(country_db):
    enricher = Enricher(geoip_db=str(country_db))
    for network, code in COUNTRIES.items():
        assert enricher.country(network.split("/")[0]) == code
    assert enricher.country(next(iter(REGISTERED_ONLY)).split("/")[0]) == "NZ"
    assert enricher.country("8.8.8.0") == UNKNOWN
    assert enricher.country(None) == UNKNOWN
    enricher.close()


def test_without_a_database_every_country_is_unknown():
    assert Enricher().country("203.0.113.0") == UNKNOWN


def test_a_database_that_cannot_be_read_stops_the_start(tmp_path):
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(b"not a maxmind database")
    with pytest.raises(ValueError, match="LINKGATE_GEOIP_DB"):
        Enricher(geoip_db=str(broken))
    with pytest.raises(ValueError, match="LINKGATE_GEOIP_DB"):
        Enricher(geoip_db=str(tmp_path / "missing.mmdb"))
