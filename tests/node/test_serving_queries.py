"""The serving queries stay index lookups whatever the store holds.

A fetch from a national caller once joined from that caller's recipient rows,
so each fetch walked every bundle addressed to the caller (14 ms a fetch at
11,000 bundles, growing with the store). These tests read SQLite's own plan
on the real schema and check the answers.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from node.store import bundles as bundle_store
from node.store.bundles import BundleRow
from node.store.db import connect, init_store

CALLER, OTHER, ORIGIN = ("n" + c * 24 for c in "bco")


def _row(i: int, recipients: tuple[str, ...]) -> BundleRow:
    return BundleRow(id=f"{i:043d}", origin=ORIGIN, created=i, expires=10**13, urgent=False, size=10, scope="x",
                     raw=f"raw{i}".encode(), recipients=recipients, state="relay", note=None, via=None, received=i)


def _store(tmp_path: Path) -> sqlite3.Connection:
    path = tmp_path / "store.db"
    init_store(path)
    conn = connect(path)
    conn.execute("BEGIN")
    bundle_store.insert_bundles(conn, [_row(i, (CALLER, ORIGIN) if i % 2 else (OTHER, ORIGIN)) for i in range(400)])
    conn.execute("COMMIT")
    return conn


def test_a_national_fetch_finds_the_ids_first(tmp_path: Path) -> None:
    conn = _store(tmp_path)
    ids = [f"{i:043d}" for i in range(100, 110)] + ["absent"]
    statements: list[str] = []
    conn.set_trace_callback(statements.append)  # the SQL as run, values filled in
    raws = bundle_store.bundles_for(conn, ids, CALLER, sees_all=False)
    conn.set_trace_callback(None)
    assert sorted(raws) == sorted(f"raw{i}".encode() for i in range(101, 110, 2))  # only the caller's
    (sql,) = statements
    plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
    assert plan[0].startswith("SEARCH b USING INDEX"), plan  # the id index, not a walk of the caller's rows
    assert any("SEARCH r USING PRIMARY KEY (node=? AND seq=?)" in p for p in plan), plan
    assert sorted(bundle_store.bundles_for(conn, ids, CALLER, sees_all=True)) == sorted(
        f"raw{i}".encode() for i in range(100, 110))
