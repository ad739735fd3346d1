"""Lua scripts sent as EVALSHA calls in one pipeline, loaded when Redis does not know them.

Both the API limiter and the visit limits batch their script calls this way:
a lone EVALSHA costs redis-py ~65 us of CPU, one in a pipeline of 50 ~13 us.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from redis.exceptions import NoScriptError


def sha_of(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()


async def _send(redis, sha: str, calls: Sequence[tuple[Sequence, Sequence]]) -> list:
    pipe = redis.pipeline(transaction=False)
    for keys, args in calls:
        pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
    return await pipe.execute(raise_on_error=False)


async def run_calls(redis, source: str, sha: str, calls: Sequence[tuple[Sequence, Sequence]]) -> list:
    """Each (keys, args) call's reply, in order; the first error raises.

    A Redis that is new or was flushed answers NOSCRIPT: the script is loaded
    and only those calls are sent again. The others ran already (another
    process may have loaded the script while the pipeline was under way), so
    sending them again would count twice.
    """
    replies = await _send(redis, sha, calls)
    missing = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        await redis.script_load(source)
        for index, reply in zip(missing, await _send(redis, sha, [calls[i] for i in missing]), strict=True):
            replies[index] = reply
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies
