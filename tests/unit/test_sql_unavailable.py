"""Which SQL errors mean "the database is not there" (503 with Retry-After), not "the query was wrong"."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from service.store.sql import is_unavailable


def wrapped(error: Exception) -> DBAPIError:
    """As SQLAlchemy's asyncpg dialect raises it: its own error, caused by asyncpg's."""
    adapted = Exception(str(error))
    adapted.__cause__ = error
    return DBAPIError("SELECT 1", {}, adapted)


@pytest.mark.parametrize("error", [
    asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
], ids=["shutting-down", "admin-shutdown", "connection-gone"])
def test_a_server_going_or_gone_is_unavailable(error):
    assert is_unavailable(wrapped(error))


@pytest.mark.parametrize("error", [
    asyncpg.exceptions.UniqueViolationError("duplicate key"),
    asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
    asyncpg.exceptions.UndefinedTableError("relation does not exist"),
], ids=["unique", "statement-timeout", "no-table"])
def test_an_error_of_the_query_is_not(error):
    assert not is_unavailable(wrapped(error))
