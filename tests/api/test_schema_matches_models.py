"""The migrations make exactly the schema the models describe (so a model change needs its migration)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from service.store.models import Base
from tests.support import migrate


async def schema_differences(url: str) -> list:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata))
    finally:
        await engine.dispose()


async def test_the_migrated_sqlite_schema_is_the_models(sqlite_url):
    await migrate(sqlite_url)
    assert await schema_differences(sqlite_url) == []
