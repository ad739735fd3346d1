"""A small MaxMind-format country database built for the tests (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

# Networks of the documentation ranges (RFC 5737, RFC 3849) and what the test database says of them.
COUNTRIES = {
    "203.0.113.0/24": "AU",
    "198.51.100.0/24": "DE",
    "192.0.2.0/24": "BR",
    "2001:db8:1::/48": "JP",
}
# In the database without a country of its own: the registered country answers.
REGISTERED_ONLY = {"100.64.0.0/24": "NZ"}


def build_country_db(path: Path) -> Path:
    """Write a GeoLite2-Country-shaped database of the networks above to `path`."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country",
                        languages=["en"], description="linkgate test countries")
    for network, code in COUNTRIES.items():
        writer.insert_network(IPSet([network]), {"country": {"iso_code": code, "names": {"en": code}}})
    for network, code in REGISTERED_ONLY.items():
        writer.insert_network(IPSet([network]), {"registered_country": {"iso_code": code}})
    writer.to_db_file(str(path))
    return path
