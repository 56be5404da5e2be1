"""Bundles: store a verified batch, serve a caller's feed and fetch, answer "do we have it"."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from node.store.chunked import select_in


@dataclass(frozen=True)
class BundleRow:
    """One bundle ready to store (already verified by ingest)."""

    id: str
    origin: str
    created: int
    expires: int
    urgent: bool
    size: int
    scope: str
    raw: bytes
    recipients: tuple[str, ...]
    state: str
    note: str | None
    via: str | None
    received: int


def known_ids(conn: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
    """The subset of ``ids`` already stored."""
    return {r[0] for r in select_in(conn, "SELECT id FROM bundles WHERE id IN ({marks})", ids)}


def insert_bundles(conn: sqlite3.Connection, rows: Iterable[BundleRow]) -> list[str]:
    """Insert rows not yet stored (idempotent); returns the ids actually inserted, in order.

    One statement per table for the whole batch: the rows already held are
    found first, the rest inserted with ``executemany`` and their ``seq``
    (given in order, above every seq before) read back for the recipients.
    Call it inside a write transaction (the store's single writer).
    """
    rows = list(rows)
    held = known_ids(conn, [r.id for r in rows])
    new: list[BundleRow] = []
    for row in rows:
        if row.id not in held:
            held.add(row.id)
            new.append(row)
    if not new:
        return []
    before = max_seq(conn)
    conn.executemany(
        "INSERT INTO bundles (id, origin, created, expires, urgent, size, scope, raw, state, note, via, received)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        [(row.id, row.origin, row.created, row.expires, int(row.urgent), row.size, row.scope, row.raw, row.state,
          row.note, row.via, row.received) for row in new],
    )
    seq = dict(conn.execute("SELECT id, seq FROM bundles WHERE seq > ?", (before,)).fetchall())
    conn.executemany("INSERT INTO bundle_recipients (node, seq) VALUES (?, ?)",
                     [(n, seq[row.id]) for row in new for n in row.recipients])
    return [row.id for row in new]


@dataclass(frozen=True)
class FeedSlice:
    """What a feed request sees: visible items, the last seq examined, and whether more exist."""

    items: list[dict[str, object]]
    next: int
    more: bool


def max_seq(conn: sqlite3.Connection) -> int:
    """The highest seq ever given (0 for an empty store); AUTOINCREMENT never reuses one."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name='bundles'").fetchone()
    return int(row[0]) if row else 0


def feed(conn: sqlite3.Connection, caller: str, *, sees_all: bool, after: int, limit: int) -> FeedSlice:
    """The caller's feed after ``after``: hubs see every bundle, others only those addressed to them.

    ``next`` is the seq of the last bundle examined, visible or not, so an idle
    poll costs one index probe however large the store is. The page and the
    top seq are read in one transaction: a bundle committed between the two
    reads would otherwise fall behind ``next`` without being on the page, and
    the caller's cursor would skip it for good.
    """
    conn.execute("BEGIN")
    try:
        return _feed(conn, caller, sees_all=sees_all, after=after, limit=limit)
    finally:
        conn.execute("COMMIT")


def _feed(conn: sqlite3.Connection, caller: str, *, sees_all: bool, after: int, limit: int) -> FeedSlice:
    if sees_all:
        rows = conn.execute(
            "SELECT seq, id, origin, created, size FROM bundles WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT b.seq, b.id, b.origin, b.created, b.size FROM bundle_recipients r JOIN bundles b ON b.seq = r.seq"
            " WHERE r.node = ? AND r.seq > ? ORDER BY r.seq LIMIT ?", (caller, after, limit)
        ).fetchall()
    top = max_seq(conn)
    if len(rows) == limit:
        last = rows[-1]["seq"]
        return FeedSlice([dict(r) for r in rows], last, last < top)
    return FeedSlice([dict(r) for r in rows], max(top, after), False)


def bundles_for(conn: sqlite3.Connection, ids: Sequence[str], caller: str, *, sees_all: bool) -> list[bytes]:
    """Raw bundles among ``ids`` that the caller may receive; unknown and forbidden are alike absent."""
    out: list[bytes] = []
    for i in range(0, len(ids), 500):
        chunk = list(ids[i:i + 500])
        marks = ",".join("?" * len(chunk))
        if sees_all:
            sql = f"SELECT raw FROM bundles WHERE id IN ({marks})"  # noqa: S608
            args: list[object] = list(chunk)
        else:
            # Find the ids first, then probe (node, seq) for each: joined the other way round, SQLite
            # walked every bundle addressed to the caller for each fetch (14 ms a fetch at 11,000).
            sql = (f"SELECT b.raw FROM bundles b WHERE b.id IN ({marks}) AND EXISTS"  # noqa: S608
                   " (SELECT 1 FROM bundle_recipients r WHERE r.node = ? AND r.seq = b.seq)")
            args = [*chunk, caller]
        out.extend(r[0] for r in conn.execute(sql, args))
    return out


def count_by_state(conn: sqlite3.Connection) -> dict[str, int]:
    """How many bundles are readable, relayed only, undecryptable."""
    return {r[0]: r[1] for r in conn.execute("SELECT state, count(*) FROM bundles GROUP BY state")}


def delete_expired(conn: sqlite3.Connection, now_ms: int) -> int:
    """Drop bundles past their expiry (records already read stay)."""
    return conn.execute("DELETE FROM bundles WHERE expires <= ?", (now_ms,)).rowcount
