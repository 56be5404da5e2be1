"""Sync peers: where they are, our cursor into each one's feed, and their health."""

from __future__ import annotations

import sqlite3
from typing import Any


def add_peer(conn: sqlite3.Connection, node: str, url: str) -> None:
    """Add a peer, or update its URL keeping the cursor."""
    conn.execute("INSERT INTO peers (node, url) VALUES (?, ?) ON CONFLICT(node) DO UPDATE SET url=excluded.url", (node, url))


def remove_peer(conn: sqlite3.Connection, node: str) -> bool:
    return conn.execute("DELETE FROM peers WHERE node = ?", (node,)).rowcount == 1


def list_peers(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute("SELECT * FROM peers ORDER BY node")]


def save_cursor(conn: sqlite3.Connection, node: str, epoch: str, cursor: int, now_ms: int, lag: int | None) -> None:
    """Persist a cursor after the bundles before it are stored, and mark the peer healthy."""
    conn.execute(
        "UPDATE peers SET epoch=?, cursor=?, last_ok=?, failures=0, backoff_until=NULL, lag=? WHERE node=?",
        (epoch, cursor, now_ms, lag, node),
    )


def mark_ok(conn: sqlite3.Connection, node: str, now_ms: int) -> None:
    conn.execute("UPDATE peers SET last_ok=?, failures=0, backoff_until=NULL WHERE node=?", (now_ms, node))


def mark_failed(conn: sqlite3.Connection, node: str, error: str, now_ms: int, failures: int, backoff_until: int) -> None:
    conn.execute(
        "UPDATE peers SET last_error=?, last_error_at=?, failures=?, backoff_until=? WHERE node=?",
        (error[:500], now_ms, failures, backoff_until, node),
    )


def set_etag(conn: sqlite3.Connection, node: str, etag: str | None) -> None:
    conn.execute("UPDATE peers SET directory_etag=? WHERE node=?", (etag, node))


def count_rejection(conn: sqlite3.Connection, peer: str, reason: str, now_ms: int, n: int = 1) -> None:
    """Count a rejected bundle or request per peer and reason (never stores the bundle)."""
    conn.execute(
        "INSERT INTO rejections (peer, reason, count, last) VALUES (?,?,?,?)"
        " ON CONFLICT(peer, reason) DO UPDATE SET count = count + excluded.count, last = excluded.last",
        (peer, reason, n, now_ms),
    )


def rejections(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute("SELECT * FROM rejections ORDER BY peer, reason")]
