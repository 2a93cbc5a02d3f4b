"""closerdesk: the back office of a high-ticket sales team."""

__version__ = "0.1.0"
