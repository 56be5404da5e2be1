"""A record's versions: the current one in ``records``, every other one held in ``record_versions``,
whatever order they arrive in, each once; and the migration that moved stores to that layout.

Real parts: a running node (Nigeria) taking in bundles really sealed by Ghana through
``node.ingest.ingest``, and the store's own read functions.
"""

from __future__ import annotations

import json

from sqlite_utils import Database

from node.store import records as record_store
from node.store.db import connect
from node.store.schema import migrations
from tests.node.test_search import Sender, net, seizure

__all__ = ["net"]  # the fixture, used by name


def _rows(member, sql, *args):
    conn = connect(member.home / "node.db")
    try:
        return [tuple(r) for r in conn.execute(sql, args)]
    finally:
        conn.close()


async def _read(member, fn, *args):
    return await member.node.store.read(fn, *args)


async def test_versions_in_any_order_are_each_held_once(net):
    ng = net.members["Nigeria"]
    gh = Sender(net, "Ghana")
    v1 = await gh.send("seizure", seizure())
    rid = v1["id"]
    assert _rows(ng, "SELECT count(*) FROM record_versions") == [(0,)]  # the current version is the record

    # Version 3 comes before version 2 (sync order is not creation order).
    v3 = await gh.send("seizure", {**v1, "version": 3, "quantity": {"amount": "3000", "unit": "pieces"}})
    v2 = await gh.send("seizure", {**v1, "version": 2, "quantity": {"amount": "2000", "unit": "pieces"}},
                       created=Sender.clock - 30_000)
    # A second copy of version 2 from another bundle (the origin sent it again): held once.
    await gh.send("seizure", {**v2}, created=Sender.clock - 20_000)

    shown = await _read(ng, record_store.get_record, rid)
    assert shown["version"] == 3 and shown["record"]["quantity"]["amount"] == "3000"
    assert [v["version"] for v in shown["versions"]] == [1, 2, 3]
    for version, amount in ((1, "1000"), (2, "2000"), (3, "3000")):
        body = await _read(ng, record_store.version_body, rid, version)
        assert body is not None and body["quantity"]["amount"] == amount and body["version"] == version
    assert await _read(ng, record_store.version_body, rid, 4) is None
    assert _rows(ng, "SELECT version FROM record_versions WHERE id = ? ORDER BY version", rid) == [(1,), (2,)]
    assert _rows(ng, "SELECT count(*) FROM records WHERE id = ?", rid) == [(1,)]
    assert v3["version"] == 3


def test_the_migration_keeps_only_the_history(tmp_path):
    """A store from before m005 held the current version twice; afterwards only in ``records``."""
    conn = connect(tmp_path / "old.db")
    migrations.apply(Database(conn), stop_before="m005_versions_hold_history_only")
    origin = "naaaaaaaaaaaaaaaaaaaaaaaa"
    for version in (1, 2):
        record = {**seizure(), "id": "11111111-2222-4333-8444-555555555555", "version": version}
        conn.execute("INSERT INTO record_versions (id, version, bundle_id, created, body) VALUES (?, ?, ?, ?, ?)",
                     (record["id"], version, f"b{version}", 1700000000000 + version, json.dumps(record)))
    conn.execute("INSERT INTO records (id, origin, kind, version, bundle_id, audience, created, body)"
                 " VALUES (?, ?, 'seizure', 2, 'b2', 'federation', 1700000000002, ?)",
                 (record["id"], origin, json.dumps(record)))
    conn.commit()
    migrations.apply(Database(conn))
    assert [tuple(r) for r in conn.execute("SELECT id, version, bundle_id FROM record_versions")] == [
        (record["id"], 1, "b1")]
    shown = record_store.get_record(conn, record["id"])
    assert shown is not None
    assert [(v["version"], v["bundle_id"]) for v in shown["versions"]] == [(1, "b1"), (2, "b2")]
    assert record_store.version_body(conn, record["id"], 2) == record
    conn.close()
