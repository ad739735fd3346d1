"""Visit analytics: every redirect counted, a click stream, daily aggregates, the stats.

The path of a visit, one module per step:

- ``recorder``: the redirect hands each answered request (redirect, 404,
  410) to ``VisitRecorder.record``, which appends a tuple to a list and
  nothing more; its flusher, off the request path, turns them into events
  (``anonymise``, ``referrer``) and sends them to the visit stream at least
  every 250 ms, holding a bounded backlog while Redis is away;
- ``anonymise``: client addresses cut to their network (IPv4 /24, IPv6 /48)
  before they leave the process, and the visitor hash under a salt that
  rotates daily and lives only in Redis;
- ``referrer``: the referrer's host (and, when allowed, path) from the header;
- ``schema``: the versioned event format of the stream, linkgate's change feed
  for visits (``visit-event.schema.json`` beside it, docs/visits.md);
- ``stream``: the Redis Stream's keys, the append script and the consumer group;
- ``enrich``: browser, OS, device type and bot flag from the User-Agent
  (ua-parser, crawlerdetect) and the country from an operator-provided
  MaxMind database, each cached by its input; consumer side only;
- ``fold``: events to additions to the daily aggregates, in memory (pure);
- ``aggregates``: the SQL repository of the aggregates: upserts, the
  record of folded stream entries (exactly once), and the queries of the stats;
- ``consumer``: reads the stream in a consumer group, claims what dead
  consumers left, commits each batch's additions with its stream position in
  one transaction, then acknowledges;
- ``stats``: the use-case behind ``GET /api/v1/links/{code}/stats`` and
  ``GET /api/v1/stats``.
"""
