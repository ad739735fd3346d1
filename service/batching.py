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
        # Each caller waits on a future of its own: a caller that gives up
        # (cancelled) cancels only its own, never the answer for the others,
        # and costs less than shielding one shared future per caller.
        self._waiters: dict[K, list[asyncio.Future]] = {}
        self._queued: list[K] = []
        self._in_flight = 0
        self._flush_scheduled = False

    async def get(self, key: K) -> V:
        future = asyncio.get_running_loop().create_future()
        waiters = self._waiters.get(key)
        if waiters is None:
            self._waiters[key] = [future]
            self._queued.append(key)
            self._schedule_flush()
        else:
            waiters.append(future)
        return await future

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
        # The waiters stay findable until the fetch is done, so a key asked
        # for again meanwhile waits for this fetch instead of starting another.
        try:
            values = await self._fetch(keys)
            if len(values) != len(keys):
                raise RuntimeError(f"a fetch of {len(keys)} keys gave {len(values)} values")
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
            for key in keys:
                for future in self._waiters.pop(key):
                    if not future.done():
                        future.set_exception(exc)
                        future.exception()  # retrieved: its caller may be going away
        else:
            for key, value in zip(keys, values, strict=True):
                for future in self._waiters.pop(key):
                    if not future.done():
                        future.set_result(value)
        finally:
            self._in_flight -= 1
            self._schedule_flush()
