"""IN-list queries longer than one chunk return every matching row once."""

from __future__ import annotations

import sqlite3

from node.store.chunked import CHUNK, select_in


def test_select_in_spans_chunks() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(f"id{i}", i) for i in range(3 * CHUNK)])
    wanted = [f"id{i}" for i in range(0, 3 * CHUNK, 2)] + ["absent"]  # more than two chunks
    rows = list(select_in(conn, "SELECT id, n FROM t WHERE id IN ({marks}) AND n >= 0", wanted))
    assert sorted(n for _, n in rows) == list(range(0, 3 * CHUNK, 2))
    assert list(select_in(conn, "SELECT id FROM t WHERE id IN ({marks})", [])) == []
