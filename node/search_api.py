"""Search and export routes of the officer API (wired by node/runtime.py).

``GET /api/v1/search?...`` (role action ``search``) answers
``{"total", "total_capped", "by_category", "results"}``, the results being
records rows as ``GET /api/v1/records`` gives them. ``GET /api/v1/export?
format=csv|json&...`` (action ``export``) streams every match, newest first,
at most ``limit`` (default and maximum 100,000). Both take the parameters of
node/search.py (``q``, ``kind``, ``category``, ``hs``, ``route``, ...); a bad
one is a 400 ``{"error": "bad-query", "param", "detail"}``. Every search and
export is written to the audit chain with its query.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from typing import Any

from aiohttp import web

from node.auth import audit_log, require
from node.search import EXPORT_CAP, QueryError, SearchQuery, export_records, run_search
from node.server import NODE_KEY

EXPORT_FORMATS = ("csv", "json")

# Flattened CSV columns: (header, path into the records row; "record." paths go into the record).
CSV_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "id"), ("kind", "kind"), ("version", "version"), ("origin", "origin"), ("created", "created"),
    ("retracted", "retracted"), ("tlp", "record.tlp"), ("handling", "record.handling"),
    ("category", "record.category"), ("date", "record.date"), ("office_name", "record.office.name"),
    ("office_locode", "record.office.locode"), ("transport_mode", "record.transport_mode"),
    ("detection_method", "record.detection_method"), ("commodity", "record.commodity.description"),
    ("hs_code", "record.commodity.hs_code"), ("brand", "record.commodity.brand"),
    ("rights_holder", "record.commodity.rights_holder"), ("quantity", "record.quantity.amount"),
    ("unit", "record.quantity.unit"), ("value", "record.value.amount"), ("currency", "record.value.currency"),
    ("departure", "record.route.departure"), ("destination", "record.route.destination"),
    ("transit", "record.route.transit"), ("goods_origin", "record.route.origin"),
    ("container", "record.conveyance.container"), ("awb", "record.conveyance.awb"),
    ("bill_of_lading", "record.conveyance.bill_of_lading"), ("vessel_imo", "record.conveyance.vessel_imo"),
    ("flight", "record.conveyance.flight"), ("concealment", "record.concealment"),
    ("parties", "record.parties"), ("narrative", "record.narrative"),
    ("title", "record.title"), ("urgency", "record.urgency"), ("requested_action", "record.requested_action"),
    ("respond_by", "record.respond_by"), ("suspected_category", "record.suspected.category"),
    ("suspected_commodity", "record.suspected.commodity.description"),
    ("suspected_hs_code", "record.suspected.commodity.hs_code"),
    ("consignment_container", "record.consignment.container"), ("consignment_awb", "record.consignment.awb"),
    ("eta", "record.consignment.eta"), ("destination_locode", "record.consignment.destination_locode"),
    ("subject", "record.subject"), ("body", "record.body"), ("related", "record.related"),
    ("bundle_id", "bundle_id"), ("audience", "audience"),
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _bad(exc: QueryError) -> web.Response:
    return web.json_response({"error": "bad-query", "param": exc.param, "detail": str(exc)}, status=400)


def _dig(row: dict[str, Any], path: str) -> Any:
    value: Any = row
    for step in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def _cell(value: Any) -> str:
    """One CSV cell; text that a spreadsheet would run as a formula is quoted with a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        if value and isinstance(value[0], dict):  # parties
            value = "; ".join(f"{p.get('role', '')}: {p.get('name', '')}"
                              + (f" ({p['country']})" if p.get("country") else "") for p in value)
        else:
            value = ";".join(str(v) for v in value)
    text = str(value)
    if text.startswith(_FORMULA_START):
        try:
            float(text)
        except ValueError:
            return "'" + text
    return text


def csv_row(row: dict[str, Any]) -> list[str]:
    """A records row as the export's CSV columns (``created`` as UTC ISO time)."""
    out = []
    for header, path in CSV_COLUMNS:
        value = _dig(row, path)
        if header == "created" and isinstance(value, int):
            value = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value / 1000))
        out.append(_cell(value))
    return out


async def search(request: web.Request) -> web.Response:
    require(request, "search")
    try:
        q = SearchQuery.from_params(request.query)
    except QueryError as exc:
        return _bad(exc)
    # The audit entry is written while the search runs (a writer and a reader thread).
    result, _ = await asyncio.gather(run_search(request.app[NODE_KEY], q), audit_log(request, "search", None, q.describe()))
    return web.json_response(result.to_json())


async def export(request: web.Request) -> web.StreamResponse:
    require(request, "export")
    params = dict(request.query)
    fmt = params.pop("format", "csv")
    cap = EXPORT_CAP
    try:
        if fmt not in EXPORT_FORMATS:
            raise QueryError("format", f"{fmt!r}: must be csv or json")
        if "limit" in params:
            text = params.pop("limit")
            if not text.isdigit() or not 1 <= int(text) <= EXPORT_CAP:
                raise QueryError("limit", f"{text!r}: 1 to {EXPORT_CAP} records")
            cap = int(text)
        if "offset" in params:
            raise QueryError("offset", "export starts at the newest match; narrow the search instead")
        q = SearchQuery.from_params(params)
    except QueryError as exc:
        return _bad(exc)
    await audit_log(request, "export", None, f"{fmt} {q.describe()}")
    return await stream_export(request, q, fmt, cap)


async def stream_export(request: web.Request, q: SearchQuery, fmt: str, cap: int) -> web.StreamResponse:
    """Stream the newest ``cap`` matches of ``q`` as a CSV or JSON download (API and web pages alike)."""
    node = request.app[NODE_KEY]
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(node.clock()))
    resp = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8" if fmt == "csv" else "application/json; charset=utf-8",
        "Content-Disposition": f'attachment; filename="cenmesh-export-{stamp}.{fmt}"',
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
    })
    await resp.prepare(request)
    count = 0
    capped = False
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    if fmt == "csv":
        writer.writerow([h for h, _ in CSV_COLUMNS])
    else:
        buf.write('{"query": ' + json.dumps(q.to_params(), ensure_ascii=False) + ', "records": [')
    async for row in export_records(node, q, cap=cap + 1):
        if count == cap:
            capped = True
            break
        if fmt == "csv":
            writer.writerow(csv_row(row))
        else:
            buf.write((",\n" if count else "\n") + json.dumps(row, ensure_ascii=False))
        count += 1
        if buf.tell() > 256 * 1024:  # stream in pieces: an export may hold 100,000 records
            await resp.write(buf.getvalue().encode())
            buf.seek(0)
            buf.truncate()
    if fmt == "json":
        buf.write(f'\n], "count": {count}, "capped": {json.dumps(capped)}, "limit": {cap}}}\n')
    await resp.write(buf.getvalue().encode())
    await resp.write_eof()
    return resp


def setup(app: web.Application) -> None:
    """Add the search and export routes to ``app``."""
    app.router.add_get("/api/v1/search", search)
    app.router.add_get("/api/v1/export", export)
