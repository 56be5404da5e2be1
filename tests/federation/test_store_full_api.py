"""A full store answers every officer write with a clear 503 store-full, never a bare 500.

Found by the chaos run: creating a record on a full node answered ``500 internal``
(StoreFull escaped the handler). The answer must name the file, the cause and the
setting to change, reads must keep working, and writes work again once the cap is raised.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid

import aiohttp

from node import officer_cli
from node.store.db import StoreFull
from tests.federation.harness import Federation, api, make_seizure, set_setting


def report(i: int) -> dict:
    return make_seizure(i, narrative=(f"report {i} " + uuid.uuid4().hex * 150)[:4800])


async def test_full_store_answers_503_naming_the_setting_and_recovers(tmp_path, caplog):
    fed = Federation(tmp_path)
    fed.add("WCA hub", "CI", "hub", ["WCA"])
    gh = fed.add("Ghana", "GH", "national", ["WCA"])
    fed.wire()
    set_setting(gh, "store", "max_size_mb", 1)
    try:
        await fed.start("Ghana")
        async with aiohttp.ClientSession() as s:
            kept = []
            full = None
            for i in range(400):  # 1 MB holds far fewer than 400 reports of ~5 kB
                status, body = await api(gh, s, "POST", "/api/v1/records", {"kind": "seizure", "record": report(i)})
                if status != 201:
                    full = (status, body)
                    break
                kept.append(body["id"])
            assert full is not None, "a 1 MB store never filled up"
            status, body = full
            assert status == 503, body
            assert body["error"] == "store-full"
            assert str(gh.home / "node.db") in body["detail"]
            assert "store.max_size_mb = 1 MB" in body["detail"] and "Raise store.max_size_mb" in body["detail"]

            # Sharing a kept record needs room too: refused the same way, nothing half-stored.
            status, body = await api(gh, s, "POST", f"/api/v1/records/{kept[0]}/share", {"audience": "federation"})
            assert status == 503 and body["error"] == "store-full", body
            # Reading still works on a full store.
            # Opening a record writes a "view" audit entry: once even those no longer fit, the
            # officer still reads, and the entry goes to the log.
            for _ in range(400):
                status, body = await api(gh, s, "GET", f"/api/v1/records/{kept[0]}")
                assert status == 200, body
                if "audit entry not stored (store full)" in caplog.text:
                    break
            assert "audit entry not stored (store full)" in caplog.text
            status, body = await api(gh, s, "GET", "/api/v1/status")
            assert status == 200 and body["bundles"] == {}, body
            # ... and the status tells the operator why writes fail.
            store = body["store"]
            assert store["max_size_mb"] == 1 and store["size_mb"] > 0.9 and store["disk_free_mb"] > 1, store
            assert store["last_full_at"] and "store.max_size_mb" in store["last_full_message"], store
            text = await asyncio.to_thread(officer_cli.status, argparse.Namespace(
                home=str(gh.home), url=None, token=None, json=False))
            assert "STORE FULL at" in text and "of 1 MB allowed" in text, text
        await fed.stop("Ghana")

        set_setting(gh, "store", "max_size_mb", 64)  # the operator raises the cap and restarts
        await fed.start("Ghana")
        async with aiohttp.ClientSession() as s:
            status, body = await api(gh, s, "POST", "/api/v1/records", {"kind": "seizure", "record": report(999)})
            assert status == 201, body
            status, body = await api(gh, s, "POST", f"/api/v1/records/{kept[0]}/share", {"audience": "federation"})
            assert status == 201, body
            status, body = await api(gh, s, "GET", "/api/v1/status")
            assert body["store"]["last_full_at"] is None and body["store"]["max_size_mb"] == 64, body
    finally:
        await fed.stop()


async def test_a_share_is_stored_whole_or_not_at_all(tmp_path):
    """The bundle, the draft marked as shared and the officer's audit entry are one transaction.

    The store fills up in the middle of a share here by the audit entry's own write failing as
    SQLite fails on a full disk; before, the bundle was kept (and went out) while the officer
    was told 503, and a retry sent the record out a second time.
    """
    import sqlite3

    from node import outbox
    from protocol.bundle import Audience

    fed = Federation(tmp_path)
    fed.add("WCA hub", "CI", "hub", ["WCA"])
    gh = fed.add("Ghana", "GH", "national", ["WCA"])
    fed.wire()
    try:
        await fed.start("Ghana")
        node = gh.node
        assert node is not None
        kept = await outbox.create_local(node, "seizure", make_seizure(1))

        def counts() -> tuple[int, int, object]:
            conn = sqlite3.connect(gh.home / "node.db")
            try:
                return (conn.execute("SELECT count(*) FROM bundles").fetchone()[0],
                        conn.execute("SELECT count(*) FROM audit WHERE action = 'share'").fetchone()[0],
                        conn.execute("SELECT shared_bundle FROM drafts WHERE id = ?", (kept["id"],)).fetchone()[0])
            finally:
                conn.close()

        def disk_full(conn: sqlite3.Connection, bundle: object, record: object) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        before = counts()
        try:
            await outbox.share(node, kept["id"], Audience("federation"), urgent=False, also=disk_full)
        except StoreFull:
            pass
        else:
            raise AssertionError("a full store must refuse the share")
        assert counts() == before == (0, 0, None)

        def audit(conn: sqlite3.Connection, bundle: object, record: object) -> None:
            from node import audit as audit_chain
            audit_chain.append(conn, at=node.now_ms(), user="officer", role="officer", action="share",
                               target=kept["id"], detail="retry")

        bundle = await outbox.share(node, kept["id"], Audience("federation"), urgent=False, also=audit)
        assert counts() == (1, 1, bundle.id)  # the retry shares it once

        # An edit is the same: the next version and its audit entry, or neither.
        changed = {**kept, "narrative": "second look: 1,200 masks, not 1,000"}
        try:
            await outbox.edit(node, kept["id"], changed, also=disk_full)
        except StoreFull:
            pass
        else:
            raise AssertionError("a full store must refuse the edit")
        assert counts() == (1, 1, bundle.id)
        record, _, _ = await outbox.edit(node, kept["id"], changed, also=audit)
        assert record["version"] == 2 and counts()[:2] == (2, 2)
    finally:
        await fed.stop()
