"""Search routes of the officer API (filled in by the search work; wired by node/runtime.py)."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Add the search and export routes to ``app``."""
