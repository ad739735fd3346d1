"""The fault drills of `make chaos`, short: each breaks a store or a server of its own under load."""

from __future__ import annotations

import pytest

from bench.chaos import DRILLS, SHORT

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("drill", [drill for drill in DRILLS if drill.run is not None],
                         ids=lambda drill: f"drill-{drill.number}")
async def test_what_the_drill_must_hold_holds(drill):
    result = await drill.run(SHORT)
    print(f"drill {drill.number} ({drill.fault}): {result.measured}")
    assert result.held, result.problems
