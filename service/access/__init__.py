"""Access control: who may call the REST API, what each key may touch, and how often.

- ``keys``: API keys (``lg_<id>_<secret>``): making, hashing, checking, revoking,
  and ``last_used_at`` written in the background;
- ``policy``: the casbin enforcer over the shipped (or the operator's) model and
  policy files; it answers "may this role do this action, on any link or only
  its own";
- ``rates``: the ``N/second|minute|hour`` settings;
- ``limiter``: per-key and per-address API limits (one Redis script call per
  request) and the redirect's unknown-code limit (counted in process, shared
  in batches);
- ``addresses``: the client's address, through trusted proxies only;
- ``gate``: the ASGI middleware in front of ``/api``: authenticate, limit,
  attach the key to the request, add the RateLimit headers.
"""
