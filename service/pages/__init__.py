"""Pages for visitors: what a person sees instead of (or before) a redirect.

One small template set (templates/, Jinja2 with auto-escaping) renders the
404, 410, password, preview and error pages; static/ holds the one style
sheet, the favicon and robots.txt. Nothing is loaded from anywhere else, so
every page goes out under one strict Content-Security-Policy (render.py).

- ``render.py``: the templates (an operator's ``LINKGATE_TEMPLATES_DIR``
  first), the security headers every page carries, and ``Answer``;
- ``assets.py``: ``/static/pages.css``, ``/favicon.ico``, ``/robots.txt``;
- ``qr.py``: ``GET /{code}/qr``, the QR code of a short URL; ``marker.py``:
  the ``qr=1`` the code carries, which the redirect strips and counts;
- ``preview.py``: ``GET /{code}+``;
- ``password_hash.py``: argon2id hashing of link passwords;
  ``password.py``: the password form, its attempts and the unlock;
- ``standing.py``: a link's state as a page needs it, through the redirect's cache.

``console/`` (the web console) is its own package.
"""
