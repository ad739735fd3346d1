"""Many replicas, one truth: the fenced Redis lock, link change events (outbox, relay, pub/sub),
webhooks, expiry timers and the reconcile job.

- lock.py: SET NX PX lock with a watchdog and a fencing token SQL writes carry;
- events.py: the outbox rows written in each change's transaction;
- changes.py: pub/sub invalidation between replicas, and the expiry set;
- relay.py: outbox -> link-event stream + pub/sub + webhook deliveries;
- webhooks.py: signing, the request-time address check, delivery with backoff;
- expiry.py: link.gone when valid_until comes;
- coordinator.py: the loop one replica at a time runs (relay, webhooks, expiry);
- reconcile.py: brings Redis back in line with SQL (`python -m service reconcile`).
"""
