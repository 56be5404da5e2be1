"""A large batch is checked in parts and streamed into one transaction: same store, same index, all or nothing.

Real parts only: Nigeria running on loopback with its worker processes, bundles really sealed by Ghana and
taken in by ``node.ingest.ingest`` (the fixtures and helpers of test_search.py).
"""

from __future__ import annotations

import os
import queue

import pytest

from crypto.envelope import seal_bundle
from node.ingest import _Abort, _store_parts
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

    from node.ingest import ingest
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


async def test_a_batch_whose_checking_fails_leaves_nothing_stored(net):
    ng = net.members["Nigeria"]
    gh = Sender(net, "Ghana")
    assert ng.node is not None
    keys = {m.node_id: enc_key_of(m) for m in (gh.member, ng)}
    now = ng.node.now_ms()
    objs = [seal_bundle(identity=identity_of(gh.member), kind="seizure", record=complete(seizure()),
                        audience=Audience("nodes", (ng.node_id,)), recipient_keys=keys, created=now,
                        expires=now + DAY, urgent=False, rng=os.urandom).obj for _ in range(5)]
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
