"""The directory of accepted descriptors, trust anchors, pins and rosters."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from protocol.audience import Roster
from protocol.canonical import b64u_decode, canonical


def load_descriptors(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every accepted descriptor's wire form."""
    return [json.loads(r[0]) for r in conn.execute("SELECT descriptor FROM directory ORDER BY node")]


def descriptor_texts(conn: sqlite3.Connection) -> list[str]:
    """Every accepted descriptor as stored (JSON text), for callers that cache what they parsed."""
    return [r[0] for r in conn.execute("SELECT descriptor FROM directory ORDER BY node")]


def save_descriptor(conn: sqlite3.Connection, obj: dict[str, Any], now_ms: int, flagged: str | None = None) -> None:
    """Insert or replace one accepted descriptor (the caller decided it supersedes)."""
    conn.execute(
        "INSERT INTO directory (node, seq, role, name, country, revoked, flagged, descriptor, updated)"
        " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(node) DO UPDATE SET seq=excluded.seq, role=excluded.role,"
        " name=excluded.name, country=excluded.country, revoked=excluded.revoked, descriptor=excluded.descriptor,"
        " updated=excluded.updated, flagged=coalesce(excluded.flagged, directory.flagged)",
        (obj["node"], obj["seq"], obj["role"], obj["name"], obj["country"], int(bool(obj.get("revoked"))),
         flagged, canonical(obj).decode(), now_ms),
    )


def flag(conn: sqlite3.Connection, node: str, why: str) -> None:
    """Mark a node for an operator's attention (a descriptor conflict, say)."""
    conn.execute("UPDATE directory SET flagged = ? WHERE node = ?", (why, node))


def anchors(conn: sqlite3.Connection) -> dict[str, bytes]:
    """Trust anchors: node id -> identity public key."""
    return {r[0]: b64u_decode(r[1]) for r in conn.execute("SELECT node, identity_key FROM anchors")}


def add_anchor(conn: sqlite3.Connection, node: str, identity_key_b64u: str, name: str) -> None:
    conn.execute("INSERT OR REPLACE INTO anchors (node, identity_key, name) VALUES (?,?,?)", (node, identity_key_b64u, name))


def pinned(conn: sqlite3.Connection) -> set[str]:
    """Nodes accepted by hand."""
    return {r[0] for r in conn.execute("SELECT node FROM pinned")}


def pin(conn: sqlite3.Connection, node: str) -> None:
    conn.execute("INSERT OR IGNORE INTO pinned (node) VALUES (?)", (node,))


def rosters(conn: sqlite3.Connection) -> dict[str, Roster]:
    """The latest roster of every operation group we know."""
    return {
        r["grp"]: Roster(r["grp"], r["owner"], tuple(json.loads(r["members"])), r["not_after"])
        for r in conn.execute("SELECT * FROM rosters")
    }
