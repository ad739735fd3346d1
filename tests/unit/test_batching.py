"""The Coalescer: lookups that arrive together share one fetch."""

from __future__ import annotations

import asyncio

import pytest

from service.batching import Coalescer


class Recorder:
    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.delay = delay
        self.fail = fail
        self.running = 0
        self.most_running = 0

    async def fetch(self, keys: list[str]) -> list[str]:
        self.batches.append(list(keys))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(self.delay)
            if self.fail:
                raise ConnectionError("down")
            return [key.upper() for key in keys]
        finally:
            self.running -= 1


async def test_lookups_that_arrive_together_share_one_fetch():
    recorder = Recorder()
    coalescer = Coalescer(recorder.fetch)
    values = await asyncio.gather(*(coalescer.get(k) for k in ["a", "b", "c"]))
    assert values == ["A", "B", "C"]
    assert recorder.batches == [["a", "b", "c"]]


async def test_the_same_key_asked_twice_is_fetched_once():
    recorder = Recorder(delay=0.05)
    coalescer = Coalescer(recorder.fetch)
    first = asyncio.ensure_future(coalescer.get("a"))
    await asyncio.sleep(0.01)
    assert recorder.running == 1  # its fetch is under way now
    values = await asyncio.gather(first, coalescer.get("a"), coalescer.get("a"))
    assert values == ["A", "A", "A"]
    assert recorder.batches == [["a"]]


async def test_a_failed_fetch_fails_every_caller_of_its_batch_and_the_next_batch_starts_afresh():
    recorder = Recorder(fail=True)
    coalescer = Coalescer(recorder.fetch)
    results = await asyncio.gather(coalescer.get("a"), coalescer.get("b"), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    recorder.fail = False
    assert await coalescer.get("a") == "A"


async def test_batches_grow_while_fetches_are_in_flight_and_never_exceed_the_bounds():
    recorder = Recorder(delay=0.01)
    coalescer = Coalescer(recorder.fetch, max_in_flight=2, max_batch=50)
    keys = [f"k{i}" for i in range(400)]
    values = await asyncio.gather(*(coalescer.get(k) for k in keys))
    assert values == [k.upper() for k in keys]
    assert recorder.most_running <= 2
    assert all(len(batch) <= 50 for batch in recorder.batches)
    assert sorted(k for batch in recorder.batches for k in batch) == sorted(keys)


async def test_a_caller_that_gives_up_does_not_cancel_the_answer_for_the_others():
    recorder = Recorder(delay=0.02)
    coalescer = Coalescer(recorder.fetch)
    impatient = asyncio.ensure_future(coalescer.get("a"))
    patient = asyncio.ensure_future(coalescer.get("a"))
    await asyncio.sleep(0.005)
    impatient.cancel()
    assert await patient == "A"
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_a_fetch_that_answers_the_wrong_number_of_values_fails_its_callers_instead_of_hanging():
    async def short(keys):
        return keys[:-1]

    coalescer = Coalescer(short)
    results = await asyncio.wait_for(
        asyncio.gather(coalescer.get("a"), coalescer.get("b"), return_exceptions=True), timeout=2
    )
    assert all(isinstance(r, RuntimeError) for r in results)
