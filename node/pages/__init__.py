"""Server-rendered web pages for officers, analysts and admins (wired by node/runtime.py).

Jinja2 templates (autoescaped) in ``templates/``, one stylesheet in
``static/``; no script and nothing fetched from elsewhere. Every page asks
``auth.require`` (through ``session.allow``) whether the signed-in user's
role may do its action, the same permission table as the officer API, and
writes what it showed or did to the audit chain.

    /                      dashboard                      view
    /search                search, paginated              search
    /export.csv|json       every match of a search        export
    /records/{id}          a record, its versions, feedback, audience; share and answer forms
    /records/new/seizure   the seizure form               record (+ share to send it at once)
    /records/new/alert     the alert form                 record (+ share)
    /inbox                 alerts addressed to this node  view (+ feedback to answer)
    /peers                 peers and health               view
    /admin/users|peers|trust                              admin
    /login, /logout        sign in with a user token; sign out
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from node.pages import admin, labels, records, session, views

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


async def _favicon(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "favicon.svg", headers={"Content-Type": "image/svg+xml"})


async def _admin_home(request: web.Request) -> web.Response:
    session.allow(request, "admin")
    return session.redirect("/admin/users")


def setup(app: web.Application) -> None:
    """Add the web pages to ``app``."""
    env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                               undefined=jinja2.StrictUndefined, filters=labels.filters(),
                               trim_blocks=True, lstrip_blocks=True)
    env.globals["TLP_WORDS"] = labels.TLP
    env.globals["HANDLING_WORDS"] = labels.HANDLING
    app.middlewares.append(session.page_middleware)
    r = app.router
    r.add_get("/login", session.login_form)
    r.add_post("/login", session.login)
    r.add_post("/logout", session.logout)
    r.add_get("/", views.dashboard)
    r.add_get("/search", views.search_page)
    r.add_get("/export.{fmt:csv|json}", views.export)
    r.add_get("/peers", views.peers_page)
    r.add_get("/inbox", records.inbox_page)
    r.add_get("/records/new/{kind:seizure|alert}", records.new_form)
    r.add_post("/records/new/{kind:seizure|alert}", records.create)
    r.add_get("/records/{id}", records.record_page)
    r.add_post("/records/{id}/share", records.share)
    r.add_post("/records/{id}/feedback", records.answer)
    r.add_get("/admin", _admin_home)
    r.add_get("/admin/users", admin.users_page)
    r.add_post("/admin/users", admin.add_user)
    r.add_post("/admin/users/{name}/{action:disable|enable}", admin.set_user)
    r.add_get("/admin/peers", admin.peers_admin)
    r.add_post("/admin/peers", admin.add_peer)
    r.add_post("/admin/peers/{node}/remove", admin.remove_peer)
    r.add_get("/admin/trust", admin.trust_page)
    r.add_get("/favicon.ico", _favicon)
    r.add_static("/static/", STATIC, name="static", append_version=False)
