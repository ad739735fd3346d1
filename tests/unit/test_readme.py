"""The README says what the code does."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def load_sync():
    spec = importlib.util.spec_from_file_location("sync_readme", ROOT / "docs" / "sync_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_opens_with_make_run_and_make_test():
    opening = "\n".join(README.splitlines()[:20])
    assert "make run" in opening and "make test" in opening


def test_readme_generated_parts_match_the_code_and_docs():
    """Settings table from service/config.py, sections from docs/: run `make readme` to fix."""
    assert load_sync().synced(README) == README


def test_readme_embeds_the_settings_table_and_both_doc_sections():
    from service.__main__ import settings_table

    assert settings_table() in README
    for name in ("docs/query-filter.md", "docs/deploy.md"):
        assert (ROOT / name).read_text().strip() in README
