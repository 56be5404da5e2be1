"""A large batch is checked in parts and streamed into one transaction: same store, same index, all or nothing.

Real parts only: Nigeria running on loopback with its worker processes, bundles really sealed by Ghana and
taken in by ``node.ingest.ingest`` (the fixtures and helpers of test_search.py).
"""

from __future__ import annotations

import asyncio
import os
import queue

import pytest

from crypto.envelope import seal_bundle
from node.ingest import TRANSACTION_BUNDLES, WriteGroup, _Abort, _store_parts, ingest
from node.outbox import complete
from node.search import SearchQuery
from node.store import search_index
from node.verify import Checked
from protocol.bundle import Audience
from tests.federation.harness import enc_key_of, identity_of
from tests.node.test_search import DAY, Sender, alert, db, ids, index_consistent, net, run, seizure

__all__ = ["net"]  # the fixture, used by name


def index_rows(member):
    conn = db(member)
    try:
        return conn.execute(
            "SELECT f.id, f.kind, f.origin, f.category, f.hs_code, f.departure, f.destination, f.transit, f.date,"
            " f.tlp, f.transport_mode, f.has_feedback, f.retracted, f.created, t.text, t.tags"
            " FROM record_facets f JOIN records_fts t ON t.rowid = f.rowid ORDER BY f.id").fetchall()
    finally:
        conn.close()


async def test_a_batch_in_parts_stores_and_indexes_like_one_at_a_time(net):
    ng = net.members["Nigeria"]
    gh = Sender(net, "Ghana")
    base = Sender.clock + 60_000
    records = [complete(seizure(commodity={"description": f"lot {i} of counterfeit bearings", "hs_code": "848210"},
                                category="ipr")) for i in range(260)]
    items = [("seizure", r, base + i * 1000) for i, r in enumerate(records)]
    late = records[250]
    the_alert = complete(alert(title="Bearings with forged marks expected"))
    # Rules that cross parts: a retraction before its record, one after it, feedback after its alert,
    # a second version in a later part than the first.
    items.insert(3, ("retract", {"ref": late["id"], "reason": "entered twice"}, base + 3))
    items.insert(20, ("alert", the_alert, base + 20))
    items.insert(150, ("retract", {"ref": records[10]["id"], "reason": "wrong office"}, base + 150))
    items.insert(200, ("feedback", {"ref": the_alert["id"], "outcome": "acknowledged"}, base + 200))
    items.append(("seizure", {**records[30], "version": 2, "commodity": {"description": "ball bearings, genuine",
                                                                         "hs_code": "848210"}}, base + 400_000))
    assert ng.node is not None
    keys = {m.node_id: enc_key_of(m) for m in (gh.member, ng)}
    sealed = [seal_bundle(identity=identity_of(gh.member), kind=k, record=complete(r), audience=Audience(
        "nodes", (ng.node_id,)), recipient_keys=keys, created=c, expires=c + 390 * DAY, urgent=False, rng=os.urandom)
        for k, r, c in items]
    objs = [b.obj for b in sealed]
    parts = [p async for p in ng.node.verifier.check_parts(objs, ng.node.snapshot(), ng.node.now_ms(), None)]
    assert (len(parts) >= 2 or ng.node.verifier.processes < 2) and sum(len(p) for p in parts) == len(objs)

    result = await ingest(ng.node, objs, via=None)
    assert len(result.accepted) == len(objs) and not result.rejected
    again = await ingest(ng.node, objs[:100], via=None)  # a repeated batch stores nothing twice
    assert len(again.duplicate) == 100 and not again.accepted

    assert ids(run(ng, SearchQuery(text="bearings", limit=500))).count(records[10]["id"]) == 0
    assert late["id"] not in ids(run(ng, SearchQuery(text="bearings", limit=500)))
    assert late["id"] in ids(run(ng, SearchQuery(text="bearings", include_retracted=True, limit=500)))
    assert ids(run(ng, SearchQuery(has_feedback=True))) == [the_alert["id"]]
    assert ids(run(ng, SearchQuery(text="genuine"))) == [records[30]["id"]]
    index_consistent(ng)
    # The index the parts wrote is the one reindex_all builds from the records alone.
    before = index_rows(ng)
    assert len(before) == 261
    conn = db(ng)
    try:
        conn.execute("BEGIN IMMEDIATE")
        search_index.reindex_all(conn)
        conn.execute("COMMIT")
    finally:
        conn.close()
    assert index_rows(ng) == before


def _sealed_to_nigeria(net, count: int) -> list[dict]:
    ng, gh = net.members["Nigeria"], net.members["Ghana"]
    assert ng.node is not None
    keys = {m.node_id: enc_key_of(m) for m in (gh, ng)}
    now = ng.node.now_ms()
    return [seal_bundle(identity=identity_of(gh), kind="seizure", record=complete(seizure()),
                        audience=Audience("nodes", (ng.node_id,)), recipient_keys=keys, created=now,
                        expires=now + DAY, urgent=False, rng=os.urandom).obj for _ in range(count)]


def _counts(member) -> tuple[int, int, int]:
    conn = db(member)
    try:
        return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[return-value]
                     for t in ("bundles", "records", "record_facets"))
    finally:
        conn.close()


async def test_a_batch_whose_checking_fails_leaves_nothing_stored(net):
    ng = net.members["Nigeria"]
    assert ng.node is not None
    objs = _sealed_to_nigeria(net, 5)
    now = ng.node.now_ms()
    checked = await ng.node.verifier.check(objs, ng.node.snapshot(), now, None)
    assert all(isinstance(c, Checked) for c in checked)
    parts: queue.SimpleQueue = queue.SimpleQueue()
    parts.put(([c.row for c in checked], {c.row.id: c for c in checked}))  # stored, then the batch fails
    parts.put(_Abort("checking the batch failed"))
    with pytest.raises(_Abort):
        await ng.node.store.write(_store_parts, parts)
    conn = db(ng)
    try:
        assert conn.execute("SELECT count(*) FROM bundles").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM records").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM record_facets").fetchone()[0] == 0
    finally:
        conn.close()


async def _checked_parts(ng, objs, size):
    now = ng.node.now_ms()
    checked = await ng.node.verifier.check(objs, ng.node.snapshot(), now, None)
    assert all(isinstance(c, Checked) for c in checked)
    return [([c.row for c in checked[i:i + size]], {c.row.id: c for c in checked[i:i + size]})
            for i in range(0, len(checked), size)]


async def test_a_write_group_commits_once_for_members_that_overlap(net):
    ng = net.members["Nigeria"]
    assert ng.node is not None
    parts = await _checked_parts(ng, _sealed_to_nigeria(net, 12), 4)
    commits: list[str] = []
    conn = ng.node.store._write_conn
    conn.set_trace_callback(lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None)
    try:
        group = WriteGroup(ng.node)
        first, second = group.join(), group.join()
        assert first is second  # the second slice's checks began before the first one's ended
        first.put(parts[0])
        second.put(parts[1])
        group.leave(first)
        first.put(parts[2])  # still open: a member is left
        group.leave(second)
        assert len(await first.inserted()) == 12
        later = group.join()  # after the last member left, a new transaction
        assert later is not first
        group.leave(later)
        assert await later.inserted() == set()
    finally:
        conn.set_trace_callback(None)
    assert len(commits) == 1
    assert _counts(ng) == (12, 12, 12)


async def test_a_member_that_fails_rolls_back_the_transaction_it_shared(net):
    ng = net.members["Nigeria"]
    assert ng.node is not None
    parts = await _checked_parts(ng, _sealed_to_nigeria(net, 8), 4)
    group = WriteGroup(ng.node)
    fine, failing = group.join(), group.join()
    fine.put(parts[0])
    failing.put(parts[1])
    group.leave(fine)
    group.leave(failing, failed=True)
    with pytest.raises(_Abort):
        await fine.inserted()
    assert _counts(ng) == (0, 0, 0)


async def test_slices_ingested_in_a_group_report_each_bundle_once(net):
    ng = net.members["Nigeria"]
    assert ng.node is not None
    objs = _sealed_to_nigeria(net, 150)  # slices above the worker threshold: checked in processes
    group = WriteGroup(ng.node)
    a, b, c = await asyncio.gather(ingest(ng.node, objs[:80], via=None, group=group),
                                   ingest(ng.node, objs[50:130], via=None, group=group),
                                   ingest(ng.node, objs[120:], via=None, group=group))
    accepted = a.accepted + b.accepted + c.accepted
    assert len(accepted) == len(set(accepted)) == 150  # each stored bundle is accepted by one slice
    assert len(a.duplicate) + len(b.duplicate) + len(c.duplicate) == 40  # the overlaps, reported as duplicates
    assert _counts(ng) == (150, 150, 150)
    index_consistent(ng)


async def test_slices_join_when_their_checking_starts_and_a_full_transaction_takes_no_more(net):
    """Slices whose checks run one after another (the workers take them in turn) still share one
    transaction, as they joined it when their checking started; past TRANSACTION_BUNDLES a slice
    opens the next one."""
    ng = net.members["Nigeria"]
    assert ng.node is not None
    objs = _sealed_to_nigeria(net, 240)
    commits: list[str] = []
    conn = ng.node.store._write_conn
    conn.set_trace_callback(lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None)
    try:
        group = WriteGroup(ng.node)
        results = await asyncio.gather(*(ingest(ng.node, objs[i:i + 80], via=None, group=group)
                                         for i in range(0, 240, 80)))
        assert sum(len(r.accepted) for r in results) == 240
        assert len(commits) == 1
    finally:
        conn.set_trace_callback(None)
    assert _counts(ng) == (240, 240, 240)
    group = WriteGroup(ng.node)
    full = group.join(TRANSACTION_BUNDLES - 10)
    assert group.join(10) is full and group.join(1) is not full


async def test_a_member_that_fails_before_handing_in_a_part_leaves_the_others_to_commit(net):
    """A slice cancelled while its checks run (nothing of it in the transaction yet) does not roll
    back the slice beside it."""
    ng = net.members["Nigeria"]
    assert ng.node is not None
    objs = _sealed_to_nigeria(net, 160)
    group = WriteGroup(ng.node)
    kept = asyncio.ensure_future(ingest(ng.node, objs[:80], via=None, group=group))
    dropped = asyncio.ensure_future(ingest(ng.node, objs[80:], via=None, group=group))
    await asyncio.sleep(0)  # both have joined the transaction and wait for their checks
    dropped.cancel()
    result = await kept
    with pytest.raises(asyncio.CancelledError):
        await dropped
    assert len(result.accepted) == 80
    assert _counts(ng) == (80, 80, 80)
