"""Read-only SQL the pages need beyond node/store: dashboard figures, a bundle's readers, trust lists.

Plain functions of a ``sqlite3.Connection``, run on a store reader
(``await node.store.read(fn, ...)``). The figures count the latest version
of each record this node can read, leaving retracted ones out.
"""

from __future__ import annotations

import datetime
import sqlite3
from typing import Any


def seizures_by_category(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """(category, count), largest first."""
    rows = conn.execute("SELECT category, count(*) AS n FROM record_facets WHERE kind = 'seizure' AND retracted = 0"
                        " GROUP BY category ORDER BY n DESC, category")
    return [(r[0] or "other", r[1]) for r in rows]


def last_months(today: str, n: int = 12) -> list[str]:
    """The ``n`` months up to and including the one of ``today`` (YYYY-MM-DD), oldest first, as YYYY-MM."""
    d = datetime.date.fromisoformat(today)
    year, month = d.year, d.month
    out = []
    for _ in range(n):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return out[::-1]


def seizures_by_month(conn: sqlite3.Connection, today: str, n: int = 12) -> list[tuple[str, int]]:
    """(YYYY-MM, count) of seizures by date of detection over the last ``n`` months, empty months included."""
    months = last_months(today, n)
    counts = dict(conn.execute(
        "SELECT substr(date, 1, 7) AS m, count(*) FROM record_facets WHERE kind = 'seizure' AND retracted = 0"
        " AND date >= ? GROUP BY m", (months[0] + "-01",)).fetchall())
    return [(m, counts.get(m, 0)) for m in months]


def top_routes(conn: sqlite3.Connection, limit: int = 8) -> list[tuple[str, str, int]]:
    """(departure, destination, count) of the commonest seizure routes."""
    rows = conn.execute(
        "SELECT departure, destination, count(*) AS n FROM record_facets WHERE kind = 'seizure' AND retracted = 0"
        " AND departure IS NOT NULL AND destination IS NOT NULL GROUP BY departure, destination"
        " ORDER BY n DESC, departure, destination LIMIT ?", (limit,))
    return [(r[0], r[1], r[2]) for r in rows]


def totals(conn: sqlite3.Connection) -> dict[str, int]:
    """Readable records by kind, and local records not yet shared."""
    out = {r[0]: r[1] for r in conn.execute("SELECT kind, count(*) FROM records WHERE retracted = 0 GROUP BY kind")}
    out["local"] = conn.execute("SELECT count(*) FROM drafts WHERE shared_bundle IS NULL").fetchone()[0]
    return out


def bundle_readers(conn: sqlite3.Connection, bundle_id: str) -> list[str]:
    """The node ids a bundle was sealed to (its recipients), sorted."""
    rows = conn.execute("SELECT r.node FROM bundle_recipients r JOIN bundles b ON b.seq = r.seq WHERE b.id = ?"
                        " ORDER BY r.node", (bundle_id,))
    return [r[0] for r in rows]


def bundle_urgent(conn: sqlite3.Connection, bundle_id: str) -> bool:
    row = conn.execute("SELECT urgent FROM bundles WHERE id = ?", (bundle_id,)).fetchone()
    return bool(row and row[0])


def anchors(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Trust anchors with the name they were added under."""
    return [dict(r) for r in conn.execute("SELECT node, name, identity_key FROM anchors ORDER BY name, node")]


def directory_rows(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every accepted descriptor's summary, with the operator flag, by name."""
    return [dict(r) for r in conn.execute(
        "SELECT node, seq, role, name, country, revoked, flagged, updated FROM directory ORDER BY name, node")]


