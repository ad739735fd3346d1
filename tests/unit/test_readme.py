"""The README says what the code does."""

from __future__ import annotations

from pathlib import Path

from service.__main__ import settings_table

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_readme_opens_with_make_run_and_make_test():
    opening = "\n".join(README.splitlines()[:20])
    assert "make run" in opening and "make test" in opening


def test_readme_settings_table_matches_the_settings_class():
    assert settings_table() in README, "regenerate with: python -m service settings"
