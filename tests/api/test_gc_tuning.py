"""The served app freezes its startup objects and collects young garbage less often."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from service.app import GC_THRESHOLDS


def test_the_apps_lifespan_tunes_the_garbage_collector_and_keeps_it_on(tmp_path):
    # A process of its own: freezing is for the whole interpreter.
    script = textwrap.dedent(
        f"""
        import asyncio, gc, json
        import fakeredis
        from service.app import create_app
        from tests.support import make_settings, migrate

        async def main():
            settings = make_settings("sqlite+aiosqlite:///{tmp_path}/gc.db")
            await migrate(settings.database_url)
            before = gc.get_threshold()
            app = create_app(settings, redis_client=fakeredis.FakeAsyncRedis(), configure_logs=False)
            async with app.router.lifespan_context(app):
                during = dict(threshold=gc.get_threshold(), frozen=gc.get_freeze_count(),
                              enabled=gc.isenabled())
            print(json.dumps(dict(before=before, **during)))

        asyncio.run(main())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    state = json.loads(done.stdout.strip().splitlines()[-1])
    assert tuple(state["before"]) != GC_THRESHOLDS
    assert tuple(state["threshold"]) == GC_THRESHOLDS
    assert state["frozen"] > 10_000  # the framework's objects, not a handful
    assert state["enabled"] is True
