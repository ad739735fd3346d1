"""Link lifecycle: when a link is live, and what a visitor gets once it is not.

- ``state``: the named flag bits, the derived status (active, scheduled,
  expired, exhausted, disabled, blocked) and the rules a change must keep;
- ``gone``: the answer for a link that is no longer live (its fallback, the
  operator's gone URL, or 410);
- ``visit_limits``: ``max_visits``, exact across replicas (one Redis script
  call per visit of a limited link, SQL when Redis is away);
- ``bots``: which visitors do not count toward a limit;
- ``transfer``: import and export of links (CSV, JSON Lines), and purge.
"""
