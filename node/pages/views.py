"""Pages that read: the dashboard, search (with its CSV/JSON export) and peers and health."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from node.auth import audit_log
from node.pages import charts, labels, queries
from node.pages.session import allow, render
from node.search import EXPORT_CAP, MAX_OFFSET, QueryError, SearchQuery, run_search
from node.search_api import stream_export
from node.server import NODE_KEY
from node.store import peers as peer_store
from node.store import records as record_store
from protocol.records import SEIZURE_CATEGORIES, TLP_LEVELS, TRANSPORT_MODES

PAGE_SIZE = 25
SHOWN_PARAMS = ("q", "kind", "category", "hs", "departure", "destination", "transit", "since", "until", "origin",
                "tlp", "transport_mode", "has_feedback")


def peer_health(node: Any, peers: list[dict[str, Any]], now: int) -> list[dict[str, Any]]:
    """Each peer row with its name, how long since it last answered, and a one-word state."""
    late_ms = 3 * (node.settings.sync.interval_s + node.settings.sync.jitter_s) * 1000
    out = []
    for p in peers:
        if p["failures"]:
            state = "failing"
        elif p["last_ok"] is None:
            state = "never synced"
        elif now - p["last_ok"] > late_ms:
            state = "late"
        else:
            state = "ok"
        out.append({**p, "name": labels.node_name(node, p["node"]), "state": state,
                    "since_ok": labels.ago(p["last_ok"], now), "last_ok_at": labels.when(p["last_ok"])})
    return out


async def dashboard(request: web.Request) -> web.Response:
    allow(request, "view")
    node = request.app[NODE_KEY]
    today = labels.today(node)
    now = node.now_ms()
    by_category = await node.store.read(queries.seizures_by_category)
    by_month = await node.store.read(queries.seizures_by_month, today)
    routes = await node.store.read(queries.top_routes)
    totals = await node.store.read(queries.totals)
    alerts = await node.store.read(record_store.inbox, node.node_id, today)
    peers = peer_health(node, await node.store.read(peer_store.list_peers), now)
    waiting = [a for a in alerts if not a["acknowledged"]]
    await audit_log(request, "view", None, "dashboard")
    return render(request, "dashboard.html", {
        "totals": totals, "waiting": waiting[:8], "waiting_count": len(waiting),
        "overdue_count": sum(1 for a in waiting if a["overdue"]), "peers": peers,
        "by_category": by_category, "by_month": by_month, "routes": routes,
        "category_chart": charts.hbar("Seizures by category", [(labels.CATEGORY_SHORT.get(c, c), n) for c, n in by_category],
                                      href=[f"/search?kind=seizure&category={c}" for c, _ in by_category]),
        "month_chart": charts.columns("Seizures by month of detection, last 12 months", by_month),
        "route_chart": charts.hbar("Top seizure routes",
                                   [(f"{dep} → {dest}", n) for dep, dest, n in routes],
                                   href=[f"/search?kind=seizure&route={dep}-{dest}" for dep, dest, _ in routes]),
    })


# --- search -------------------------------------------------------------------------------------

def _with(params: dict[str, str], **changes: Any) -> str:
    merged = {**params, **{k: str(v) for k, v in changes.items() if v is not None}}
    return urlencode({k: v for k, v in merged.items() if v != "" and not (k == "offset" and v == "0")})


def summary(row: dict[str, Any]) -> dict[str, Any]:
    """What one result line shows."""
    r = row["record"]
    route = r.get("route") or {}
    stops = [route.get("departure"), *route.get("transit", []), route.get("destination")] if route else []
    goods = (r.get("commodity") or (r.get("suspected") or {}).get("commodity") or {}).get("description", "")
    title = r.get("title") or r.get("subject") or goods
    return {"id": row["id"], "kind": row["kind"], "date": r.get("date") or r.get("respond_by") or "",
            "category": r.get("category") or (r.get("suspected") or {}).get("category"), "title": title,
            "goods": goods if title != goods else "", "route": " → ".join(s for s in stops if s),
            "origin": row["origin"], "tlp": r.get("tlp"), "created": row["created"],
            "retracted": row.get("retracted", False)}


async def search_page(request: web.Request) -> web.Response:
    user = allow(request, "search")
    node = request.app[NODE_KEY]
    params = {k: v for k, v in request.query.items() if v.strip() != ""}
    errors: dict[str, str] = {}
    result = None
    try:
        q = SearchQuery.from_params(request.query)
        if "limit" not in params:
            q = dataclasses.replace(q, limit=PAGE_SIZE)
    except QueryError as exc:
        errors[exc.param] = exc.why
    else:
        result = await run_search(node, q)
        await audit_log(request, "search", None, q.describe())
    ctx: dict[str, Any] = {"params": params, "errors": errors, "result": result, "rows": [],
                           "categories": [(c, labels.CATEGORIES[c]) for c in SEIZURE_CATEGORIES],
                           "tlps": TLP_LEVELS, "modes": TRANSPORT_MODES,
                           "origins": sorted(((d.node, d.name, d.country) for d in node.directory.values()),
                                             key=lambda t: t[1]),
                           "countries": labels.countries(), "shown_params": SHOWN_PARAMS}
    if result is not None:
        ctx["rows"] = [summary(row) for row in result.results]
        offset, limit = q.offset, q.limit
        ctx["first"], ctx["last"] = (offset + 1 if result.results else 0), offset + len(result.results)
        ctx["prev"] = "/search?" + _with(params, offset=max(0, offset - limit)) if offset > 0 else None
        more = offset + limit < result.total and offset + limit <= MAX_OFFSET
        ctx["next"] = "/search?" + _with(params, offset=offset + limit) if more else None
        cats = list(result.by_category.items())
        ctx["category_chart"] = charts.hbar(
            "Matches by category", [(labels.CATEGORY_SHORT.get(c, c), n) for c, n in cats],
            href=[None if c == "none" else "/search?" + _with(params, category=c, offset=0) for c, _ in cats],
            narrow=True)
        if user.may("export"):
            plain = {k: v for k, v in params.items() if k not in ("offset", "limit")}
            ctx["export_csv"] = "/export.csv?" + urlencode(plain)
            ctx["export_json"] = "/export.json?" + urlencode(plain)
    return render(request, "search.html", ctx, status=400 if errors else 200)


async def export(request: web.Request) -> web.StreamResponse:
    """Every match of the search as CSV or JSON (the API's columns and format), under the web session."""
    allow(request, "export")
    fmt = request.match_info["fmt"]
    params = {k: v for k, v in request.query.items() if k not in ("offset", "limit")}
    try:
        q = SearchQuery.from_params(params)
    except QueryError as exc:
        raise web.HTTPBadRequest(text=f"The search cannot be exported: {exc}") from None
    await audit_log(request, "export", None, f"{fmt} {q.describe()} (web)")
    return await stream_export(request, q, fmt, EXPORT_CAP)


# --- peers and health ---------------------------------------------------------------------------

async def peers_page(request: web.Request) -> web.Response:
    allow(request, "view")
    node = request.app[NODE_KEY]
    now = node.now_ms()
    peers = peer_health(node, await node.store.read(peer_store.list_peers), now)
    rejections = await node.store.read(peer_store.rejections)
    for r in rejections:
        r["name"] = labels.node_name(node, r["peer"])
        r["last_at"] = labels.when(r["last"])
    await audit_log(request, "view", None, "peers and health")
    return render(request, "peers.html", {
        "peers": peers, "rejections": rejections, "directory_size": len(node.directory),
        "interval": node.settings.sync.interval_s,
        "by_reason": _sum_by(rejections, "reason"),
    })


def _sum_by(rows: list[dict[str, Any]], key: str) -> list[tuple[str, int]]:
    out: dict[str, int] = {}
    for r in rows:
        out[r[key]] = out.get(r[key], 0) + r["count"]
    return sorted(out.items(), key=lambda kv: (-kv[1], kv[0]))
