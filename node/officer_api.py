"""The officer API under /api/v1 (bearer token): records and their life, sharing, inbox, feedback,
operation groups, CSV import, users, the audit log, status and sync.

Every handler first asks ``auth.require`` whether the caller's role may do
its action, and every view, share, change and admin action is appended to
the audit chain with ``auth.audit_log``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from node import audit, auth, csv_import, outbox
from node.auth import audit_log, audit_writer, require
from node.context import Node
from node.peers import SyncDriver
from node.server import NODE_KEY, json_error
from node.store import bundles as bundle_store
from node.store import peers as peer_store
from node.store import records as record_store
from node.store.db import StoreFull
from protocol.audience import AudienceUnresolvable
from protocol.bundle import Audience, Bundle
from protocol.errors import InvalidMessage, RecordRefused
from protocol.records import KINDS

DRIVER_KEY = web.AppKey("driver", SyncDriver)
STARTED_KEY = web.AppKey("started", float)
LOCAL_KINDS = tuple(k for k in KINDS if k not in ("retract", "roster"))
CSV_TYPES = ("text/csv", "text/plain", "application/csv", "application/vnd.ms-excel")


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        obj = json.loads(await request.read())
    except ValueError:
        raise web.HTTPBadRequest(text="body: not JSON") from None
    if not isinstance(obj, dict):
        raise web.HTTPBadRequest(text="body: must be a JSON object")
    return obj


def _refused(exc: RecordRefused) -> web.Response:
    return web.json_response({"error": "invalid-record", "field": exc.field, "detail": str(exc)}, status=400)


def _share_failure(exc: Exception) -> web.Response:
    """The one mapping of the outbox's refusals to HTTP answers."""
    if isinstance(exc, RecordRefused):
        return _refused(exc)
    if isinstance(exc, outbox.UnknownRecord):
        return json_error(404, "unknown", str(exc))
    if isinstance(exc, outbox.NotOrigin):
        return json_error(403, "not-origin", str(exc))
    if isinstance(exc, AudienceUnresolvable | outbox.ShareRefused):
        return json_error(409, "cannot-share", str(exc))
    if isinstance(exc, StoreFull):
        return json_error(503, "store-full", str(exc))
    raise exc


def _urgent(body: dict[str, Any], default: bool | None = False) -> bool | None:
    urgent = body.get("urgent", default)
    if urgent is not default and not isinstance(urgent, bool):
        raise web.HTTPBadRequest(text="urgent: must be true or false")
    return urgent


def _push(request: web.Request, bundles: list[Bundle]) -> None:
    request.app[DRIVER_KEY].push_soon(bundles)


# --- records ------------------------------------------------------------------------------------

async def create_record(request: web.Request) -> web.Response:
    require(request, "record")
    body = await _body(request)
    kind = body.get("kind")
    if kind not in LOCAL_KINDS:
        return web.json_response({"error": "invalid-record", "field": "kind",
                                  "detail": f"kind: must be one of {', '.join(LOCAL_KINDS)} (retractions and "
                                            "rosters have their own calls)"}, status=400)
    try:
        record = await outbox.create_local(request.app[NODE_KEY], kind, body.get("record"))
    except RecordRefused as exc:
        return _refused(exc)
    await audit_log(request, "record", record["id"], f"{kind}, kept locally")
    return web.json_response({"id": record["id"], "kind": kind, "record": record, "shared": False}, status=201)


async def share_record(request: web.Request) -> web.Response:
    require(request, "share")
    node = request.app[NODE_KEY]
    rid = request.match_info["id"]
    body = await _body(request)
    urgent = bool(_urgent(body))
    try:
        audience = Audience.parse_spec(str(body.get("audience", "")))
        entry = audit_writer(request, "share", rid, lambda b, _: f"to {audience.describe()}"
                                                                 f"{' urgently' if urgent else ''}, bundle {b.id}")
        bundle = await outbox.share(node, rid, audience, urgent=urgent, also=entry)
    except InvalidMessage as exc:
        return json_error(400, "bad-audience", str(exc))
    except (RecordRefused, AudienceUnresolvable, outbox.ShareRefused, StoreFull) as exc:
        return _share_failure(exc)
    _push(request, [bundle])
    return web.json_response({"bundle": bundle.id, "recipients": list(bundle.recipient_ids),
                              "audience": audience.describe(), "urgent": urgent}, status=201)


async def edit_record(request: web.Request) -> web.Response:
    """PATCH: the whole new record (bare, or as {"record": ..., "urgent": ...}); sent as the next version."""
    require(request, "share")
    node = request.app[NODE_KEY]
    rid = request.match_info["id"]
    body = await _body(request)
    new = body.get("record", body)
    urgent = _urgent(body, None) if "record" in body else None
    try:
        entry = audit_writer(request, "edit", rid, lambda b, r: f"version {r['version']} to "
                                                                f"{b.audience.describe()}, bundle {b.id}")
        record, bundle, audience = await outbox.edit(node, rid, new, urgent=urgent, also=entry)
    except (RecordRefused, AudienceUnresolvable, outbox.ShareRefused, StoreFull) as exc:
        return _share_failure(exc)
    _push(request, [bundle])
    return web.json_response({"id": rid, "version": record["version"], "record": record, "bundle": bundle.id,
                              "audience": audience.describe(), "recipients": list(bundle.recipient_ids)})


async def retract_record(request: web.Request) -> web.Response:
    require(request, "share")
    node = request.app[NODE_KEY]
    rid = request.match_info["id"]
    body = await _body(request)
    try:
        entry = audit_writer(request, "retract", rid, lambda b, r: f"retraction {r['id']} to "
                                                                   f"{b.audience.describe()}: {r['reason'][:200]}")
        record, bundle, audience = await outbox.retract(node, rid, body.get("reason"), also=entry)
    except (RecordRefused, AudienceUnresolvable, outbox.ShareRefused, StoreFull) as exc:
        return _share_failure(exc)
    _push(request, [bundle])
    return web.json_response({"id": record["id"], "ref": rid, "record": record, "bundle": bundle.id,
                              "audience": audience.describe(), "recipients": list(bundle.recipient_ids)},
                             status=201)


def _page(request: web.Request) -> tuple[int, int]:
    try:
        limit = min(int(request.query.get("limit", "50")), 500)
        offset = max(int(request.query.get("offset", "0")), 0)
    except ValueError:
        raise web.HTTPBadRequest(text="limit, offset: must be integers") from None
    return limit, offset


async def list_records(request: web.Request) -> web.Response:
    require(request, "view")
    node = request.app[NODE_KEY]
    limit, offset = _page(request)
    kind = request.query.get("kind")
    if request.query.get("local"):
        drafts = await node.store.read(record_store.list_drafts)
        await audit_log(request, "view", None, "local records")
        return web.json_response({"drafts": drafts})
    rows = await node.store.read(lambda c: record_store.list_records(c, kind=kind, limit=limit, offset=offset))
    await audit_log(request, "view", None, f"record list kind={kind or 'any'} offset={offset}: {len(rows)} records")
    return web.json_response({"records": rows})


async def show_record(request: web.Request) -> web.Response:
    require(request, "view")
    node = request.app[NODE_KEY]
    rid = request.match_info["id"]
    version = request.query.get("version")
    row = await node.store.read(record_store.get_record, rid)
    if row is None:
        draft = await node.store.read(record_store.get_draft, rid)
        if draft is None:
            return json_error(404, "unknown", f"no record {rid}")
        await audit_log(request, "view", rid, "local record")
        return web.json_response({"local": True, **draft})
    if version is not None:
        if not version.isdigit():
            return json_error(400, "bad-request", "version: must be a version number")
        old = await node.store.read(record_store.version_body, rid, int(version))
        if old is None:
            return json_error(404, "unknown", f"version: record {rid} has no version {version} here")
        row = {**row, "record": old, "version": int(version)}
    await audit_log(request, "view", rid, None if version is None else f"version {version}")
    return web.json_response(row)


async def inbox(request: web.Request) -> web.Response:
    require(request, "view")
    node = request.app[NODE_KEY]
    today = time.strftime("%Y-%m-%d", time.gmtime(node.clock()))
    items = await node.store.read(record_store.inbox, node.node_id, today)
    await audit_log(request, "view", None, f"inbox: {len(items)} alerts")
    return web.json_response({"alerts": items, "today": today})


async def feedback(request: web.Request) -> web.Response:
    require(request, "feedback")
    node = request.app[NODE_KEY]
    rid = request.match_info["id"]
    body = await _body(request)
    try:
        entry = audit_writer(request, "feedback", rid, lambda b, r: f"{r['outcome']} as {r['id']}, bundle {b.id}")
        record, bundle = await outbox.send_feedback(node, rid, body, also=entry)
    except (RecordRefused, AudienceUnresolvable, outbox.ShareRefused, StoreFull) as exc:
        return _share_failure(exc)
    _push(request, [bundle])
    return web.json_response({"record": record, "bundle": bundle.id}, status=201)


# --- CSV import ---------------------------------------------------------------------------------

async def import_csv(request: web.Request) -> web.Response:
    """A seizures CSV (docs/csv-import.md) as the body: every row is kept, or none; optionally shared."""
    require(request, "record")
    node: Node = request.app[NODE_KEY]
    spec = request.query.get("share")
    audience = None
    if spec:
        require(request, "share")
        try:
            audience = Audience.parse_spec(spec)
        except InvalidMessage as exc:
            return json_error(400, "bad-audience", f"share: {exc}")
    if request.content_type not in CSV_TYPES:
        return json_error(415, "unsupported-media-type",
                          f"Content-Type: send the CSV file as text/csv, not {request.content_type}")
    parsed = csv_import.parse_csv(await request.read(), now_ms=node.now_ms())
    records = [r for _, r in parsed.records]
    if not parsed.errors:
        taken = await node.store.read(record_store.existing_ids, [r["id"] for r in records])
        for line, r in parsed.records:
            if taken.get(r["id"]) == "record":
                parsed.errors.append(csv_import.RowError(
                    line, "id", f"{r['id']!r} is a record already shared; change it with 'cenmesh edit'"))
    if parsed.errors:
        n = len({e.line for e in parsed.errors})
        return web.json_response({
            "error": "invalid-csv", "rows": parsed.rows, "errors": [e.to_json() for e in parsed.errors],
            "detail": f"{n} line{'s' if n != 1 else ''} of the file {'are' if n != 1 else 'is'} wrong; nothing was "
                      f"imported. First: {parsed.errors[0]}"}, status=400)
    if audience is not None:
        try:  # refuse before anything is kept when the audience cannot be sealed to
            outbox.check_batch(node, "seizure", records, audience)
        except (RecordRefused, AudienceUnresolvable) as exc:
            return _share_failure(exc)
    try:
        await outbox.keep_batch(node, "seizure", records)
    except StoreFull as exc:
        return _share_failure(exc)
    ids = [r["id"] for r in records]
    await audit_log(request, "import", None, f"{len(ids)} seizures from CSV, kept locally")
    answer: dict[str, Any] = {"rows": parsed.rows, "imported": len(ids), "ids": ids, "shared": None}
    if audience is not None:
        try:
            entry = audit_writer(request, "share", None,
                                 lambda bs: f"{len(bs)} imported seizures to {audience.describe()}")
            bundles = await outbox.share_batch(node, "seizure", records, audience, also=entry)
        except (RecordRefused, AudienceUnresolvable, outbox.ShareRefused, StoreFull) as exc:
            return json_error(503 if isinstance(exc, StoreFull) else 409, "imported-not-shared",
                              f"the {len(ids)} seizures were imported as local records, but sharing them failed: "
                              f"{exc}. Share them with 'cenmesh share'")
        _push(request, bundles)
        answer["shared"] = {"audience": audience.describe(), "bundles": [b.id for b in bundles]}
    return web.json_response(answer, status=201)


# --- operation groups ---------------------------------------------------------------------------

async def create_group(request: web.Request) -> web.Response:
    require(request, "admin")
    node: Node = request.app[NODE_KEY]
    body = await _body(request)
    try:
        record, bundle = await outbox.issue_roster(node, body.get("name"), body.get("members"), body.get("not_after"))
    except (RecordRefused, AudienceUnresolvable, outbox.ShareRefused, StoreFull) as exc:
        return _share_failure(exc)
    _push(request, [bundle])
    await audit_log(request, "admin", record["group"],
                    f"group roster version {record['version']}: {len(record['members'])} members until "
                    f"{body.get('not_after')}, bundle {bundle.id}")
    return web.json_response({"group": record["group"], "members": record["members"],
                              "not_after": record["not_after"], "version": record["version"], "id": record["id"],
                              "bundle": bundle.id}, status=201 if record["version"] == 1 else 200)


async def list_groups(request: web.Request) -> web.Response:
    require(request, "view")
    node: Node = request.app[NODE_KEY]
    now = node.now_ms()
    groups = await node.store.read(record_store.groups)
    for g in groups:
        g["until"] = time.strftime("%Y-%m-%d", time.gmtime(g["not_after"] / 1000))
        g["active"] = g["not_after"] > now
        g["member"] = node.node_id in g["members"]
        g["names"] = {m: (node.directory[m].name if m in node.directory else None) for m in g["members"]}
    return web.json_response({"groups": groups})


# --- users and the audit log (admin) ------------------------------------------------------------

async def list_users(request: web.Request) -> web.Response:
    require(request, "admin")
    rows = await request.app[NODE_KEY].store.read(auth.list_users)
    await audit_log(request, "admin", None, "user list")
    return web.json_response({"users": rows})


async def add_user(request: web.Request) -> web.Response:
    require(request, "admin")
    node: Node = request.app[NODE_KEY]
    body = await _body(request)
    name, role = body.get("name"), body.get("role")
    if not isinstance(name, str) or not isinstance(role, str):
        return json_error(400, "bad-request", "name, role: both are required strings")
    try:
        token = await node.store.write(auth.create_token, name, role, node.now_ms())
    except ValueError as exc:
        return json_error(409 if "exists" in str(exc) else 400, "bad-user", str(exc))
    await audit_log(request, "admin", name, f"user added with role {role}")
    return web.json_response({"name": name, "role": role, "token": token}, status=201)


async def disable_user(request: web.Request) -> web.Response:
    require(request, "admin")
    node: Node = request.app[NODE_KEY]
    name = request.match_info["name"]
    try:
        row = await node.store.write(auth.set_disabled, name, True)
    except ValueError as exc:
        return json_error(404, "unknown", str(exc))
    await audit_log(request, "admin", name, "user disabled")
    return web.json_response(row)


async def read_audit(request: web.Request) -> web.Response:
    require(request, "admin")
    node: Node = request.app[NODE_KEY]
    limit, _ = _page(request)
    rows = await node.store.read(lambda c: audit.entries(c, limit=limit, user=request.query.get("user")))
    check = await node.store.read(audit.verify) if request.query.get("verify") else None
    await audit_log(request, "admin", None, "audit log read" + (" and verified" if check else ""))
    return web.json_response({"entries": rows, "verify": None if check is None else {
        "ok": check.ok, "entries": check.entries, "first_bad": check.first_bad, "why": check.why}})


# --- the node -----------------------------------------------------------------------------------

async def status(request: web.Request) -> web.Response:
    require(request, "view")
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
        "store": await node.store.read(node.store.usage),
    })


async def sync_now(request: web.Request) -> web.Response:
    require(request, "share")
    body = await _body(request) if request.can_read_body else {}
    directory = isinstance(body, dict) and body.get("directory") is True
    results = await request.app[DRIVER_KEY].sync_all(force=True, directory=directory)
    return web.json_response({"peers": results})


async def directory(request: web.Request) -> web.Response:
    require(request, "view")
    node = request.app[NODE_KEY]
    return web.json_response({"nodes": [
        {"node": d.node, "name": d.name, "country": d.country, "role": d.role, "regions": list(d.regions),
         "revoked": d.revoked, "seq": d.seq} for d in sorted(node.directory.values(), key=lambda d: d.name)
    ]})


def setup(app: web.Application, driver: SyncDriver) -> None:
    """Add the officer API to ``app``."""
    app[DRIVER_KEY] = driver
    app[STARTED_KEY] = time.time()
    app.middlewares.append(auth.token_middleware)
    r = app.router
    r.add_post("/api/v1/records", create_record)
    r.add_get("/api/v1/records", list_records)
    r.add_get("/api/v1/records/{id}", show_record)
    r.add_patch("/api/v1/records/{id}", edit_record)
    r.add_post("/api/v1/records/{id}/share", share_record)
    r.add_post("/api/v1/records/{id}/retract", retract_record)
    r.add_post("/api/v1/alerts/{id}/feedback", feedback)
    r.add_get("/api/v1/inbox", inbox)
    r.add_post("/api/v1/import", import_csv)
    r.add_post("/api/v1/groups", create_group)
    r.add_get("/api/v1/groups", list_groups)
    r.add_get("/api/v1/users", list_users)
    r.add_post("/api/v1/users", add_user)
    r.add_post("/api/v1/users/{name}/disable", disable_user)
    r.add_get("/api/v1/audit", read_audit)
    r.add_get("/api/v1/status", status)
    r.add_post("/api/v1/sync", sync_now)
    r.add_get("/api/v1/directory", directory)
