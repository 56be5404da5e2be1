"""Server-rendered web pages for officers, analysts and admins (wired by node/runtime.py)."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Add the web pages to ``app``."""
