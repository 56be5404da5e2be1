"""API tokens for officers and administrators: only a hash is stored; the token is shown once."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3

ROLES = ("officer", "analyst", "admin")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(conn: sqlite3.Connection, name: str, role: str, now_ms: int) -> str:
    """Make a new token for ``name``; raises ValueError for a bad role or a name in use."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token = "cm_" + secrets.token_urlsafe(32)
    try:
        conn.execute("INSERT INTO tokens (name, hash, role, created) VALUES (?,?,?,?)",
                     (name, token_hash(token), role, now_ms))
    except sqlite3.IntegrityError:
        raise ValueError(f"a user named {name!r} exists already") from None
    return token


def lookup(conn: sqlite3.Connection, token: str) -> tuple[str, str] | None:
    """(name, role) of an enabled token, or None."""
    digest = token_hash(token)
    row = conn.execute("SELECT name, role, hash FROM tokens WHERE hash = ? AND disabled = 0", (digest,)).fetchone()
    if row is None or not hmac.compare_digest(row["hash"], digest):
        return None
    return row["name"], row["role"]
