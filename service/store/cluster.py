"""Redis Cluster: opening the client, and the few calls that differ between one Redis and a cluster.

With ``LINKGATE_REDIS_CLUSTER=true``, ``LINKGATE_REDIS_URL`` names one node
(any master or replica) of a Redis Cluster; redis-py's asyncio
``RedisCluster`` learns the others from it and sends each command to the
master of its key's slot. Nothing linkgate does needs two slots at once:
every key of one link carries the link's hash tag (``lg:{<code>}``...),
every Lua script's keys share a tag, and the visit stream, the lock, the
expiry set and each client's rate-limit windows have tags of their own.
What does span slots goes through the helpers below:

- ``mget``: MGET of keys in many slots (the coalesced cache lookup,
  reconcile). On a cluster, redis-py's ``mget_nonatomic``: one MGET per
  slot, pipelined per master. Measured against this repository's
  three-master test cluster (redis-py 8.1, hiredis), CPU per key looked up:
  142 us one at a time, 52 us in batches of 10, 18 us in batches of 50, against
  90, 9 and 2 us on one Redis. A pipeline of GETs cost a little more (149, 56, 25 us);
  a plain client per master, fed MGETs grouped by slot, more again (183, 64, 34 us).
- ``scan_batches``: SCAN walks one node; on a cluster, every master in turn.
- ``queue_publish``: redis-py refuses ``pipe.publish`` in a cluster
  pipeline, but sends ``PUBLISH`` as a plain command; a cluster carries a
  message published on any node to subscribers on every node.

Pub/sub works on both (``open_pubsub``): redis-py's cluster pub/sub
subscribes on one node, and cluster PUBLISH reaches every node.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from redis.asyncio.cluster import RedisCluster


def open_cluster(url: str, **options) -> RedisCluster:
    """A cluster client seeded by the node at `url` (it connects on first use)."""
    return RedisCluster.from_url(url, **options)


def is_cluster(client) -> bool:
    return isinstance(client, RedisCluster)


async def mget(client, keys: list) -> list:
    """GET of each key in one round trip per master (one on a single Redis), in the order given."""
    if isinstance(client, RedisCluster):
        return await client.mget_nonatomic(keys)
    return await client.mget(keys)


async def scan_batches(client, *, match: str, count: int) -> AsyncIterator[list[bytes]]:
    """The keys matching `match`, at most about `count` per batch, from every master of a cluster."""
    if not isinstance(client, RedisCluster):
        cursor = 0
        while True:
            cursor, keys = await client.scan(cursor, match=match, count=count)
            if keys:
                yield keys
            if cursor == 0:
                return
    for node in client.get_primaries():
        cursor = 0
        while True:
            cursors, keys = await client.scan(cursor, match=match, count=count, target_nodes=node)
            cursor = cursors[node.name]
            if keys:
                yield keys
            if cursor == 0:
                break


async def open_pubsub(client, **options):
    """A pub/sub of `client`; on a cluster, after the client has learnt the slot map (its pub/sub
    picks the node it subscribes on from the map, and fails on a client that has not sent a command yet)."""
    if isinstance(client, RedisCluster):
        await client.initialize()
    return client.pubsub(**options)


def queue_publish(pipe, channel: str, message: str) -> None:
    """PUBLISH as one command of a pipeline, on one Redis or a cluster."""
    pipe.execute_command("PUBLISH", channel, message)
