"""Steps 1-5 of PROTOCOL.md 3.1 and the recipient's opening, as a function of a picklable snapshot.

Verification is most of ingest's cost and is pure CPU, so it runs off the
event loop: small batches in a thread, large ones spread over worker
processes, one per core (the GIL would otherwise keep a node on one core).
The same ``check_chunk`` runs in both places, so there is one code path.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields
from typing import Any

from crypto.envelope import open_bundle, verify_bundle
from crypto.keys import EncryptionKey
from node.store.bundles import BundleRow
from node.store.records import body_of
from node.store.search_index import Prepared, prepare
from protocol.audience import origin_acceptable
from protocol.bundle import Audience, Bundle, Payload, check_times, parse_bundle
from protocol.descriptor import Descriptor
from protocol.errors import InvalidBundle

log = logging.getLogger("cenmesh.verify")

POOL_THRESHOLD = 64  # below this many bundles, a process hop costs more than it saves


@dataclass(frozen=True)
class Snapshot:
    """What checking needs to know about this node and the origins of one batch."""

    me: str
    is_hub: bool
    max_bundle_bytes: int
    origins: dict[str, Descriptor]
    enc_private: tuple[bytes, ...]  # newest first


@dataclass(frozen=True)
class Checked:
    """A bundle that passed steps 1-5, with what opening it gave.

    ``body`` and ``prepared``: the record as the store keeps it and its
    search index rows (``search_index.prepare``), worked out here so the
    store's single writer only writes.
    """

    index: int
    row: BundleRow
    payload: Payload | None
    body: str | None = None
    prepared: Prepared | None = None


@dataclass(frozen=True)
class Refused:
    """A bundle refused at steps 1-5 (nothing of it is stored)."""

    index: int
    id: str
    reason: str
    detail: str


def _verify(snapshot: Snapshot, obj: Any, now_ms: int) -> Bundle:
    bundle = parse_bundle(obj, max_bytes=snapshot.max_bundle_bytes)
    reason = origin_acceptable(bundle.origin, bundle.created, snapshot.origins)
    if reason:
        raise InvalidBundle(reason, f"origin {bundle.origin}")
    verify_bundle(bundle, snapshot.origins[bundle.origin].identity_key)
    check_times(bundle, now_ms)
    if not snapshot.is_hub and snapshot.me not in bundle.recipient_ids:
        # A national node holds only what it may read; relaying is the hubs' job.
        raise InvalidBundle("not-recipient", f"{snapshot.me} is not among the recipients")
    return bundle


def _open(snapshot: Snapshot, keys: list[EncryptionKey], bundle: Bundle, now_ms: int,
          via: str | None) -> tuple[BundleRow, Payload | None]:
    payload, state, note = None, "relay", None
    if snapshot.me in bundle.recipient_ids:
        try:
            payload, state = open_bundle(bundle, snapshot.me, keys, now_ms=now_ms), "readable"
        except InvalidBundle as exc:  # kept for relaying, never shown (3.1)
            state, note = "undecryptable", exc.reason
            log.warning("bundle %s addressed to us cannot be opened: %s", bundle.id, exc)
    row = BundleRow(
        id=bundle.id, origin=bundle.origin, created=bundle.created, expires=bundle.expires, urgent=bundle.urgent,
        size=bundle.size, scope=bundle.audience.describe()[:200], raw=bundle.raw,
        recipients=bundle.recipient_ids, state=state, note=note, via=via, received=now_ms,
    )
    return row, payload


def check_chunk(objs: Sequence[Any], start: int, snapshot: Snapshot, now_ms: int,
                via: str | None) -> list[Checked | Refused]:
    """Check every bundle of a chunk (JSON objects or texts); ``start`` is the chunk's offset in the batch."""
    keys = [EncryptionKey(k) for k in snapshot.enc_private]
    out: list[Checked | Refused] = []
    for i, obj in enumerate(objs, start):
        try:
            bundle = _verify(snapshot, obj, now_ms)
        except InvalidBundle as exc:
            out.append(Refused(i, _maybe_id(obj), exc.reason, exc.detail))
            continue
        row, payload = _open(snapshot, keys, bundle, now_ms, via)
        if payload is None:
            out.append(Checked(i, row, None))
            continue
        prepared = prepare(payload.kind, payload.origin, payload.record, row.created)
        out.append(Checked(i, row, payload, body_of(payload.record), prepared))
    return out


# Results cross the process boundary as plain tuples: pickling frozen dataclasses costs about
# three times as much (measured 70 vs 27 us a bundle), a large share of a bundle's whole budget.
Packed = tuple[Any, ...]


def check_chunk_packed(objs: Sequence[Any], start: int, snapshot: Snapshot, now_ms: int,
                       via: str | None) -> list[Packed]:
    """check_chunk for a worker process: the same results, packed as tuples.

    The cyclic collector is off while the chunk is checked. Every object the
    chunk makes is either garbage freed by reference counting or part of the
    results, which the collector would otherwise walk again at each of its
    passes. In scripts/bench sync, gc callbacks counted up to 25 us of a
    worker's CPU per bundle inside collections; with the collector off, the
    workers' CPU per bundle fell by about 5 us in paired runs. It is back on
    before the worker takes the next chunk.
    """
    gc.disable()
    try:
        return _packed(objs, start, snapshot, now_ms, via)
    finally:
        gc.enable()


def _packed(objs: Sequence[Any], start: int, snapshot: Snapshot, now_ms: int, via: str | None) -> list[Packed]:
    out: list[Packed] = []
    for r in check_chunk(objs, start, snapshot, now_ms, via):
        if isinstance(r, Refused):
            out.append((r.index, r.id, r.reason, r.detail))
            continue
        row = tuple(getattr(r.row, name) for name in _ROW_FIELDS)
        if r.row.raw is objs[r.index - start]:  # a canonical text came in: the caller has those bytes
            row = (*row[:_RAW_AT], None, *row[_RAW_AT + 1:])
        p = r.payload
        payload = None if p is None else (p.origin, p.audience.scope, p.audience.nodes, p.audience.group, p.kind,
                                          p.record, r.body, r.prepared)
        out.append((r.index, row, payload))
    return out


def _unpack(item: Packed, objs: Sequence[Any]) -> Checked | Refused:
    if len(item) == 4:
        return Refused(*item)
    index, row, payload = item
    if row[_RAW_AT] is None:
        row = (*row[:_RAW_AT], objs[index], *row[_RAW_AT + 1:])
    bundle_row = BundleRow(*row)
    if payload is None:
        return Checked(index, bundle_row, None)
    origin, scope, nodes, group, kind, record, body, prepared = payload
    return Checked(index, bundle_row, Payload(origin, Audience._checked(scope, nodes, group), kind, record), body,
                   prepared)


_ROW_FIELDS = tuple(f.name for f in fields(BundleRow))
_RAW_AT = _ROW_FIELDS.index("raw")


def _maybe_id(obj: Any) -> str:
    """The bundle id if it can be computed at all (for the rejection report), else ''."""
    try:
        return parse_bundle(obj).id
    except InvalidBundle:
        return ""


def _worker_start(parent: int) -> None:
    """Set up a worker process: its modules out of the collector's way, and a watch on the node."""
    gc.freeze()  # what the imports made lives as long as the worker: no collection need walk it again
    _watch_parent(parent)


def _watch_parent(parent: int) -> None:
    """Make a worker leave when the node process is gone.

    A worker waits on its task pipe, and a node killed with SIGKILL never
    closes it: without this, each kill (an operator's, or the OOM killer's)
    leaves idle workers behind for good, and a restarted node starts more.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="cenmesh-parent-watch", daemon=True).start()


class Verifier:
    """Runs check_chunk in a thread, or across worker processes for large batches."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the node process has threads (SQLite writer, executors).
            self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_worker_start, initargs=(os.getpid(),))
        return self._pool

    async def check(self, objs: Sequence[Any], snapshot: Snapshot, now_ms: int,
                    via: str | None) -> list[Checked | Refused]:
        """Results in the batch's order."""
        return [r async for part in self.check_parts(objs, snapshot, now_ms, via) for r in part]

    async def check_parts(self, objs: Sequence[Any], snapshot: Snapshot, now_ms: int,
                          via: str | None) -> AsyncIterator[list[Checked | Refused]]:
        """The results in the batch's order, part by part (one per worker) as they are finished.

        Every part is submitted at once, so the workers never wait for the
        consumer; a consumer that stops early cancels the parts not started.
        """
        if self.processes < 2 or len(objs) < POOL_THRESHOLD:
            yield await asyncio.to_thread(check_chunk, objs, 0, snapshot, now_ms, via)
            return
        loop = asyncio.get_running_loop()
        pool = self._get_pool()
        # One part per worker. Smaller parts would let the writer start sooner, but measured on 2 cores
        # (parts of 50 to 100) they cost B's main process 40 to 75 us more CPU a bundle (hand-offs of the
        # GIL between the writer thread and the event loop) than the overlap gave back.
        size = -(-len(objs) // self.processes)
        futures = [
            loop.run_in_executor(pool, check_chunk_packed, objs[i:i + size], i,
                                 _only_origins(snapshot, objs[i:i + size]), now_ms, via)
            for i in range(0, len(objs), size)
        ]
        try:
            for future in futures:
                yield [_unpack(r, objs) for r in await future]
        finally:
            for future in futures:
                future.cancel()

    async def warm_up(self) -> None:
        """Start the worker processes now rather than on the first large batch (a spawn costs ~1 s)."""
        if self.processes >= 2:
            loop = asyncio.get_running_loop()
            pool = self._get_pool()
            await asyncio.gather(*(loop.run_in_executor(pool, os.getpid) for _ in range(self.processes)))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _only_origins(snapshot: Snapshot, objs: Sequence[Any]) -> Snapshot:
    """The snapshot cut down to the origins a chunk names, so little crosses to the worker.

    Only worth it when the directory is large beside the chunk: finding the
    origins costs about 3 us a bundle, and a descriptor that crosses costs
    5 to 8 us (pickled and unpickled; measured with 50 and 200 of them).
    """
    if len(snapshot.origins) * 2 <= len(objs):
        return snapshot
    wanted: set[Any] = set()
    for o in objs:
        if isinstance(o, dict):
            wanted.add(o.get("origin"))
        elif o.find(b"\\u") >= 0:  # an id may be hidden in escapes: send every origin (find: see _BACKSLASH in protocol/fastpayload.py)
            return snapshot
        elif (at := o.find(b'"origin":"')) >= 0 and o.find(b'"origin"', at + 1) < 0:
            wanted.add(o[at + 10:at + 35].decode("ascii", "replace"))  # canonical text: one member, no spaces
        else:  # every "origin" member of the text, however it is spaced
            wanted.update(m.decode("utf-8", "replace") for m in _ORIGIN_MEMBER.findall(o))
    origins = {k: v for k, v in snapshot.origins.items() if k in wanted}
    return Snapshot(snapshot.me, snapshot.is_hub, snapshot.max_bundle_bytes, origins, snapshot.enc_private)


_ORIGIN_MEMBER = re.compile(rb'"origin"\s*:\s*"([^"]*)"')


def default_processes() -> int:
    """One worker per core; a single-core machine checks in a thread."""
    return os.cpu_count() or 1
