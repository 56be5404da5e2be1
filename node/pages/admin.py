"""Administration pages (role ``admin``): users, peers and trust.

Adding a peer does what ``cenmesh peer add`` does, without leaving the
event loop: fetch the peer's descriptor with the node's own PeerClient,
judge it with ``Node.judge_descriptor``, store it, add the peer, and have
the sync driver read the peers table again.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from node import auth
from node.auth import audit_log
from node.officer_api import DRIVER_KEY
from node.pages import labels, queries
from node.pages.session import allow, redirect, render
from node.server import NODE_KEY
from node.store import directory as dir_store
from node.store import peers as peer_store
from node.transport import PeerUnavailable
from protocol.errors import InvalidDescriptor, RemoteProtocolError

_URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")


# --- users --------------------------------------------------------------------------------------

async def users_page(request: web.Request, *, made: dict[str, str] | None = None, error: str | None = None,
                     typed: dict[str, str] | None = None, status: int = 200) -> web.Response:
    allow(request, "admin")
    node = request.app[NODE_KEY]
    users = await node.store.read(auth.list_users)
    for u in users:
        u["created_at"] = labels.when(u["created"])
    await audit_log(request, "admin", None, "user list (web)")
    return render(request, "admin_users.html", {
        "users": users, "roles": auth.ROLES, "permissions": auth.PERMISSIONS, "made": made, "error": error,
        "typed": typed or {"name": "", "role": "officer"}, "done": request.query.get("done"),
    }, status=status)


async def add_user(request: web.Request) -> web.Response:
    allow(request, "admin")
    node = request.app[NODE_KEY]
    form = await request.post()
    name, role = str(form.get("name", "")).strip(), str(form.get("role", ""))
    try:
        token = await node.store.write(auth.create_token, name, role, node.now_ms())
    except ValueError as exc:
        return await users_page(request, error=str(exc), typed={"name": name, "role": role}, status=400)
    await audit_log(request, "admin", name, f"user added with role {role} (web)")
    # The token is shown on this one answer and never again (only its hash is kept).
    return await users_page(request, made={"name": name, "role": role, "token": token}, status=201)


async def set_user(request: web.Request) -> web.Response:
    me = allow(request, "admin")
    node = request.app[NODE_KEY]
    name, action = request.match_info["name"], request.match_info["action"]
    if action == "disable" and name == me.name:
        return await users_page(request, error="You cannot disable your own account while signed in with it.",
                                status=400)
    try:
        await node.store.write(auth.set_disabled, name, action == "disable")
    except ValueError as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    await audit_log(request, "admin", name, f"user {action}d (web)")
    return redirect(f"/admin/users?done={action}d")


# --- peers --------------------------------------------------------------------------------------

async def peers_admin(request: web.Request, *, error: str | None = None, url: str = "",
                      added: dict[str, Any] | None = None, status: int = 200) -> web.Response:
    allow(request, "admin")
    node = request.app[NODE_KEY]
    peers = await node.store.read(peer_store.list_peers)
    for p in peers:
        p["name"] = labels.node_name(node, p["node"])
    await audit_log(request, "admin", None, "peer list (web)")
    return render(request, "admin_peers.html", {"peers": peers, "error": error, "url": url, "added": added,
                                                "done": request.query.get("done")}, status=status)


async def add_peer(request: web.Request) -> web.Response:
    allow(request, "admin")
    node = request.app[NODE_KEY]
    driver = request.app[DRIVER_KEY]
    url = str((await request.post()).get("url", "")).strip().rstrip("/")
    if not _URL.fullmatch(url):
        return await peers_admin(request, error="Give the peer's address as http(s)://host:port, as its operator "
                                                "published it.", url=url, status=400)
    try:
        obj = await driver.client.descriptor(url)
    except (PeerUnavailable, RemoteProtocolError) as exc:
        return await peers_admin(request, error=f"Cannot read {url}/federation/v1/descriptor: {exc}", url=url,
                                 status=502)
    try:
        judged = node.judge_descriptor(obj)
    except InvalidDescriptor as exc:
        return await peers_admin(request, error=f"{url} is not accepted here ({exc}). Trust its anchor, or add its "
                                                "endorsed descriptor with 'cenmesh directory add'.", url=url,
                                 status=409)
    claimed = obj.get("node") if isinstance(obj, dict) else None
    d = judged or (node.directory.get(claimed) if isinstance(claimed, str) else None)
    if d is None or d.node == node.node_id:
        return await peers_admin(request, error=f"{url} is this node itself, or its descriptor was not accepted.",
                                 url=url, status=409)
    if judged is not None:
        await node.store.write(dir_store.save_descriptor, judged.obj, node.now_ms())
        node.directory[judged.node] = judged
    await node.store.write(peer_store.add_peer, d.node, url)
    await driver.load()
    await audit_log(request, "admin", d.node, f"peer added: {d.name} at {url} (web)")
    return redirect("/admin/peers?done=added")


async def remove_peer(request: web.Request) -> web.Response:
    allow(request, "admin")
    node = request.app[NODE_KEY]
    peer = request.match_info["node"]
    if not await node.store.write(peer_store.remove_peer, peer):
        raise web.HTTPNotFound(text=f"{peer} is not a peer of this node.")
    await request.app[DRIVER_KEY].load()
    await audit_log(request, "admin", peer, "peer removed (web)")
    return redirect("/admin/peers?done=removed")


# --- trust --------------------------------------------------------------------------------------

async def trust_page(request: web.Request) -> web.Response:
    allow(request, "admin")
    node = request.app[NODE_KEY]
    anchors = await node.store.read(queries.anchors)
    pinned = sorted(node.pinned)
    directory = await node.store.read(queries.directory_rows)
    for d in directory:
        d["endorsed_by"] = [labels.node_name(node, e.by) for e in node.directory[d["node"]].endorsements] \
            if d["node"] in node.directory else []
        d["updated_at"] = labels.when(d["updated"])
    await audit_log(request, "admin", None, "trust (web)")
    return render(request, "admin_trust.html", {
        "anchors": anchors, "pinned": [(n, labels.node_name(node, n)) for n in pinned], "directory": directory,
        "own": node.descriptor,
    })
