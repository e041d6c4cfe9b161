"""drum-compat's framework-neutral core: every decision about a response is made here.

The Flask and FastAPI backends only translate requests in and responses out (README.md, "Layout")."""

__version__ = "0.1.0"
