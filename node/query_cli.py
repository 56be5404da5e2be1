"""``cenmesh query`` and ``cenmesh export`` (filled in by the search work; registered by node/cli.py)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any, api_options: Any) -> None:
    """Add the search commands to the ``cenmesh`` parser; ``api_options(p)`` adds --home/--url/--token/--json."""
    del sub, api_options


__all__ = ["argparse", "register"]
