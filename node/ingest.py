"""PROTOCOL.md section 3.1 for single bundles and batches: verify -> dedupe -> store -> open -> index.

The CPU work (signatures, decryption) runs in a worker thread so the event
loop keeps serving; everything that is stored for one batch is written in
one transaction by the store's single writer, so a crash leaves either the
whole batch or none of it, and a repeated batch stores nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from crypto.envelope import open_bundle, verify_bundle
from node.context import Node
from node.store import bundles as bundle_store
from node.store import peers as peer_store
from node.store import records as record_store
from node.store.bundles import BundleRow
from protocol.audience import origin_acceptable
from protocol.bundle import Bundle, Payload, check_times, parse_bundle
from protocol.errors import InvalidBundle

log = logging.getLogger("cenmesh.ingest")


@dataclass
class IngestResult:
    """Per-bundle answers, as the push response of section 4 reports them."""

    accepted: list[str] = field(default_factory=list)
    duplicate: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    new_bundles: list[Bundle] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted, "duplicate": self.duplicate,
            "rejected": [{"id": i, "reason": r} for i, r in self.rejected],
        }


@dataclass
class _Checked:
    bundle: Bundle
    payload: Payload | None = None
    state: str = "relay"
    note: str | None = None


def _verify(node: Node, obj: Any, now_ms: int) -> Bundle:
    """Steps 1 to 5: size, shape, origin, signature, time."""
    bundle = parse_bundle(obj, max_bytes=node.settings.protocol.max_bundle_bytes)
    reason = origin_acceptable(bundle.origin, bundle.created, node.directory)
    if reason:
        raise InvalidBundle(reason, f"origin {bundle.origin}")
    verify_bundle(bundle, node.directory[bundle.origin].identity_key)
    check_times(bundle, now_ms)
    if not node.is_hub and node.node_id not in bundle.recipient_ids:
        # A national node holds only what it may read; relaying is the hubs' job.
        raise InvalidBundle("not-recipient", f"{node.node_id} is not among the recipients")
    return bundle


def _open(node: Node, bundle: Bundle, now_ms: int) -> _Checked:
    """The recipient part: unwrap, decrypt, validate; failures keep the bundle for relaying."""
    if node.node_id not in bundle.recipient_ids:
        return _Checked(bundle)
    try:
        return _Checked(bundle, open_bundle(bundle, node.node_id, node.enc_keys, now_ms=now_ms), "readable")
    except InvalidBundle as exc:
        log.warning("bundle %s addressed to us cannot be opened: %s", bundle.id, exc)
        return _Checked(bundle, None, "undecryptable", exc.reason)


def _store_batch(conn: Any, rows: list[BundleRow], payloads: dict[str, Payload]) -> list[str]:
    inserted = bundle_store.insert_bundles(conn, rows)
    for bid in inserted:
        payload = payloads.get(bid)
        if payload is None:
            continue
        row = next(r for r in rows if r.id == bid)
        problem = record_store.apply_payload(conn, bid, row.created, payload)
        if problem:
            log.warning("bundle %s: record refused: %s", bid, problem)
            conn.execute("UPDATE bundles SET state='undecryptable', note=? WHERE id=?", ("record: " + problem[:200], bid))
    return inserted


async def ingest(node: Node, objs: list[Any], *, via: str | None) -> IngestResult:
    """Run section 3.1 on each of ``objs`` and store the new, valid ones in one transaction.

    ``via`` names the peer they came from (None for our own bundles); its
    rejections are counted per reason. StoreFull propagates: nothing of the
    batch is stored and the caller must not advance its cursor.
    """
    now = node.now_ms()
    result = IngestResult()
    verified: list[Bundle] = []

    def check_all() -> None:
        for obj in objs:
            try:
                verified.append(_verify(node, obj, now))
            except InvalidBundle as exc:
                bid = _maybe_id(obj)
                log.info("rejected bundle %s from %s: %s", bid or "?", via or "local", exc)
                result.rejected.append((bid, exc.reason))

    await asyncio.to_thread(check_all)
    unique: dict[str, Bundle] = {}
    for b in verified:
        unique.setdefault(b.id, b)
    known = await node.store.read(bundle_store.known_ids, list(unique))
    fresh = [b for b in unique.values() if b.id not in known]
    checked = await asyncio.to_thread(lambda: [_open(node, b, now) for b in fresh])
    rows = [
        BundleRow(
            id=c.bundle.id, origin=c.bundle.origin, created=c.bundle.created, expires=c.bundle.expires,
            urgent=c.bundle.urgent, size=c.bundle.size, scope=c.bundle.audience.describe()[:200],
            raw=c.bundle.raw, recipients=c.bundle.recipient_ids, state=c.state, note=c.note,
            via=via, received=now,
        )
        for c in checked
    ]
    payloads = {c.bundle.id: c.payload for c in checked if c.payload is not None}
    inserted = set(await node.store.write(_store_batch, rows, payloads)) if rows else set()
    for b in verified:
        if b.id in inserted:
            result.accepted.append(b.id)
            inserted.discard(b.id)
            result.new_bundles.append(b)
        else:
            result.duplicate.append(b.id)
    if payloads and any(p.kind == "roster" for p in payloads.values()):
        await node.refresh_rosters()
    if result.rejected and via:
        reasons: dict[str, int] = {}
        for _, reason in result.rejected:
            reasons[reason] = reasons.get(reason, 0) + 1
        for reason, n in reasons.items():
            await node.store.write(peer_store.count_rejection, via, reason, now, n)
    return result


def _maybe_id(obj: Any) -> str:
    """The bundle id if it can be computed at all (for the rejection report), else ''."""
    try:
        return parse_bundle(obj).id
    except Exception:  # any garbage: the report just has no id
        return ""
