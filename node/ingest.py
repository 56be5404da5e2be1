"""PROTOCOL.md section 3.1 for single bundles and batches: verify -> dedupe -> store -> open -> index.

The CPU work (signatures, decryption) runs in node/verify.py off the event
loop, in a thread or in worker processes for large batches; everything that is stored for one batch is written in
one transaction by the store's single writer, so a crash leaves either the
whole batch or none of it, and a repeated batch stores nothing twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from node.context import Node
from node.store import bundles as bundle_store
from node.store import peers as peer_store
from node.store import records as record_store
from node.store import search_index
from node.store.bundles import BundleRow
from node.verify import Refused
from protocol.bundle import Bundle, Payload, parse_bundle

log = logging.getLogger("cenmesh.ingest")


@dataclass
class IngestResult:
    """Per-bundle answers, as the push response of section 4 reports them."""

    accepted: list[str] = field(default_factory=list)
    duplicate: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    new_urgent: list[Bundle] = field(default_factory=list)  # accepted now, urgent

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted, "duplicate": self.duplicate,
            "rejected": [{"id": i, "reason": r} for i, r in self.rejected],
        }


def _store_batch(conn: Any, rows: list[BundleRow], payloads: dict[str, Payload]) -> list[str]:
    inserted = bundle_store.insert_bundles(conn, rows)
    created = {r.id: r.created for r in rows}
    for bid in inserted:
        payload = payloads.get(bid)
        if payload is None:
            continue
        problem = record_store.apply_payload(conn, bid, created[bid], payload)
        if problem:
            log.warning("bundle %s: record refused: %s", bid, problem)
            conn.execute("UPDATE bundles SET state='undecryptable', note=? WHERE id=?", ("record: " + problem[:200], bid))
    search_index.index_payloads(conn, {bid: payloads[bid] for bid in inserted if bid in payloads})
    return inserted


async def ingest(node: Node, objs: list[Any], *, via: str | None) -> IngestResult:
    """Run section 3.1 on each of ``objs`` and store the new, valid ones in one transaction.

    ``via`` names the peer they came from (None for our own bundles); its
    rejections are counted per reason. StoreFull propagates: nothing of the
    batch is stored and the caller must not advance its cursor. A bundle that
    is already stored is acknowledged as a duplicate (step 6) and nothing of
    it is written again.
    """
    now = node.now_ms()
    result = IngestResult()
    outcomes = await node.verifier.check(objs, node.snapshot(), now, via)
    rows: dict[str, BundleRow] = {}
    payloads: dict[str, Payload] = {}
    index_of: dict[str, int] = {}
    order: list[str] = []
    for outcome in outcomes:
        if isinstance(outcome, Refused):
            log.info("rejected bundle %s from %s: %s %s", outcome.id or "?", via or "local", outcome.reason, outcome.detail)
            result.rejected.append((outcome.id, outcome.reason))
            continue
        bid = outcome.row.id
        order.append(bid)
        if bid not in rows:
            rows[bid], index_of[bid] = outcome.row, outcome.index
            if outcome.payload is not None:
                payloads[bid] = outcome.payload
    inserted = set(await node.store.write(_store_batch, list(rows.values()), payloads)) if rows else set()
    for bid in order:
        if bid in inserted:
            inserted.discard(bid)
            result.accepted.append(bid)
            if rows[bid].urgent:  # kept whole only where a hub must relay it at once
                result.new_urgent.append(parse_bundle(objs[index_of[bid]]))
        else:
            result.duplicate.append(bid)
    if any(p.kind == "roster" for bid, p in payloads.items() if bid in result.accepted):
        await node.refresh_rosters()
    if result.rejected and via:
        reasons: dict[str, int] = {}
        for _, reason in result.rejected:
            reasons[reason] = reasons.get(reason, 0) + 1
        for reason, n in reasons.items():
            await node.store.write(peer_store.count_rejection, via, reason, now, n)
    return result
