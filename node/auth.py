"""Users, roles and the audit trail of the officer API.

Users are the rows of ``tokens``: a name, a role, the sha256 of their API
token (the token itself is shown once, when made) and a ``disabled`` flag.
The token is looked up on every request, so disabling a user takes effect
at once.

Roles and what they may do (``PERMISSIONS``, the one table every handler
asks through ``require``)::

    officer   record, share, feedback, search, view
    analyst   search, view, export, statistics
    admin     everything: admin (users, peers, trust, keys, groups) and all of the above

Every view, search, share, export and admin action is written to the audit
chain (node/audit.py) with ``audit_log``: who, with which role, did what to
what, when, and from which address.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from node import audit
from node.server import NODE_KEY, Handler, json_error
from node.store.db import StoreFull

log = logging.getLogger("cenmesh.auth")

ROLES = ("officer", "analyst", "admin")
ACTIONS = ("record", "share", "feedback", "search", "view", "export", "statistics", "admin")

PERMISSIONS: dict[str, set[str]] = {
    "officer": {"record", "share", "feedback", "search", "view"},
    "analyst": {"search", "view", "export", "statistics"},
    "admin": set(ACTIONS),
}
assert set(PERMISSIONS) == set(ROLES)


@dataclass(frozen=True)
class User:
    """Who is calling: the account name and its role."""

    name: str
    role: str

    def may(self, action: str) -> bool:
        return action in PERMISSIONS.get(self.role, set())


USER_KEY = web.RequestKey("user", User)


# --- the tokens table -------------------------------------------------------------------------

def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> None:
    """A user name: 1 to 64 printable characters without spaces; ValueError says what is wrong."""
    if not 1 <= len(name) <= 64 or not name.isprintable() or any(c.isspace() for c in name):
        raise ValueError(f"user name {name!r}: use 1 to 64 characters, no spaces or control characters")


def create_token(conn: sqlite3.Connection, name: str, role: str, now_ms: int) -> str:
    """Make a new user ``name`` with a fresh token; raises ValueError for a bad role or a name in use."""
    if role not in ROLES:
        raise ValueError(f"role {role!r}: must be one of {', '.join(ROLES)}")
    check_name(name)
    token = "cm_" + secrets.token_urlsafe(32)
    try:
        conn.execute("INSERT INTO tokens (name, hash, role, created) VALUES (?,?,?,?)",
                     (name, token_hash(token), role, now_ms))
    except sqlite3.IntegrityError:
        raise ValueError(f"user name {name!r}: a user with this name exists already") from None
    return token


def set_disabled(conn: sqlite3.Connection, name: str, disabled: bool = True) -> dict[str, Any]:
    """Disable (or enable again) a user; raises ValueError for an unknown name."""
    cur = conn.execute("UPDATE tokens SET disabled = ? WHERE name = ?", (int(disabled), name))
    if cur.rowcount == 0:
        raise ValueError(f"user name {name!r}: no such user")
    row = conn.execute("SELECT name, role, disabled, created FROM tokens WHERE name = ?", (name,)).fetchone()
    return {**dict(row), "disabled": bool(row["disabled"])}


def list_users(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every user, by name (never the token hashes)."""
    rows = conn.execute("SELECT name, role, disabled, created FROM tokens ORDER BY name")
    return [{**dict(r), "disabled": bool(r["disabled"])} for r in rows]


def lookup(conn: sqlite3.Connection, token: str) -> User | None:
    """The enabled user holding ``token``, or None."""
    found = lookup_any(conn, token)
    return found[0] if found is not None and not found[1] else None


def lookup_any(conn: sqlite3.Connection, token: str) -> tuple[User, bool] | None:
    """(user, disabled) for ``token``, or None when no user holds it."""
    digest = token_hash(token)
    row = conn.execute("SELECT name, role, hash, disabled FROM tokens WHERE hash = ?", (digest,)).fetchone()
    if row is None or not hmac.compare_digest(row["hash"], digest):
        return None
    return User(row["name"], row["role"]), bool(row["disabled"])


# --- the request side ---------------------------------------------------------------------------

@web.middleware
async def token_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every /api/ call needs an enabled user's bearer token; checked before the handler runs."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return json_error(401, "unauthorized", "Authorization: send 'Authorization: Bearer <token>'")
    node = request.app[NODE_KEY]
    found = await node.store.read(lookup_any, header.removeprefix("Bearer ").strip())
    if found is None:
        log.info("API call with an unknown token from %s: %s %s", request.remote, request.method, request.path)
        return json_error(401, "unauthorized", "Authorization: unknown token")
    user, disabled = found
    if disabled:
        log.info("API call by disabled user %s from %s", user.name, request.remote)
        return json_error(401, "unauthorized", f"Authorization: the user {user.name!r} is disabled")
    request[USER_KEY] = user
    return await handler(request)


def require(request: web.Request, action: str) -> User:
    """The calling user, if their role may do ``action``; else HTTPForbidden (403 JSON)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")  # a programming error, not the caller's
    user: User | None = request.get(USER_KEY)
    if user is None:
        raise web.HTTPUnauthorized(text="no signed-in user; send 'Authorization: Bearer <token>'")
    if not user.may(action):
        log.info("user %s (%s) refused %r on %s %s", user.name, user.role, action, request.method, request.path)
        allowed = sorted(r for r, acts in PERMISSIONS.items() if action in acts)
        raise web.HTTPForbidden(text=f"role: {user.name!r} is {user.role!r}; {action!r} needs one of the "
                                     f"roles {', '.join(allowed)}")
    return user


READ_ONLY_ACTIONS = frozenset({"view", "export"})


def _caller(request: web.Request) -> User:
    """Who made the request, for the audit chain (pages answered before sign-in have nobody)."""
    user: User = request.get(USER_KEY) or User("anonymous", "none")
    return user


def audit_writer(request: web.Request, action: str, target: str | None,
                 detail: Callable[..., str | None]) -> Callable[..., None]:
    """``audit_log`` for another write's own transaction: ``write(conn, *args)`` appends the entry
    with ``detail(*args)`` (a share's bundle, say), so the two are stored together or not at all."""
    node = request.app[NODE_KEY]
    user = _caller(request)
    source = request.remote

    def write(conn: sqlite3.Connection, *args: Any) -> None:
        audit.append(conn, at=node.now_ms(), user=user.name, role=user.role, action=action, target=target,
                     detail=detail(*args), source=source)

    return write


async def audit_log(request: web.Request, action: str, target: str | None = None,
                    detail: str | None = None) -> None:
    """Append who did ``action`` on ``target`` to the audit chain, with the time and the caller's address."""
    node = request.app[NODE_KEY]
    try:
        await node.store.write(audit_writer(request, action, target, lambda: detail))
    except StoreFull:
        if action not in READ_ONLY_ACTIONS:
            raise
        # Reading must keep working on a full store (officers need the intelligence most when
        # something is wrong); the entry goes to the log instead, where the operator finds it.
        user = _caller(request)
        log.warning("audit entry not stored (store full): user=%s role=%s action=%s target=%s detail=%s source=%s",
                    user.name, user.role, action, target, detail, request.remote)
