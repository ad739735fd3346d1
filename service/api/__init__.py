"""REST routers: links, health; the problem-JSON error handlers."""
