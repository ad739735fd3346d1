"""The visit stream in Redis: its keys, the script that appends to it, its consumer group.

Keys (every one starts with settings.redis_key_prefix, ``lg:`` by default,
and carries the hash tag ``{visits}``, so on Redis Cluster the script below
touches one slot):

- ``lg:{visits}:stream``: the Redis Stream. One entry per flush of one
  process (schema.py has the format). Trimmed by age on every append
  (``XADD ... MINID ~ <now - LINKGATE_VISITS_STREAM_RETENTION_SECONDS>``):
  an entry older than that is gone whether it was folded or not, so that is
  how far a stopped consumer, or any other reader, may fall behind.
- ``lg:{visits}:sent:<envelope id>``: marks an envelope as appended, for
  ``SENT_MARKER_SECONDS``, so a flush retried after a lost reply is never
  appended twice.

The consumer group ``linkgate-aggregates`` feeds the SQL aggregates; other
systems (a warehouse, a fraud check) read the same stream in groups of their
own (``XGROUP CREATE lg:{visits}:stream <their group> 0``).
"""

from __future__ import annotations

import hashlib

from redis.exceptions import NoScriptError, RedisError, ResponseError

GROUP = "linkgate-aggregates"
SENT_MARKER_SECONDS = 600

# Append one envelope of visit events to the stream, once.
#   KEYS[1]: the stream; KEYS[2]: the envelope's sent-marker (same hash tag)
#   ARGV[1]: MINID: entries older than this (ms since the epoch) are trimmed
#   ARGV[2]: seconds the marker lives; ARGV[3]: schema version; ARGV[4]: the visits document
#   Returns the new entry's id, or false when the marker says it was appended already.
APPEND = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
  return redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[1], '*', 'v', ARGV[3], 'visits', ARGV[4])
end
return false
"""
_APPEND_SHA = hashlib.sha1(APPEND.encode()).hexdigest()


def position(entry_id: bytes | str) -> str:
    """A stream entry id as text that sorts like the id (``<ms>-<seq>``, zero-padded): SQL compares these."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return f"{int(ms):013d}-{int(seq or 0):020d}"


def position_at(ms: int) -> str:
    """The position of the first entry id a stream can have at `ms` milliseconds since the epoch."""
    return f"{max(ms, 0):013d}-{0:020d}"


class VisitStream:
    """The stream's keys and the Redis calls on it that producer and consumer share."""

    def __init__(self, redis, *, prefix: str, retention_seconds: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.key = f"{prefix}{{visits}}:stream"
        self.retention_ms = retention_seconds * 1000

    def sent_marker(self, envelope_id: str) -> str:
        return f"{self.prefix}{{visits}}:sent:{envelope_id}"

    async def append(self, envelopes: list[tuple[str, bytes]], *, now_ms: int, version: int) -> None:
        """Append (envelope id, document) pairs in one round trip; each at most once, however often retried."""
        minid = str(now_ms - self.retention_ms)
        for attempt in (1, 2):
            pipe = self.redis.pipeline(transaction=False)
            for envelope_id, document in envelopes:
                pipe.execute_command("EVALSHA", _APPEND_SHA, 2, self.key, self.sent_marker(envelope_id),
                                     minid, SENT_MARKER_SECONDS, version, document)
            replies = await pipe.execute(raise_on_error=False)
            if not any(isinstance(reply, NoScriptError) for reply in replies):
                break
            if attempt == 2:
                raise RedisError("the visit append script could not be loaded")
            # A new or flushed Redis: load the script and send again; the
            # markers make the envelopes that did go through a no-op.
            await self.redis.script_load(APPEND)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply

    async def ensure_group(self, group: str = GROUP) -> None:
        """Create the consumer group (reading from the stream's start) unless it exists."""
        try:
            await self.redis.xgroup_create(self.key, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
