"""The console at /console: a web app for the people who own links.

It is static files (``static/``: one HTML page, its script and styles, and
uPlot for the chart), sent with a strict Content-Security-Policy; the page
talks only to the public REST API under /api/v1, with the API key a person
pastes in, kept in the tab's sessionStorage. ``routes.mount`` adds it to the app.
"""

from .routes import mount

__all__ = ["mount"]
