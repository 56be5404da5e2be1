"""The officer API under /api/v1 (bearer token): records, sharing, inbox, feedback, status, sync."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from node import auth, outbox
from node.context import Node
from node.server import NODE_KEY, Handler, json_error
from node.store import bundles as bundle_store
from node.store import peers as peer_store
from node.store import records as record_store
from node.store.db import StoreFull
from protocol.audience import AudienceUnresolvable
from protocol.bundle import Audience
from protocol.errors import InvalidMessage, RecordRefused
from protocol.records import KINDS

USER_KEY = web.RequestKey("user", tuple)
DRIVER_KEY = web.AppKey("driver", object)
STARTED_KEY = web.AppKey("started", float)


@web.middleware
async def token_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every /api/ call needs a valid bearer token; checked before the handler runs."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return json_error(401, "unauthorized", "send 'Authorization: Bearer <token>'")
    node = request.app[NODE_KEY]
    user = await node.store.read(auth.lookup, header.removeprefix("Bearer ").strip())
    if user is None:
        return json_error(401, "unauthorized", "unknown or disabled token")
    request[USER_KEY] = user
    return await handler(request)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        obj = json.loads(await request.read())
    except ValueError:
        raise web.HTTPBadRequest(text="body is not JSON") from None
    if not isinstance(obj, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return obj


def _refused(exc: RecordRefused) -> web.Response:
    return web.json_response({"error": "invalid-record", "field": exc.field, "detail": str(exc)}, status=400)


async def create_record(request: web.Request) -> web.Response:
    body = await _body(request)
    kind = body.get("kind")
    if kind not in KINDS:
        return web.json_response({"error": "invalid-record", "field": "kind",
                                  "detail": f"kind: must be one of {', '.join(KINDS)}"}, status=400)
    try:
        record = await outbox.create_local(request.app[NODE_KEY], kind, body.get("record"))
    except RecordRefused as exc:
        return _refused(exc)
    return web.json_response({"id": record["id"], "kind": kind, "record": record, "shared": False}, status=201)


async def share_record(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    body = await _body(request)
    urgent = body.get("urgent", False)
    if not isinstance(urgent, bool):
        return json_error(400, "bad-request", "urgent: must be true or false")
    try:
        audience = Audience.parse_spec(str(body.get("audience", "")))
        bundle = await outbox.share(node, request.match_info["id"], audience, urgent=urgent)
    except InvalidMessage as exc:
        return json_error(400, "bad-audience", str(exc))
    except RecordRefused as exc:
        return _refused(exc)
    except (AudienceUnresolvable, outbox.ShareRefused) as exc:
        return json_error(409, "cannot-share", str(exc))
    except StoreFull as exc:
        return json_error(503, "store-full", str(exc))
    request.app[DRIVER_KEY].push_soon([bundle])  # type: ignore[attr-defined]
    return web.json_response({"bundle": bundle.id, "recipients": list(bundle.recipient_ids),
                              "audience": audience.describe(), "urgent": urgent}, status=201)


def _page(request: web.Request) -> tuple[int, int]:
    try:
        limit = min(int(request.query.get("limit", "50")), 500)
        offset = max(int(request.query.get("offset", "0")), 0)
    except ValueError:
        raise web.HTTPBadRequest(text="limit and offset must be integers") from None
    return limit, offset


async def list_records(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    limit, offset = _page(request)
    kind = request.query.get("kind")
    if request.query.get("local"):
        return web.json_response({"drafts": await node.store.read(record_store.list_drafts)})
    rows = await node.store.read(lambda c: record_store.list_records(c, kind=kind, limit=limit, offset=offset))
    return web.json_response({"records": rows})


async def show_record(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    rid = request.match_info["id"]
    row = await node.store.read(record_store.get_record, rid)
    if row is None:
        draft = await node.store.read(record_store.get_draft, rid)
        if draft is None:
            return json_error(404, "unknown", f"no record {rid}")
        return web.json_response({"local": True, **draft})
    return web.json_response(row)


async def inbox(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    today = time.strftime("%Y-%m-%d", time.gmtime(node.clock()))
    items = await node.store.read(record_store.inbox, node.node_id)
    for item in items:
        item["overdue"] = not item["answered"] and item["record"].get("respond_by", "9999") < today
    return web.json_response({"alerts": items})


async def feedback(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    body = await _body(request)
    try:
        record, bundle = await outbox.send_feedback(node, request.match_info["id"], body)
    except RecordRefused as exc:
        return _refused(exc)
    except (AudienceUnresolvable, outbox.ShareRefused) as exc:
        return json_error(409, "cannot-share", str(exc))
    request.app[DRIVER_KEY].push_soon([bundle])  # type: ignore[attr-defined]
    return web.json_response({"record": record, "bundle": bundle.id}, status=201)


async def status(request: web.Request) -> web.Response:
    node: Node = request.app[NODE_KEY]
    now = node.now_ms()
    peers = await node.store.read(peer_store.list_peers)
    for p in peers:
        p["name"] = node.directory[p["node"]].name if p["node"] in node.directory else None
        p["since_last_ok_s"] = None if p["last_ok"] is None else round((now - p["last_ok"]) / 1000, 1)
    return web.json_response({
        "node": node.node_id, "name": node.settings.node.name, "role": node.settings.node.role,
        "regions": node.settings.node.regions, "epoch": node.store.epoch,
        "uptime_s": round(time.time() - request.app[STARTED_KEY], 1),
        "bundles": await node.store.read(bundle_store.count_by_state),
        "directory": len(node.directory), "peers": peers,
        "rejections": await node.store.read(peer_store.rejections),
    })


async def sync_now(request: web.Request) -> web.Response:
    results = await request.app[DRIVER_KEY].sync_all(force=True)  # type: ignore[attr-defined]
    return web.json_response({"peers": results})


async def directory(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    return web.json_response({"nodes": [
        {"node": d.node, "name": d.name, "country": d.country, "role": d.role, "regions": list(d.regions),
         "revoked": d.revoked, "seq": d.seq} for d in sorted(node.directory.values(), key=lambda d: d.name)
    ]})


def setup(app: web.Application, driver: object) -> None:
    """Add the officer API to ``app``."""
    app[DRIVER_KEY] = driver
    app[STARTED_KEY] = time.time()
    app.middlewares.append(token_middleware)
    r = app.router
    r.add_post("/api/v1/records", create_record)
    r.add_get("/api/v1/records", list_records)
    r.add_get("/api/v1/records/{id}", show_record)
    r.add_post("/api/v1/records/{id}/share", share_record)
    r.add_post("/api/v1/alerts/{id}/feedback", feedback)
    r.add_get("/api/v1/inbox", inbox)
    r.add_get("/api/v1/status", status)
    r.add_post("/api/v1/sync", sync_now)
    r.add_get("/api/v1/directory", directory)
