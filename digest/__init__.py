"""Weekly themed email digests from web listings and feeds."""

__version__ = "0.1.0"
