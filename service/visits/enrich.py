"""What a visit's event does not say outright: browser, OS, device type, bot or not, country.

Consumer side only: none of this ever runs on the redirect path.

- ``ua-parser`` (1.x, with the ``regex`` extra: ua-parser-rs, its Rust
  resolver) gives browser and OS families; ``crawlerdetect`` (the Python
  port of CrawlerDetect's ~1,400 patterns) decides what is a bot, together
  with ua-parser's own "Spider" device. Measured here on one core: ua-parser
  ~13 us a User-Agent with the Rust resolver against ~900 us with its pure
  Python one; crawlerdetect ~150 us. Both are cached by the User-Agent
  string, and real traffic repeats its User-Agents, so a fold pays them once
  per distinct string (docs/visits.md).
- the device type (desktop, mobile, tablet, tv, bot, unknown) is read from
  ua-parser's result and a few tokens of the string, below;
- the country comes from an operator-provided MaxMind-format database
  (``LINKGATE_GEOIP_DB``, read with ``maxminddb``), looked up by the
  anonymised network address the event carries, cached by it; without a
  database every country is ``unknown``. Nothing is ever downloaded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from crawlerdetect import CrawlerDetect
from ua_parser import Domain

try:  # ua-parser[regex]: the Rust resolver, ~70x the pure-Python one
    from ua_parser import load_lazy_builtins as _load
    from ua_parser.regex import Resolver as _Resolver
except ImportError:  # pragma: no cover - only without the extra
    from ua_parser import BasicResolver as _Resolver  # type: ignore[assignment]
    from ua_parser import load_builtins as _load  # type: ignore[assignment]

UNKNOWN = "unknown"
# What crawlerdetect and ua-parser both missed on the test fixture
# (tests/data/user-agents.tsv): previewers and tools that name themselves
# without any bot word. Lower case, matched as substrings.
_MORE_BOTS = ("(viber)", "tumblr/", "windowspowershell", "insomnia/", "/synthetics", "checkly/")
# Distinct User-Agents and networks remembered by one consumer.
AGENT_CACHE_SIZE = 50_000
COUNTRY_CACHE_SIZE = 100_000
MAX_NAME = 64

_TV = ("smart-tv", "smarttv", "googletv", "appletv", "hbbtv", "netcast", "web0s", "webos.tv", "crkey", "roku",
       "tizen tv", "bravia", "aftb", "aftm", "aftt", "playstation", "xbox", "nintendo")
_TABLET = ("ipad", "tablet", "kindle", "silk/", "playbook", "nexus 7", "nexus 9", "nexus 10", "sm-t", "gt-p")
_MOBILE = ("mobile", "iphone", "ipod", "android", "windows phone", "blackberry", "bb10", "opera mini", "kaios")
_DESKTOP = ("windows nt", "macintosh", "mac os x", "x11", "cros", "linux x86_64", "ubuntu", "fedora")


@dataclass(frozen=True, slots=True, eq=False)
class Agent:
    """What a User-Agent says about the visit.

    Compared and hashed by identity (the fold keys its counts by it, once per
    visit): equal agents are one cached object, and two that are not still
    add up to the same rows.
    """

    browser: str
    os: str
    device: str
    bot: bool


def device_type(user_agent: str, *, bot: bool, device_family: str | None) -> str:
    """desktop, mobile, tablet, tv, bot or unknown.

    Tablets before phones (an iPad or an Android tablet without "Mobile"
    says "Android" too), TVs and consoles before both.
    """
    if bot:
        return "bot"
    text = user_agent.lower()
    if any(token in text for token in _TV):
        return "tv"
    if any(token in text for token in _TABLET) or ("android" in text and "mobile" not in text):
        return "tablet"
    if any(token in text for token in _MOBILE) or device_family in ("iPhone", "Generic Smartphone"):
        return "mobile"
    if any(token in text for token in _DESKTOP):
        return "desktop"
    return UNKNOWN


@functools.cache
def _resolver():
    """ua-parser's resolver, built on first use (~0.2 s) and shared: it holds no state per call."""
    return _Resolver(_load())


def _looks_automated(text: str, unknown_browser: bool) -> bool:
    """A User-Agent no browser sends: none, a script's bare name, or a contact address (bots give one)."""
    if len(text.strip(" -")) == 0 or any(token in text for token in _MORE_BOTS):
        return True
    if unknown_browser and "(" not in text:  # "node", "Mozilla/5.0", "Google-Safety": no platform at all
        return True
    return "+http" in text or "+mailto:" in text


def _name(family: str | None) -> str:
    return UNKNOWN if not family or family == "Other" else family[:MAX_NAME]


class Enricher:
    """User-Agent and address enrichment, each cached by its input (one per consumer)."""

    def __init__(self, *, geoip_db: str | None = None) -> None:
        self._crawlers = CrawlerDetect()
        self._geo = None
        if geoip_db:
            import maxminddb

            try:
                self._geo = maxminddb.open_database(geoip_db)
            except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
                raise ValueError(f"LINKGATE_GEOIP_DB: cannot read {geoip_db!r} as a MaxMind database: {exc}") from None
        self.agent = functools.lru_cache(maxsize=AGENT_CACHE_SIZE)(self._agent)
        self.country = functools.lru_cache(maxsize=COUNTRY_CACHE_SIZE)(self._country)

    def _agent(self, user_agent: str) -> Agent:
        parsed = _resolver()(user_agent, Domain.ALL)
        device_family = parsed.device.family if parsed.device else None
        text = user_agent.lower()
        bot = (
            device_family == "Spider"
            or self._crawlers.is_crawler(user_agent)
            or _looks_automated(text, parsed.user_agent is None or parsed.user_agent.family == "Other")
        )
        return Agent(
            browser=_name(parsed.user_agent.family if parsed.user_agent else None),
            os=_name(parsed.os.family if parsed.os else None),
            device=device_type(user_agent, bot=bot, device_family=device_family),
            bot=bot,
        )

    def _country(self, network: str | None) -> str:
        if self._geo is None or not network:
            return UNKNOWN
        try:
            record = self._geo.get(network)
        except ValueError:
            return UNKNOWN
        if not isinstance(record, dict):
            return UNKNOWN
        for key in ("country", "registered_country"):
            place = record.get(key)
            if isinstance(place, dict) and isinstance(place.get("iso_code"), str):
                return place["iso_code"].upper()[:8]
        return UNKNOWN

    def close(self) -> None:
        if self._geo is not None:
            self._geo.close()
