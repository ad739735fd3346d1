"""Rewrite the generated parts of README.md: the sections kept in docs/ and the settings table.

Run `make readme` after changing docs/*.md or service/config.py;
tests/unit/test_readme.py fails while the README is out of step.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.__main__ import settings_table  # noqa: E402

BLOCK = re.compile(r"(<!-- BEGIN (?P<name>[\w./-]+) -->\n)(?:.*?\n)?(<!-- END (?P=name) -->)", re.S)


def generated(name: str) -> str:
    if name == "settings-table":
        return settings_table()
    return (ROOT / name).read_text().rstrip("\n")


def synced(readme: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + generated(m.group("name")) + "\n" + m.group(3), readme)


if __name__ == "__main__":
    path = ROOT / "README.md"
    path.write_text(synced(path.read_text()))
