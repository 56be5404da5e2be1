"""Records written on this node: kept local until shared, then sealed, stored and pushed."""

from __future__ import annotations

import os
import uuid
from typing import Any

from crypto.envelope import seal_bundle
from node.context import Node
from node.ingest import ingest
from node.store import records as record_store
from protocol.audience import resolve_recipients
from protocol.bundle import Audience, Bundle
from protocol.errors import InvalidRecord, LocalProtocolError, RecordRefused
from protocol.records import check_personal_data, validate_record

DAY_MS = 24 * 3600 * 1000


class ShareRefused(LocalProtocolError):
    """Sharing cannot go ahead (unknown record, unresolvable audience, ...); the message says why."""


def complete(record: dict[str, Any]) -> dict[str, Any]:
    """Give a new record its id and first version when the officer left them out."""
    out = dict(record)
    out.setdefault("id", str(uuid.uuid4()))
    out.setdefault("version", 1)
    return out


def check_local(kind: str, record: Any, now_ms: int) -> dict[str, Any]:
    """Validate a record typed on this node; RecordRefused names the field."""
    if not isinstance(record, dict):
        raise RecordRefused("record", "must be an object")
    try:
        return validate_record(kind, complete(record), now_ms=now_ms)
    except InvalidRecord as exc:
        raise RecordRefused(exc.field, exc.why) from None


async def create_local(node: Node, kind: str, record: Any) -> dict[str, Any]:
    """Validate and keep a record on this node only."""
    now = node.now_ms()
    checked = check_local(kind, record, now)
    await node.store.write(record_store.save_draft, checked["id"], kind, checked, now)
    return checked


async def seal_and_store(node: Node, kind: str, record: dict[str, Any], audience: Audience, *, urgent: bool) -> Bundle:
    """Seal ``record`` to ``audience`` and store it as our own bundle (we are always a recipient)."""
    now = node.now_ms()
    try:
        check_personal_data(kind, record, audience.scope)
    except InvalidRecord as exc:
        raise RecordRefused(exc.field, exc.why) from None
    keys = resolve_recipients(audience, node.node_id, node.directory, node.rosters, now_ms=now)
    lifetime = node.settings.protocol.bundle_lifetime_days * DAY_MS
    bundle = seal_bundle(identity=node.identity, kind=kind, record=record, audience=audience, recipient_keys=keys,
                         created=now, expires=now + lifetime, urgent=urgent, rng=os.urandom)
    result = await ingest(node, [bundle.obj], via=None)
    if result.rejected:
        raise ShareRefused(f"our own bundle was refused: {result.rejected[0][1]}")
    return bundle


async def share(node: Node, rid: str, audience: Audience, *, urgent: bool) -> Bundle:
    """Share a local record, or send the next version of one of our shared records."""
    draft = await node.store.read(record_store.get_draft, rid)
    if draft is not None:
        kind, record = draft["kind"], draft["record"]
    else:
        held = await node.store.read(record_store.get_record, rid)
        if held is None or held["origin"] != node.node_id:
            raise ShareRefused(f"no local record {rid} on this node")
        kind, record = held["kind"], held["record"]
    bundle = await seal_and_store(node, kind, record, audience, urgent=urgent)
    if draft is not None:
        await node.store.write(record_store.mark_shared, rid, bundle.id)
    return bundle


async def send_feedback(node: Node, alert_id: str, answer: dict[str, Any]) -> tuple[dict[str, Any], Bundle]:
    """Answer an alert; the feedback goes to the alert's origin, urgently if the alert was immediate."""
    alert = await node.store.read(record_store.get_record, alert_id)
    if alert is None or alert["kind"] != "alert":
        raise ShareRefused(f"no alert {alert_id} readable on this node")
    record = check_local("feedback", {**answer, "ref": alert_id}, node.now_ms())
    urgent = alert["record"].get("urgency") == "immediate"
    audience = Audience("nodes", tuple(sorted({alert["origin"]})))
    bundle = await seal_and_store(node, "feedback", record, audience, urgent=urgent)
    return record, bundle
