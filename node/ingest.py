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
checks, so the single writer only writes. Batches in a ``WriteGroup`` (the
slices of one fetched page) may share a transaction; a batch is never split
across two.
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


# A WriteGroup's transaction takes no new member once its members bring this many bundles:
# in a writer-only measurement (10,000 checked bundles) the writer took 108 us a bundle in
# transactions of 125, 82 in 250, 75 in 500 and 72 in 1,000, and no less in 2,500. One
# page of the feed (1,000) fits; the cap bounds how long other writes wait behind one.
TRANSACTION_BUNDLES = 1000


class WriteGroup:
    """Ingest calls that share the writer's transactions while their checks overlap.

    The slices of one fetched page are checked side by side; each committed
    on its own, the writer paid a commit (the WAL frames and the full-text
    index's flush) per slice, and wrote pages that random keys dirty again
    in every small transaction. A call joins the open transaction when its
    checking starts; the transaction commits as soon as its last member has
    handed in its parts, so the writer never waits for the network: a slice
    whose bundles are still on the wire when the others are done goes into
    the next transaction. Past ``TRANSACTION_BUNDLES`` a call starts a new
    one. A slice whose checking fails after handing in a part rolls back the
    transaction it shared (the others raise too, and the caller keeps its
    cursor); one that fails before leaves the others to commit. ``also`` runs
    in every transaction that stores anything: ``ingest`` gives it to a
    group of one.
    """

    def __init__(self, node: Node, also: Also | None = None) -> None:
        self.node = node
        self.also = also
        self._open: _Transaction | None = None

    def join(self, bundles: int = 0) -> _Transaction:
        """The open transaction, or a new one, with one more member bringing up to ``bundles``."""
        if self._open is None or (self._open.bundles and self._open.bundles + bundles > TRANSACTION_BUNDLES):
            self._open = _Transaction(self.node, self.also)
        self._open.members += 1
        self._open.bundles += bundles
        return self._open

    def leave(self, txn: _Transaction, failed: bool = False) -> None:
        """A member has handed in all its parts (or failed); the last one out closes the transaction."""
        txn.members -= 1
        if failed:
            txn.parts.put(_Abort("checking the batch failed"))
        if txn.members == 0:
            txn.parts.put(None)
            if self._open is txn:
                self._open = None


class _Transaction:
    """One writer transaction of a WriteGroup: its parts queue and the writer's job."""

    def __init__(self, node: Node, also: Also | None) -> None:
        self.node = node
        self.also = also
        self.members = 0
        self.bundles = 0  # what its members bring, at most
        self.parts: queue.SimpleQueue[_Part] = queue.SimpleQueue()
        self.writing: asyncio.Future[list[str]] | None = None
        self.claimed: set[str] = set()  # inserted ids already reported as accepted by a member

    def put(self, part: tuple[list[BundleRow], dict[str, Checked]]) -> None:
        self.parts.put(part)
        if self.writing is None:
            self.writing = asyncio.ensure_future(self.node.store.write(_store_parts, self.parts, self.also))

    async def inserted(self) -> set[str]:
        # Shielded: one member cancelled must not cancel the writer's job under the others.
        return set(await asyncio.shield(self.writing)) if self.writing is not None else set()


async def ingest(node: Node, objs: list[Any], *, via: str | None, also: Also | None = None,
                 group: WriteGroup | None = None) -> IngestResult:
    """Run section 3.1 on each of ``objs`` and store the new, valid ones in one transaction.

    ``objs``: bundles as JSON objects or as their JSON texts (bytes). ``via``
    names the peer they came from (None for our own bundles); its
    rejections are counted per reason. StoreFull propagates: nothing of the
    batch is stored and the caller must not advance its cursor. A bundle that
    is already stored is acknowledged as a duplicate (step 6) and nothing of
    it is written again. ``also(conn)`` runs in the batch's transaction when
    it stores anything (an officer's share marks its draft and writes its
    audit entry so: the bundle and they are stored together or not at all).
    ``group``: share transactions with the other calls of a WriteGroup (then
    ``also`` is the group's).
    """
    if group is None:
        group = WriteGroup(node, also)
    elif also is not None:  # it would run once per shared transaction, not with this batch
        raise ValueError("ingest: pass also= to the WriteGroup, not to one of its batches")
    now = node.now_ms()
    result = IngestResult()
    rows: dict[str, BundleRow] = {}
    payloads: dict[str, Payload] = {}
    index_of: dict[str, int] = {}
    order: list[str] = []
    # Joined before checking starts, so that slices checked one after another share the transaction.
    txn = group.join(len(objs))
    handed_in = False  # whether any part of this batch reached the transaction
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
                txn.put((part_rows, part_checked))
                handed_in = True
    except BaseException:
        # Nothing of ours in the transaction: the other members' parts are whole, so they may commit.
        group.leave(txn, failed=handed_in)
        if txn.writing is not None:
            await asyncio.gather(asyncio.shield(txn.writing), return_exceptions=True)
        raise
    group.leave(txn)
    inserted = await txn.inserted()
    claimed = txn.claimed
    for bid in order:
        if bid in inserted and bid not in claimed:
            claimed.add(bid)
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
