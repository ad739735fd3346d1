"""Apply and inspect Alembic migrations, from the CLI or from code."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Passed as an attribute, not an ini option: URLs may hold '%' (escaped passwords).
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str) -> None:
    """Bring the database to the newest revision (opens its own event loop)."""
    command.upgrade(alembic_config(database_url), "head")


async def upgrade_engine(engine: AsyncEngine) -> None:
    """Bring the database to the newest revision on an engine the caller owns."""

    def _upgrade(sync_connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = sync_connection
        command.upgrade(config, "head")

    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def schema_state(engine: AsyncEngine) -> str:
    """'ok' at this code's head; 'ahead' when a newer release already migrated
    (this code still works: migrations only add until a later release
    removes); 'behind' when the schema is older than this code needs."""
    async with engine.connect() as connection:
        current = await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )
    script = ScriptDirectory.from_config(alembic_config())
    if current == script.get_current_head():
        return "ok"
    if current is not None and current not in {rev.revision for rev in script.walk_revisions()}:
        return "ahead"
    return "behind"


async def is_at_head(engine: AsyncEngine) -> bool:
    return await schema_state(engine) == "ok"
