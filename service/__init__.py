"""linkgate: a URL shortener with a gateway-style query filter."""

__version__ = "0.1.0"
