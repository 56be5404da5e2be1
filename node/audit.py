"""The append-only audit log: who did what, when, from where, each entry chained to the last.

Every entry's ``hash`` is sha256 over the previous entry's hash and the
entry's own fields, so editing or deleting any entry breaks the chain from
there on; ``verify`` finds the first break. The table also refuses UPDATE
and DELETE with triggers (node/store/schema.py m002).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
ACTIONS = ("view", "search", "share", "export", "record", "feedback", "edit", "retract", "import",
           "login", "logout", "admin")


def entry_hash(prev: str, at: int, user: str, role: str, action: str, target: str | None,
               detail: str | None, source: str | None) -> str:
    body = json.dumps([prev, at, user, role, action, target, detail, source], ensure_ascii=False,
                      separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def append(conn: sqlite3.Connection, *, at: int, user: str, role: str, action: str, target: str | None = None,
           detail: str | None = None, source: str | None = None) -> str:
    """Add one entry (inside the caller's write transaction); returns its hash."""
    row = conn.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    prev = row[0] if row else GENESIS
    digest = entry_hash(prev, at, user, role, action, target, detail, source)
    conn.execute(
        "INSERT INTO audit (at, user, role, action, target, detail, source, prev, hash) VALUES (?,?,?,?,?,?,?,?,?)",
        (at, user, role, action, target, detail, source, prev, digest),
    )
    return digest


@dataclass(frozen=True)
class ChainCheck:
    """The outcome of verifying the chain."""

    entries: int
    ok: bool
    first_bad: int | None = None
    why: str | None = None


def verify(conn: sqlite3.Connection) -> ChainCheck:
    """Recompute every hash in order; report the first entry that does not follow from the one before."""
    prev, n, last_seq = GENESIS, 0, 0
    for r in conn.execute("SELECT * FROM audit ORDER BY seq"):
        n += 1
        if r["seq"] != last_seq + 1:
            return ChainCheck(n, False, r["seq"], f"entries {last_seq + 1}..{r['seq'] - 1} are missing")
        if r["prev"] != prev:
            return ChainCheck(n, False, r["seq"], "does not point at the entry before it")
        expected = entry_hash(prev, r["at"], r["user"], r["role"], r["action"], r["target"], r["detail"], r["source"])
        if expected != r["hash"]:
            return ChainCheck(n, False, r["seq"], "its content was changed")
        prev, last_seq = r["hash"], r["seq"]
    top = conn.execute("SELECT seq FROM sqlite_sequence WHERE name='audit'").fetchone()
    if top and top[0] != last_seq:
        return ChainCheck(n, False, last_seq + 1, f"entries after {last_seq} were deleted")
    return ChainCheck(n, True)


def entries(conn: sqlite3.Connection, *, limit: int = 100, user: str | None = None) -> list[dict[str, Any]]:
    """Newest entries first."""
    if user:
        rows = conn.execute("SELECT * FROM audit WHERE user = ? ORDER BY seq DESC LIMIT ?", (user, limit))
    else:
        rows = conn.execute("SELECT * FROM audit ORDER BY seq DESC LIMIT ?", (limit,))
    return [dict(r) for r in rows]
