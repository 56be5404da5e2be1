"""PROTOCOL.md section 3.1 for single bundles and batches: verify -> dedupe -> store -> open -> index.

The CPU work (signatures, decryption) runs in node/verify.py off the event
loop, in a thread or in worker processes for large batches; everything that is stored for one batch is written in
one transaction by the store's single writer, so a crash leaves either the
whole batch or none of it, and a repeated batch stores nothing twice.

A large batch is checked in parts (one per worker process), and the writer
stores each part as soon as it is checked: the transaction stays open
across the parts (the writer thread takes them from a queue) and commits
once the last part is in, so one transaction per batch holds. The record
bodies and search index rows are worked out by the workers, beside the
checks, so the single writer only writes.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from node.context import Node
from node.store import bundles as bundle_store
from node.store import peers as peer_store
from node.store import records as record_store
from node.store import search_index
from node.store.bundles import BundleRow
from node.verify import Checked, Refused
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


def _store_batch(conn: Any, rows: list[BundleRow], checked: dict[str, Checked]) -> list[str]:
    inserted = bundle_store.insert_bundles(conn, rows)
    created = {r.id: r.created for r in rows}
    opened = [(bid, p, checked[bid]) for bid in inserted if (p := checked[bid].payload) is not None]
    problems = record_store.apply_payloads(conn, [(bid, created[bid], p, c.body) for bid, p, c in opened])
    for bid, problem in problems.items():
        log.warning("bundle %s: record refused: %s", bid, problem)
    if problems:
        conn.executemany("UPDATE bundles SET state='undecryptable', note=? WHERE id=?",
                         [("record: " + problem[:200], bid) for bid, problem in problems.items()])
    search_index.index_payloads(conn, {bid: p for bid, p, _ in opened}, {bid: c.prepared for bid, _, c in opened})
    return inserted


class _Abort(Exception):
    """The batch could not be checked to the end: the writer rolls back what it stored of it."""


_Part = tuple[list[BundleRow], dict[str, Checked]] | None | _Abort
Also = Callable[[sqlite3.Connection], None]


PART_WAIT_S = 300  # a part is a few ms of checking: waiting longer means the event loop is gone


def _store_parts(conn: Any, parts: queue.SimpleQueue[_Part], also: Also | None = None) -> list[str]:
    """Store the parts of one batch as they arrive (on the writer thread, in one transaction) until None,
    then run ``also`` in the same transaction when anything was stored.

    Never waits forever: the single writer must not be held by a batch whose feeder died.
    """
    inserted: list[str] = []
    while True:
        try:
            part = parts.get(timeout=PART_WAIT_S)
        except queue.Empty:
            raise _Abort(f"no part of the batch came within {PART_WAIT_S} s") from None
        if part is None:
            if also is not None and inserted:
                also(conn)
            return inserted
        if isinstance(part, _Abort):
            raise part
        inserted += _store_batch(conn, *part)


async def ingest(node: Node, objs: list[Any], *, via: str | None, also: Also | None = None) -> IngestResult:
    """Run section 3.1 on each of ``objs`` and store the new, valid ones in one transaction.

    ``objs``: bundles as JSON objects or as their JSON texts (bytes). ``via``
    names the peer they came from (None for our own bundles); its
    rejections are counted per reason. StoreFull propagates: nothing of the
    batch is stored and the caller must not advance its cursor. A bundle that
    is already stored is acknowledged as a duplicate (step 6) and nothing of
    it is written again. ``also(conn)`` runs in the batch's transaction when
    it stores anything (an officer's share marks its draft and writes its
    audit entry so: the bundle and they are stored together or not at all).
    """
    now = node.now_ms()
    result = IngestResult()
    rows: dict[str, BundleRow] = {}
    payloads: dict[str, Payload] = {}
    index_of: dict[str, int] = {}
    order: list[str] = []
    parts: queue.SimpleQueue[_Part] = queue.SimpleQueue()
    writing: asyncio.Future[list[str]] | None = None
    try:
        async for outcomes in node.verifier.check_parts(objs, node.snapshot(), now, via):
            part_rows: list[BundleRow] = []
            part_checked: dict[str, Checked] = {}
            for outcome in outcomes:
                if isinstance(outcome, Refused):
                    log.info("rejected bundle %s from %s: %s %s", outcome.id or "?", via or "local", outcome.reason,
                             outcome.detail)
                    result.rejected.append((outcome.id, outcome.reason))
                    continue
                bid = outcome.row.id
                order.append(bid)
                if bid not in rows:
                    rows[bid], index_of[bid] = outcome.row, outcome.index
                    part_rows.append(outcome.row)
                    part_checked[bid] = outcome
                    if outcome.payload is not None:
                        payloads[bid] = outcome.payload
            if part_rows:
                parts.put((part_rows, part_checked))
                if writing is None:
                    writing = asyncio.ensure_future(node.store.write(_store_parts, parts, also))
    except BaseException:
        if writing is not None:
            parts.put(_Abort("checking the batch failed"))
            await asyncio.gather(writing, return_exceptions=True)
        raise
    parts.put(None)
    inserted = set(await writing) if writing is not None else set()
    for bid in order:
        if bid in inserted:
            inserted.discard(bid)
            result.accepted.append(bid)
            if rows[bid].urgent:  # kept whole only where a hub must relay it at once
                result.new_urgent.append(parse_bundle(objs[index_of[bid]]))
        else:
            result.duplicate.append(bid)
    accepted = set(result.accepted)
    if any(p.kind == "roster" for bid, p in payloads.items() if bid in accepted):
        await node.refresh_rosters()
    if result.rejected and via:
        reasons: dict[str, int] = {}
        for _, reason in result.rejected:
            reasons[reason] = reasons.get(reason, 0) + 1
        for reason, n in reasons.items():
            await node.store.write(peer_store.count_rejection, via, reason, now, n)
    return result
