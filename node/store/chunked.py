"""Queries with an ``IN (...)`` list of any length.

SQLite caps the parameters one statement may bind, so a long list is sent
in chunks; the rows of every chunk come back as one stream.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

CHUNK = 500  # values per IN list: well under SQLite's parameter limit


def select_in(conn: sqlite3.Connection, sql: str, values: Sequence[Any]) -> Iterator[Any]:
    """The rows of ``sql`` for all of ``values``; ``sql`` holds ``{marks}`` where the IN list goes."""
    for i in range(0, len(values), CHUNK):
        chunk = values[i:i + CHUNK]
        yield from conn.execute(sql.replace("{marks}", ",".join("?" * len(chunk))), chunk)
