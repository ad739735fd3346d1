"""Pipelined script calls: a NOSCRIPT answer loads the script and resends only the calls it hit."""

from __future__ import annotations

import fakeredis
from redis.exceptions import NoScriptError

from service.store import scripts

COUNT = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


async def test_a_fresh_redis_gets_the_script_loaded_and_every_call_runs_once():
    redis = fakeredis.FakeAsyncRedis()
    calls = [(("n",), (1,)), (("n",), (2,)), (("m",), (5,))]
    assert await scripts.run_calls(redis, COUNT, scripts.sha_of(COUNT), calls) == [1, 3, 5]
    assert await scripts.run_calls(redis, COUNT, scripts.sha_of(COUNT), calls) == [4, 6, 10]


class HalfLoaded:
    """A Redis whose script another process loads while our pipeline is under way (after the first call)."""

    def __init__(self) -> None:
        self.ran: list[tuple] = []
        self.loaded = False
        self.sent = 0

    def pipeline(self, transaction: bool):
        redis = self

        class Pipe:
            def __init__(self) -> None:
                self.commands: list[tuple] = []

            def execute_command(self, *command):
                self.commands.append(command)

            async def execute(self, raise_on_error: bool):
                replies = []
                for command in self.commands:
                    redis.sent += 1
                    if redis.loaded or redis.sent == 1:
                        redis.ran.append(command[3:])
                        replies.append(len(redis.ran))
                    else:
                        replies.append(NoScriptError("NOSCRIPT"))
                return replies

        return Pipe()

    async def script_load(self, source: str) -> str:
        self.loaded = True
        return scripts.sha_of(source)


async def test_calls_that_ran_before_a_noscript_are_not_sent_again():
    redis = HalfLoaded()
    calls = [(("a",), (1,)), (("b",), (1,)), (("c",), (1,))]
    replies = await scripts.run_calls(redis, COUNT, scripts.sha_of(COUNT), calls)
    assert [command[0] for command in redis.ran] == ["a", "b", "c"]  # each ran exactly once
    assert replies == [1, 2, 3]
