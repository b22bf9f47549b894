"""smtp-canary-exporter: a Prometheus exporter and synthetic probe daemon for outgoing mail."""

__version__ = "0.1.0"
__all__ = ["__version__"]
