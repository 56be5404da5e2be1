"""Pages about single records: the record page, the new seizure and alert forms, sharing, the inbox and
answering an alert."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node import outbox
from node.auth import audit_log, audit_writer
from node.officer_api import DRIVER_KEY
from node.pages import audience as picker
from node.pages import forms, labels, queries
from node.pages.session import allow, redirect, render
from node.server import NODE_KEY
from node.store import records as record_store
from node.store.db import StoreFull
from protocol.audience import AudienceUnresolvable
from protocol.bundle import Audience, Bundle
from protocol.errors import RecordRefused
from protocol.records import OUTCOMES

SHAREABLE = ("seizure", "alert", "message")


def _dig(record: dict[str, Any], path: str) -> Any:
    here: Any = record
    for step in forms.path_steps(path):
        if isinstance(step, int):
            here = here[step] if isinstance(here, list) and step < len(here) else None
        else:
            here = here.get(step) if isinstance(here, dict) else None
    return here


def _shown(inp: forms.Input, value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(f"{v} ({labels.country_name(v)})" if inp.upper and len(v) == 2 else str(v) for v in value)
    if inp.kind == "country":
        return f"{value} ({labels.country_name(value)})"
    words = dict(inp.choices)
    return words.get(value, str(value))


def describe(kind: str, record: dict[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    """The record's fields as (section, [(label, text)]) in the order of the forms; empty fields left out."""
    if kind not in forms.FORMS:
        keys = [k for k in record if k not in ("id", "version")]
        return [("Record", [(k.replace("_", " ").capitalize(), _plain(record[k])) for k in keys])]
    out = []
    for fs in forms.FORMS[kind]:
        if fs.key == "parties":
            rows = []
            for i, p in enumerate(record.get("parties", [])):
                bits = [p.get("role", ""), p.get("name", ""), labels.country_name(p.get("country")),
                        p.get("identifier", "")]
                rows.append((f"Person {i + 1}", " · ".join(b for b in bits if b)))
        else:
            rows = [(i.label, _shown(i, v)) for i in fs.inputs
                    if (v := _dig(record, i.path)) not in (None, "", []) and i.path not in ("tlp", "handling")]
        if rows:
            out.append((fs.legend.replace(" (optional)", "").replace(" (at least one reference)", ""), rows))
    return out


def _plain(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _push(request: web.Request, bundle: Bundle) -> None:
    request.app[DRIVER_KEY].push_soon([bundle])


# --- the record page ----------------------------------------------------------------------------

async def record_page(request: web.Request, *, share_errors: dict[str, str] | None = None,
                      audience: picker.AudienceState | None = None, answer_errors: dict[str, str] | None = None,
                      answer_typed: dict[str, str] | None = None, status: int = 200) -> web.Response:
    user = allow(request, "view")
    node = request.app[NODE_KEY]
    rid = request.match_info["id"]
    row = await node.store.read(record_store.get_record, rid)
    local = row is None
    if row is None:
        row = await node.store.read(record_store.get_draft, rid)
        if row is None:
            raise web.HTTPNotFound(text=f"No record {rid} can be read on this node.")
        row = {**row, "origin": node.node_id, "version": row["record"].get("version", 1), "versions": [],
               "feedback": [], "retracted": False, "retraction": None, "audience": None}
    record, shown_version = row["record"], row["version"]
    wanted = request.query.get("version")
    if wanted and wanted.isdigit() and not local and int(wanted) != row["version"]:
        old = await node.store.read(record_store.version_body, rid, int(wanted))
        if old is None:
            raise web.HTTPNotFound(text=f"Record {rid} has no version {wanted} here.")
        record, shown_version = old, int(wanted)
    readers = [] if local else await node.store.read(queries.bundle_readers, row["bundle_id"])
    mine = row["origin"] == node.node_id
    kind = row["kind"]
    can_share = (user.may("share") and mine and kind in SHAREABLE and not row["retracted"])
    can_answer = user.may("feedback") and kind == "alert" and not mine and not row["retracted"]
    await audit_log(request, "view", rid, None if shown_version == row["version"] else f"version {shown_version}")
    return render(request, "record.html", {
        "row": row, "record": record, "kind": kind, "local": local, "mine": mine,
        "shown_version": shown_version, "sections": describe(kind, record),
        "origin_name": labels.node_name(node, row["origin"]),
        "audience_words": labels.audience_words(node, row["audience"]) if row["audience"] else None,
        "readers": [(n, labels.node_name(node, n)) for n in readers],
        "tlp": record.get("tlp"), "handling": record.get("handling"),
        "tlp_words": labels.TLP, "handling_words": labels.HANDLING,
        "can_share": can_share, "can_answer": can_answer,
        "aud": audience or picker.audience_state(node), "share_errors": share_errors or {},
        "answer_errors": answer_errors or {}, "answer_typed": answer_typed or {},
        "outcomes": [(o, labels.OUTCOMES[o]) for o in OUTCOMES], "flash": request.query.get("done"),
    }, status=status)


async def share(request: web.Request) -> web.Response:
    allow(request, "share")
    node = request.app[NODE_KEY]
    rid = request.match_info["id"]
    form = await request.post()
    st = picker.audience_state(node, form)
    st.share_now = True
    held = await node.store.read(record_store.get_record, rid)
    draft = None if held is not None else await node.store.read(record_store.get_draft, rid)
    source = held or draft
    if source is None:
        raise web.HTTPNotFound(text=f"No record {rid} on this node.")
    audience, errors = picker.check_audience(node, source["kind"], source["record"], st)
    if audience is None:
        return await record_page(request, share_errors=errors, audience=st, status=400)
    entry = audit_writer(request, "share", rid, lambda b, _: f"to {audience.describe()}"
                                                          f"{' urgently' if st.urgent else ''}, bundle {b.id} (web)")
    try:
        bundle = await outbox.share(node, rid, audience, urgent=st.urgent, also=entry)
    except (RecordRefused, AudienceUnresolvable, outbox.ShareRefused, StoreFull) as exc:
        return await record_page(request, share_errors={"audience": str(exc)}, audience=st, status=409)
    _push(request, bundle)
    return redirect(f"/records/{rid}?done=shared")


# --- new seizure / alert ------------------------------------------------------------------------

def _defaults(node: Any, kind: str) -> dict[str, str]:
    today = labels.today(node)
    if kind == "seizure":
        return {"date": today, "tlp": "AMBER", "category": "", "quantity.unit": "pieces",
                "route.departure": "", "route.destination": node.settings.node.country}
    return {"urgency": "priority", "requested_action": "examine", "respond_by": today, "tlp": "AMBER"}


def _error_links(kind: str, errors: dict[str, str]) -> list[tuple[str, str, str]]:
    """(anchor, label, message) for the summary at the top of a form with errors, in form order."""
    known = forms.inputs(kind)
    legends = {fs.key: fs.legend for fs in forms.FORMS[kind]}
    order = [*known, *legends, "audience", ""]
    out = []
    for key in sorted(errors, key=lambda k: order.index(k) if k in order else len(order)):
        if key in known:
            out.append((known[key].id, known[key].label, errors[key]))
        elif key in legends:
            out.append((f"fs-{key}", legends[key], errors[key]))
        elif key == "audience":
            out.append(("audience", "Share with", errors[key]))
        else:
            out.append(("", "", errors[key]))
    return out


def _form(request: web.Request, kind: str, typed: dict[str, str], errors: dict[str, str],
          aud: picker.AudienceState, status: int = 200) -> web.Response:
    return render(request, "record_form.html", {
        "kind": kind, "fieldsets": forms.FORMS[kind], "values": typed, "errors": errors, "aud": aud,
        "countries": labels.countries(), "error_count": len(errors), "error_links": _error_links(kind, errors),
    }, status=status)


async def new_form(request: web.Request) -> web.Response:
    allow(request, "record")
    node = request.app[NODE_KEY]
    kind = request.match_info["kind"]
    aud = picker.audience_state(node)
    aud.share_now = True
    return _form(request, kind, _defaults(node, kind), {}, aud)


async def create(request: web.Request) -> web.Response:
    user = allow(request, "record")
    node = request.app[NODE_KEY]
    kind = request.match_info["kind"]
    form = await request.post()
    record, typed = forms.read_form(kind, form)
    aud = picker.audience_state(node, form)
    if aud.share_now and not user.may("share"):
        aud.share_now = False
    checked, errors = forms.validate_all(kind, record, node.now_ms())
    audience: Audience | None = None
    if checked is not None and aud.share_now:
        audience, errors = picker.check_audience(node, kind, checked, aud)
    if errors or checked is None:
        return _form(request, kind, typed, errors, aud, status=400)
    try:
        kept = await outbox.create_local(node, kind, checked)
    except RecordRefused as exc:
        return _form(request, kind, typed, {forms.error_key(kind, exc.field): exc.why}, aud, status=400)
    await audit_log(request, "record", kept["id"], f"{kind}, kept locally (web)")
    if audience is None:
        return redirect(f"/records/{kept['id']}?done=kept")
    entry = audit_writer(request, "share", kept["id"], lambda b, _: f"to {audience.describe()}"
                                                                 f"{' urgently' if aud.urgent else ''}, bundle {b.id} (web)")
    try:
        bundle = await outbox.share(node, kept["id"], audience, urgent=aud.urgent, also=entry)
    except (RecordRefused, AudienceUnresolvable, outbox.ShareRefused, StoreFull) as exc:
        return redirect(f"/records/{kept['id']}?done=not-shared&why={type(exc).__name__}")
    _push(request, bundle)
    return redirect(f"/records/{kept['id']}?done=shared")


# --- inbox and answers --------------------------------------------------------------------------

async def inbox_page(request: web.Request, *, errors_for: str | None = None, errors: dict[str, str] | None = None,
                     typed: dict[str, str] | None = None, status: int = 200) -> web.Response:
    allow(request, "view")
    node = request.app[NODE_KEY]
    items = await node.store.read(record_store.inbox, node.node_id, labels.today(node))
    for a in items:
        a["origin_name"] = labels.node_name(node, a["origin"])
        refs = {k: v for k, v in a["record"]["consignment"].items()}
        a["refs"] = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in refs.items())
    await audit_log(request, "view", None, f"inbox: {len(items)} alerts")
    return render(request, "inbox.html", {
        "items": items, "open_count": sum(1 for a in items if not a["acknowledged"]),
        "outcomes": [(o, labels.OUTCOMES[o]) for o in OUTCOMES], "errors_for": errors_for,
        "answer_errors": errors or {}, "answer_typed": typed or {}, "answered": request.query.get("answered"),
        "tlp_words": labels.TLP,
    }, status=status)


async def answer(request: web.Request) -> web.Response:
    allow(request, "feedback")
    node = request.app[NODE_KEY]
    rid = request.match_info["id"]
    form = await request.post()
    back = "record" if form.get("back") == "record" else "inbox"
    typed = {k: str(form.get(k, "")).strip() for k in ("outcome", "seizure", "note")}
    body = {k: v for k, v in typed.items() if v}
    try:
        entry = audit_writer(request, "feedback", rid, lambda b, r: f"{r['outcome']} as {r['id']}, bundle {b.id} (web)")
        _, bundle = await outbox.send_feedback(node, rid, body, also=entry)
    except RecordRefused as exc:
        errors = {exc.field: exc.why}
    except (AudienceUnresolvable, outbox.ShareRefused, StoreFull) as exc:
        errors = {"": str(exc)}
    else:
        _push(request, bundle)
        return redirect(f"/records/{rid}?done=answered" if back == "record" else f"/inbox?answered={rid}")
    if back == "record":
        return await record_page(request, answer_errors=errors, answer_typed=typed, status=400)
    return await inbox_page(request, errors_for=rid, errors=errors, typed=typed, status=400)
