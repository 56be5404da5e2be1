"""Web sign-in, sessions, CSRF and the one middleware every page passes through.

An officer signs in with their user token (the one ``cenmesh user add`` or
the admin page showed once). The node answers with a session cookie: 32
random bytes, ``HttpOnly``, ``SameSite=Strict``, ``Secure`` when served over
TLS, valid for 12 hours; only its sha256 is stored (``sessions`` table), with
the session's CSRF token. Every POST to a page must carry that token in its
``csrf`` field (the sign-in form uses a short-lived cookie of its own
instead, as there is no session yet), or it is refused with 403.

``page_middleware`` serves every path outside ``/api/`` and ``/federation/``:
it finds the session (the user's role is read from ``tokens`` each time, so
disabling a user ends their sessions at once), sends those without one to
the sign-in page, checks CSRF, and turns errors into HTML pages.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from node import auth
from node.auth import USER_KEY, User, audit_log
from node.server import NODE_KEY, Handler

log = logging.getLogger("cenmesh.pages")

SESSION_COOKIE = "cenmesh_session"
LOGIN_COOKIE = "cenmesh_login"
SESSION_MS = 12 * 3600 * 1000
CSRF_FIELD = "csrf"
PUBLIC_PREFIXES = ("/static/", "/favicon.ico")

ACTION_WORDS = {
    "record": "record seizures and alerts", "share": "share records", "feedback": "answer alerts",
    "search": "search records", "view": "read records", "export": "export records",
    "statistics": "see statistics", "admin": "use the administration pages",
}


@dataclass(frozen=True)
class Session:
    """A signed-in browser: whose it is, its CSRF token and when it ends."""

    id_hash: str
    user: User
    csrf: str
    expires: int


SESSION_KEY = web.RequestKey("page-session", Session)


def id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


# --- the sessions table -------------------------------------------------------------------------

def open_session(conn: sqlite3.Connection, user: str, now_ms: int) -> tuple[str, str]:
    """A new session for ``user``: (cookie value, CSRF token). Expired sessions are swept here."""
    conn.execute("DELETE FROM sessions WHERE expires <= ?", (now_ms,))
    sid = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    conn.execute("INSERT INTO sessions (id_hash, user, csrf, created, expires) VALUES (?,?,?,?,?)",
                 (id_hash(sid), user, csrf, now_ms, now_ms + SESSION_MS))
    return sid, csrf


def find_session(conn: sqlite3.Connection, digest: str, now_ms: int) -> Session | None:
    """The live session with this id hash whose user exists and is enabled."""
    row = conn.execute(
        "SELECT s.id_hash, s.user, s.csrf, s.expires, t.role, t.disabled FROM sessions s"
        " JOIN tokens t ON t.name = s.user WHERE s.id_hash = ? AND s.expires > ?", (digest, now_ms)).fetchone()
    if row is None or row["disabled"]:
        return None
    return Session(row["id_hash"], User(row["user"], row["role"]), row["csrf"], row["expires"])


def close_session(conn: sqlite3.Connection, digest: str) -> None:
    conn.execute("DELETE FROM sessions WHERE id_hash = ?", (digest,))


# --- helpers for handlers -----------------------------------------------------------------------

def set_cookie(request: web.Request, resp: web.StreamResponse, name: str, value: str, max_age_s: int,
               path: str = "/") -> None:
    """A cookie scripts cannot read, never sent cross-site, and only over TLS when the page came over TLS."""
    resp.set_cookie(name, value, max_age=max_age_s, path=path, httponly=True, samesite="Strict",
                    secure=request.secure)


def current_user(request: web.Request) -> User | None:
    return request.get(USER_KEY)


def allow(request: web.Request, action: str) -> User:
    """The signed-in user if their role may do ``action``; else 403 (or to the sign-in page)."""
    try:
        return auth.require(request, action)
    except web.HTTPForbidden:
        user = request[USER_KEY]
        allowed = sorted(r for r, acts in auth.PERMISSIONS.items() if action in acts)
        raise web.HTTPForbidden(text=f"You are signed in as {user.name} with the role {user.role}, which may not "
                                     f"{ACTION_WORDS.get(action, action)}. That needs the role "
                                     f"{' or '.join(allowed)}; ask your node's administrator.") from None


def redirect(location: str) -> web.Response:
    """303 See Other: after a POST, the browser GETs ``location``."""
    return web.Response(status=303, headers={"Location": location})


def safe_next(target: str | None) -> str:
    """A local path to return to after signing in; anything else becomes the dashboard."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target or "\n" in target:
        return "/"
    return target


def render(request: web.Request, template: str, context: dict[str, Any], *, status: int = 200) -> web.Response:
    """Render ``template`` with what every page needs: the node, the user, what they may do, the CSRF token."""
    node = request.app[NODE_KEY]
    user = current_user(request)
    session = request.get(SESSION_KEY)
    base = {
        "node": node, "node_name": node.settings.node.name, "user": user,
        "may": (lambda action: user is not None and user.may(action)),
        "csrf": session.csrf if session is not None else "", "path": request.path,
    }
    return aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)


# --- the middleware -----------------------------------------------------------------------------

def is_page(path: str) -> bool:
    return not path.startswith(("/api/", "/federation/"))


async def _load_session(request: web.Request) -> None:
    sid = request.cookies.get(SESSION_COOKIE)
    if not sid:
        return
    node = request.app[NODE_KEY]
    digest = id_hash(sid)
    session = await node.store.read(find_session, digest, node.now_ms())
    if session is not None:
        request[SESSION_KEY] = session
        request[USER_KEY] = session.user
    else:  # expired, signed out, or its user disabled: gone for good (enabling the user again does not revive it)
        await node.store.write(close_session, digest)


async def _check_csrf(request: web.Request, expected: str | None) -> None:
    form = await request.post()
    sent = form.get(CSRF_FIELD)
    if not expected or not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
        log.info("refused a %s %s without a valid CSRF token from %s", request.method, request.path, request.remote)
        raise web.HTTPForbidden(text="This form did not come from a page of this node, or it has expired. "
                                     "Go back, reload the page and send it again.")


@web.middleware
async def page_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sessions, sign-in redirects, CSRF checks and HTML error pages for every page path."""
    if not is_page(request.path):
        return await handler(request)
    if request.path.startswith(PUBLIC_PREFIXES):
        return await handler(request)
    try:
        await _load_session(request)
        if request.path == "/login":
            if request.method == "POST":
                await _check_csrf(request, request.cookies.get(LOGIN_COOKIE))
        elif SESSION_KEY not in request:
            if request.method == "GET":
                return redirect("/login" + (f"?next={_quote(request.path_qs)}" if request.path != "/" else ""))
            raise web.HTTPForbidden(text="You are not signed in (or your session ended). Sign in and try again.")
        elif request.method == "POST":
            await _check_csrf(request, request[SESSION_KEY].csrf)
        resp = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 401:
            return redirect("/login")
        resp = error_page(request, exc.status, exc.reason, exc.text or exc.reason)
    except Exception:
        log.exception("page failed: %s %s", request.method, request.path)
        resp = error_page(request, 500, "Internal error", "The node failed to show this page; its log says why.")
    _protect(resp)
    return resp


def _quote(path_qs: str) -> str:
    from urllib.parse import quote

    return quote(path_qs, safe="")


def _protect(resp: web.StreamResponse) -> None:
    """Headers for every page: no framing, no foreign content, no caching of what officers see."""
    if resp.prepared:  # a streamed export sets its own headers before it starts
        return
    resp.headers.setdefault("Content-Security-Policy",
                            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
                            "frame-ancestors 'none'; base-uri 'none'")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("Cache-Control", "no-store")


def error_page(request: web.Request, status: int, title: str, detail: str) -> web.Response:
    titles = {403: "Not allowed", 404: "Not found", 405: "Not allowed here"}
    return render(request, "error.html", {"status": status, "title": titles.get(status, title), "detail": detail},
                  status=status)


# --- sign in and out ----------------------------------------------------------------------------

async def login_form(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    if SESSION_KEY in request and error is None:
        return redirect(safe_next(request.query.get("next")))
    # One value per browser while it is on the sign-in page: a second tab must not void the first one's form.
    nonce = request.cookies.get(LOGIN_COOKIE) or ""
    if len(nonce) < 32:
        nonce = secrets.token_urlsafe(32)
    nxt = request.query.get("next") if request.method == "GET" else (await request.post()).get("next")
    resp = render(request, "login.html", {"login_csrf": nonce, "next": safe_next(nxt if isinstance(nxt, str) else None),
                                          "error": error, "bye": "bye" in request.query}, status=status)
    set_cookie(request, resp, LOGIN_COOKIE, nonce, 3600, path="/login")
    return resp


async def login(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    form = await request.post()
    token = str(form.get("token", "")).strip()
    found = await node.store.read(auth.lookup_any, token) if token else None
    if found is None:
        await audit_log(request, "login", None, "refused: unknown token")
        return await login_form(request, error="This token is not known on this node. Check that you copied all "
                                                "of it (it starts with cm_).", status=401)
    user, disabled = found
    request[USER_KEY] = user
    if disabled:
        await audit_log(request, "login", user.name, "refused: account disabled")
        request.pop(USER_KEY)
        return await login_form(request, error="This account is disabled. Ask your node's administrator.",
                                status=403)
    sid, _ = await node.store.write(open_session, user.name, node.now_ms())
    await audit_log(request, "login", user.name, f"web session, role {user.role}")
    resp = redirect(safe_next(str(form.get("next", "/"))))
    set_cookie(request, resp, SESSION_COOKIE, sid, SESSION_MS // 1000)
    resp.del_cookie(LOGIN_COOKIE, path="/login")
    return resp


async def logout(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    session = request[SESSION_KEY]
    await node.store.write(close_session, session.id_hash)
    await audit_log(request, "logout", session.user.name, "web session")
    resp = redirect("/login?bye=1")
    resp.del_cookie(SESSION_COOKIE, path="/")
    return resp
