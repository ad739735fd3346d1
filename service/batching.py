"""Coalescing: lookups that arrive together are answered by one batched fetch.

On the redirect path the per-command cost of a client library (redis-py,
SQLAlchemy), not the server, is what limits a busy process. A Coalescer
gathers the keys asked for while the event loop runs other requests, sends
them as one MGET or one ``WHERE code IN (...)``, and hands each caller its
value. The same key asked twice while its fetch is queued or under way is
fetched once (single flight).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    """Answers ``get(key)`` calls in batches of up to ``max_batch`` keys.

    ``fetch(keys)`` returns one value per key, in order; if it raises, every
    caller of that batch gets the exception. At most ``max_in_flight``
    fetches run at once; keys asked for meanwhile wait for the next batch,
    which is what makes batches grow under load.
    """

    def __init__(
        self,
        fetch: Callable[[list[K]], Awaitable[Sequence[V]]],
        *,
        max_in_flight: int = 4,
        max_batch: int = 1000,
    ) -> None:
        self._fetch = fetch
        self._max_in_flight = max_in_flight
        self._max_batch = max_batch
        self._futures: dict[K, asyncio.Future] = {}
        self._queued: list[K] = []
        self._in_flight = 0
        self._flush_scheduled = False

    async def get(self, key: K) -> V:
        future = self._futures.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._futures[key] = future
            self._queued.append(key)
            self._schedule_flush()
        # shield: one caller giving up must not cancel the answer for the others.
        return await asyncio.shield(future)

    def _schedule_flush(self) -> None:
        if self._queued and not self._flush_scheduled and self._in_flight < self._max_in_flight:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._queued:
            return
        keys = self._queued[: self._max_batch]
        del self._queued[: self._max_batch]
        self._in_flight += 1
        asyncio.get_running_loop().create_task(self._run(keys))
        self._schedule_flush()

    async def _run(self, keys: list[K]) -> None:
        # The futures stay findable until the fetch is done, so a key asked
        # for again meanwhile waits for this fetch instead of starting another.
        futures = [self._futures[key] for key in keys]
        try:
            values = await self._fetch(keys)
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # retrieved: a caller may have given up already
        else:
            for future, value in zip(futures, values, strict=True):
                if not future.done():
                    future.set_result(value)
        finally:
            for key in keys:
                del self._futures[key]
            self._in_flight -= 1
            self._schedule_flush()
