"""A shared record's life across a real federation: edited, retracted; forgeries by others refused;
alerts with their feedback thread and an inbox that knows what is overdue and what was answered."""

from __future__ import annotations

import asyncio
import json
import os
import time

import aiohttp

from crypto.envelope import seal_bundle
from node import cli
from protocol.bundle import Audience
from tests.federation.harness import (
    api,
    db_rows,
    enc_key_of,
    identity_of,
    make_seizure,
    push_as,
    share_new,
)

ALERT = {
    "title": "Falsified antimalarials in container CSQU3054383", "urgency": "priority",
    "requested_action": "examine", "respond_by": "2030-01-01",
    "consignment": {"container": "CSQU3054383", "destination_locode": "GHTEM"},
    "suspected": {"category": "medicines", "commodity": {"description": "artemether-lumefantrine tablets"}},
    "tlp": "AMBER",
}


def build(fed):
    fed.add("WCA hub", "CI", "hub", ["WCA"])
    for name, country in (("Nigeria", "NG"), ("Ghana", "GH"), ("Benin", "BJ")):
        fed.add(name, country, "national", ["WCA"])
    fed.wire()
    for name in ("Nigeria", "Ghana", "Benin"):
        fed.peer(name, "WCA hub")
    return fed.members["Nigeria"], fed.members["Ghana"], fed.members["Benin"]


async def settle(fed):
    await fed.drain()
    await fed.sync("WCA hub", "Nigeria", "Ghana", "Benin")


async def test_edit_and_retract_reach_the_same_audience(fed):
    ng, gh, bj = build(fed)
    await fed.start()
    async with aiohttp.ClientSession() as s:
        rid, shared = await share_new(ng, s, "seizure", make_seizure(1), "region:WCA")
        await settle(fed)
        status, v1 = await api(gh, s, "GET", f"/api/v1/records/{rid}")
        assert status == 200 and v1["version"] == 1

        # The origin edits: the whole new record, sent as version 2 to region:WCA again.
        new = {**v1["record"], "quantity": {"amount": "1500", "unit": "pieces"}}  # still says version 1
        status, edited = await api(ng, s, "PATCH", f"/api/v1/records/{rid}", new)
        assert status == 200, edited
        assert edited["version"] == 2 and edited["audience"] == "region:WCA"
        assert set(edited["recipients"]) == set(shared["recipients"])
        await settle(fed)
        for member in (gh, bj, ng):
            status, now = await api(member, s, "GET", f"/api/v1/records/{rid}")
            assert now["version"] == 2 and now["record"]["quantity"]["amount"] == "1500"
            assert [v["version"] for v in now["versions"]] == [1, 2]
            assert now["origin"] == ng.node_id and now["retracted"] is False
        status, old = await api(gh, s, "GET", f"/api/v1/records/{rid}?version=1")
        assert status == 200 and old["record"]["quantity"]["amount"] == "1001" and old["version"] == 1

        # A stale edit (made to version 1 again), a changed id, nothing changed, or an invalid record: refused.
        status, body = await api(ng, s, "PATCH", f"/api/v1/records/{rid}", {**new, "narrative": "x"})
        assert status == 400 and body["field"] == "version" and "at version 2" in body["detail"], body
        status, body = await api(ng, s, "PATCH", f"/api/v1/records/{rid}", {**now["record"], "id": shared["bundle"]})
        assert status == 400 and body["field"] == "id"
        status, body = await api(ng, s, "PATCH", f"/api/v1/records/{rid}", {"record": now["record"]})
        assert status == 400 and "nothing changed" in body["detail"]
        status, body = await api(ng, s, "PATCH", f"/api/v1/records/{rid}",
                                 {**now["record"], "route": {"departure": "XX", "destination": "NG", "transit": []}})
        assert status == 400 and body["field"] == "route.departure"

        # Only the origin may edit or retract; others are told so.
        status, body = await api(gh, s, "PATCH", f"/api/v1/records/{rid}", now["record"])
        assert status == 403 and body["error"] == "not-origin" and ng.node_id in body["detail"], body
        status, body = await api(gh, s, "POST", f"/api/v1/records/{rid}/retract", {"reason": "mine now"})
        assert status == 403
        status, body = await api(ng, s, "PATCH", "/api/v1/records/00000000-0000-4000-8000-000000000000", new)
        assert status == 404

        # The origin retracts: a retract record (new id, version 1, ref) to the same audience.
        status, body = await api(ng, s, "POST", f"/api/v1/records/{rid}/retract", {"reason": ""})
        assert status == 400 and body["field"] == "reason"
        status, gone = await api(ng, s, "POST", f"/api/v1/records/{rid}/retract",
                                 {"reason": "duplicate of an earlier report"})
        assert status == 201, gone
        assert gone["ref"] == rid and gone["id"] != rid and gone["record"]["version"] == 1
        assert gone["audience"] == "region:WCA"
        await settle(fed)
        for member in (gh, bj):
            status, now = await api(member, s, "GET", f"/api/v1/records/{rid}")
            assert now["retracted"] is True and now["version"] == 2
            assert now["retraction"]["reason"] == "duplicate of an earlier report"
            assert now["retraction"]["id"] == gone["id"]
        status, body = await api(ng, s, "PATCH", f"/api/v1/records/{rid}", {**new, "version": 2})
        assert status == 409 and "retracted" in body["detail"]
        status, body = await api(ng, s, "POST", f"/api/v1/records/{rid}/share", {"audience": "region:WCA"})
        assert status == 409 and "retracted" in body["detail"]
        status, body = await api(ng, s, "POST", f"/api/v1/records/{rid}/retract", {"reason": "again"})
        assert status == 409
    assert shared["bundle"] in fed.ids("Benin")
    actions = [r[0] for r in db_rows(ng, "SELECT action FROM audit WHERE target = ? ORDER BY seq", rid)]
    assert actions.count("edit") == 1 and actions.count("retract") == 1 and "share" in actions


def forge(sender, recipients, kind, record):
    """A bundle ``sender`` really signs, carrying ``record`` (someone else's id) to ``recipients``."""
    keys = {m.node_id: enc_key_of(m) for m in [sender, *recipients]}
    now = int(time.time() * 1000)
    audience = Audience("nodes", tuple(sorted(m.node_id for m in recipients)))
    return seal_bundle(identity=identity_of(sender), kind=kind, record=record, audience=audience,
                       recipient_keys=keys, created=now, expires=now + 86_400_000, urgent=False, rng=os.urandom)


async def test_versions_and_retractions_from_another_origin_are_refused(fed):
    ng, gh, bj = build(fed)
    await fed.start()
    async with aiohttp.ClientSession() as s:
        rid, _ = await share_new(ng, s, "seizure", make_seizure(2), "region:WCA")
        await settle(fed)
        status, held = await api(bj, s, "GET", f"/api/v1/records/{rid}")
        assert status == 200
        # Ghana signs a "version 2" of Nigeria's record, and a retraction of it, and pushes both to Benin.
        fake = forge(gh, [ng, bj], "seizure", {**held["record"], "version": 2, "narrative": "rewritten by Ghana"})
        retraction = forge(gh, [ng, bj], "retract", {"id": "6f1c2b7e-3d4a-4e8f-9a0b-1c2d3e4f5a6b", "version": 1,
                                                      "ref": rid, "reason": "not yours to keep"})
        status, answer = await push_as(s, gh, bj, [fake, retraction])
        assert status == 200 and sorted(answer["accepted"]) == sorted([fake.id, retraction.id]), answer
        status, after = await api(bj, s, "GET", f"/api/v1/records/{rid}")
        assert after["version"] == 1 and after["origin"] == ng.node_id and after["retracted"] is False
        assert after["record"]["narrative"] == "seizure number 2"
        notes = dict(db_rows(bj, "SELECT id, state || ': ' || note FROM bundles WHERE id IN (?, ?)", fake.id, retraction.id))
        assert notes[fake.id].startswith("undecryptable: record: ") and f"belongs to {ng.node_id}" in notes[fake.id]
        assert "someone other than its origin" in notes[retraction.id]
        status, _ = await api(bj, s, "GET", "/api/v1/records/6f1c2b7e-3d4a-4e8f-9a0b-1c2d3e4f5a6b")
        assert status == 404  # the refused retraction is never shown


async def test_a_retraction_that_arrives_first_still_applies(fed):
    ng, _gh, bj = build(fed)
    await fed.start("Nigeria")  # Benin is stopped: we hand it the two bundles in the wrong order ourselves
    async with aiohttp.ClientSession() as s:
        rid, shared = await share_new(ng, s, "seizure", make_seizure(3), "region:WCA")
        status, gone = await api(ng, s, "POST", f"/api/v1/records/{rid}/retract", {"reason": "wrong office"})
        assert status == 201
        await fed.start("Benin")
        raw = dict(db_rows(ng, "SELECT id, raw FROM bundles"))
        for bid in (gone["bundle"], shared["bundle"]):
            status, answer = await push_as(s, ng, bj, [json.loads(raw[bid])])
            assert answer["accepted"] == [bid], answer
        status, held = await api(bj, s, "GET", f"/api/v1/records/{rid}")
        assert held["retracted"] is True and held["retraction"]["reason"] == "wrong office"


async def test_alert_inbox_overdue_acknowledged_and_feedback_thread(fed):
    ng, gh, bj = build(fed)
    await fed.start()
    async with aiohttp.ClientSession() as s:
        late, _ = await share_new(ng, s, "alert", {**ALERT, "respond_by": "2020-01-01", "title": "old"},
                                  f"nodes:{gh.node_id}")
        open_, _ = await share_new(ng, s, "alert", {**ALERT, "title": "new"}, f"nodes:{gh.node_id},{bj.node_id}")
        dropped, _ = await share_new(ng, s, "alert", {**ALERT, "title": "dropped"}, f"nodes:{gh.node_id}")
        await settle(fed)
        status, box = await api(gh, s, "GET", "/api/v1/inbox")
        assert status == 200
        state = {a["record"]["title"]: (a["overdue"], a["acknowledged"]) for a in box["alerts"]}
        assert state == {"old": (True, False), "new": (False, False), "dropped": (False, False)}

        status, fb = await api(gh, s, "POST", f"/api/v1/alerts/{late}/feedback", {"outcome": "acknowledged"})
        assert status == 201, fb
        status, _fb2 = await api(gh, s, "POST", f"/api/v1/alerts/{late}/feedback",
                                {"outcome": "examined-seized", "note": "3,200 packs held"})
        assert status == 201
        status, _fb3 = await api(bj, s, "POST", f"/api/v1/alerts/{open_}/feedback", {"outcome": "not-arrived"})
        assert status == 201
        status, _ = await api(ng, s, "POST", f"/api/v1/records/{dropped}/retract", {"reason": "consignment found"})
        assert status == 201
        await settle(fed)
        await settle(fed)

        status, box = await api(gh, s, "GET", "/api/v1/inbox")
        by_title = {a["record"]["title"]: a for a in box["alerts"]}
        assert set(by_title) == {"old", "new"}  # the retracted alert left the inbox
        assert by_title["old"]["acknowledged"] and not by_title["old"]["overdue"]
        assert by_title["old"]["our_outcomes"] == ["acknowledged", "examined-seized"]
        assert not by_title["new"]["acknowledged"] and by_title["new"]["feedback_count"] == 0  # Benin's went to NG only

        # The origin sees the whole thread under each alert.
        status, thread = await api(ng, s, "GET", f"/api/v1/records/{late}")
        assert [(f["origin"], f["record"]["outcome"]) for f in thread["feedback"]] == [
            (gh.node_id, "acknowledged"), (gh.node_id, "examined-seized")]
        status, thread = await api(ng, s, "GET", f"/api/v1/records/{open_}")
        assert [f["record"]["outcome"] for f in thread["feedback"]] == ["not-arrived"]


async def test_cli_edit_and_retract(fed, capsys, tmp_path):
    ng, gh, _bj = build(fed)
    await fed.start()
    async with aiohttp.ClientSession() as s:
        rid, _ = await share_new(ng, s, "seizure", make_seizure(4), f"nodes:{gh.node_id}")
        status, held = await api(ng, s, "GET", f"/api/v1/records/{rid}")
        assert status == 200
    path = tmp_path / "v2.json"
    path.write_text(json.dumps({**held["record"], "tlp": "RED"}))

    async def run(*argv):
        capsys.readouterr()
        code = await asyncio.to_thread(cli.main, list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, err = await run("edit", rid, "--file", str(path), "--home", str(ng.home))
    assert code == 0, err
    assert f"record {rid} is now version 2" in out and f"nodes:{gh.node_id}" in out
    code, out, err = await run("edit", rid, "--file", str(path), "--home", str(ng.home))
    assert code == 1 and "version" in err and "at version 2" in err
    code, out, err = await run("retract", rid, "--reason", "entered twice", "--home", str(ng.home))
    assert code == 0 and f"record {rid} retracted" in out, err
    code, out, err = await run("retract", rid, "--reason", "again", "--home", str(ng.home))
    assert code == 1 and "HTTP 409" in err and "retracted" in err
    await settle(fed)
    async with aiohttp.ClientSession() as s:
        _status, seen = await api(gh, s, "GET", f"/api/v1/records/{rid}")
    assert seen["version"] == 2 and seen["record"]["tlp"] == "RED" and seen["retracted"] is True
