"""Crafted requests straight at a node's APIs: every refusal has its status and reason, and stores nothing."""

from __future__ import annotations

import base64
import copy
import json
import os
import time

import aiohttp

from crypto.keys import EncryptionKey, IdentityKey
from node import admin
from protocol.canonical import b64u_decode, b64u_encode, canonical
from tests.federation.harness import (
    api,
    db_rows,
    identity_of,
    make_seizure,
    push_as,
    raw_call,
    rejection_counts,
    seal_from,
    set_setting,
    signed_headers,
)

DAY_MS = 24 * 3600 * 1000
PUSH = "/federation/v1/push"
FEED = "/federation/v1/feed"


def build(fed, *extra):
    fed.add("WCA hub", "CI", "hub", ["WCA"])
    fed.add("Nigeria", "NG", "national", ["WCA"])
    fed.add("Ghana", "GH", "national", ["WCA"])
    for name in extra:
        fed.add(name, name[:2].upper(), "national", ["WCA"])
    fed.wire()
    fed.peer("Nigeria", "WCA hub")
    fed.peer("Ghana", "WCA hub")
    return fed.members["WCA hub"], fed.members["Nigeria"], fed.members["Ghana"]


def flip(b64u: str, at: int = 10) -> str:
    raw = bytearray(b64u_decode(b64u))
    raw[at] ^= 0x01
    return b64u_encode(bytes(raw))


def records_count(member) -> int:
    return db_rows(member, "SELECT count(*) FROM records")[0][0]


def assert_error(status, body, want_status, detail=None):
    assert status == want_status, body
    assert isinstance(body, dict) and set(body) >= {"error", "detail"}, body
    assert isinstance(body["error"], str) and isinstance(body["detail"], str)
    if detail is not None:
        assert body["detail"] == detail, body


async def test_bundle_level_rejections(fed):
    hub, ng, gh = build(fed)
    await fed.start()
    now = int(time.time() * 1000)

    good = seal_from(ng, [gh], make_seizure(1))

    forged = copy.deepcopy(good.obj)
    forged["sig"] = flip(forged["sig"])

    tampered = copy.deepcopy(seal_from(ng, [gh], make_seizure(2)).obj)
    tampered["ct"] = flip(tampered["ct"], 5)

    expired = seal_from(ng, [gh], make_seizure(3), created=now - 2 * DAY_MS, expires=now - DAY_MS)

    stranger = IdentityKey(os.urandom(32))
    unknown = seal_from(ng, [gh], make_seizure(4), identity=stranger,
                        extra_keys={stranger.node_id: EncryptionKey(os.urandom(32)).public})

    not_for_ghana = seal_from(ng, [hub], make_seizure(5))

    huge = copy.deepcopy(seal_from(ng, [gh], make_seizure(6)).obj)
    huge["ct"] = b64u_encode(os.urandom(300_000))

    from protocol.bundle import parse_bundle

    def bid(obj):
        return parse_bundle(obj, max_bytes=10**7).id

    cases = [
        (forged, "signature"),
        (tampered, "signature"),
        (expired.obj, "expired"),
        (unknown.obj, "unknown-origin"),
        (not_for_ghana.obj, "not-recipient"),
    ]
    before_ids, before_records = fed.ids("Ghana"), records_count(gh)
    async with aiohttp.ClientSession() as s:
        # One at a time: each answer is 200 with the bundle under "rejected" and its reason.
        for obj, reason in cases:
            status, answer = await push_as(s, ng, gh, [obj])
            assert status == 200, answer
            assert answer == {"accepted": [], "duplicate": [], "rejected": [{"id": bid(obj), "reason": reason}]}
        # Too large for max_bundle_bytes: refused before it is even hashed (id "") or with 413.
        status, answer = await push_as(s, ng, gh, [huge])
        if status == 200:
            assert answer["accepted"] == [] and answer["duplicate"] == []
            assert [r["reason"] for r in answer["rejected"]] == ["too-large"]
            assert answer["rejected"][0]["id"] in ("", bid(huge))
        else:
            assert_error(status, answer, 413)
        assert fed.ids("Ghana") == before_ids
        assert records_count(gh) == before_records
        counts = rejection_counts(gh)
        assert counts[(ng.node_id, "signature")] == 2
        for reason in ("expired", "unknown-origin", "not-recipient"):
            assert counts[(ng.node_id, reason)] == 1
        if status == 200:
            assert counts[(ng.node_id, "too-large")] == 1

        # All of them in one batch with a good bundle: only the good one is stored.
        status, answer = await push_as(s, ng, gh, [good, *(obj for obj, _ in cases)])
        assert status == 200, answer
        assert answer["accepted"] == [good.id] and answer["duplicate"] == []
        assert sorted((r["id"], r["reason"]) for r in answer["rejected"]) == sorted((bid(o), r) for o, r in cases)
        assert fed.ids("Ghana") == before_ids | {good.id}
        assert records_count(gh) == before_records + 1
        assert rejection_counts(gh)[(ng.node_id, "signature")] == 4

        # A hub relays what it cannot read, but applies every other check the same way.
        status, answer = await push_as(s, gh, hub, [not_for_ghana, forged, expired])
        assert status == 200, answer
        assert answer["accepted"] == [not_for_ghana.id]
        assert sorted(r["reason"] for r in answer["rejected"]) == ["expired", "signature"]
        assert not_for_ghana.id in fed.ids("WCA hub") and good.id not in fed.ids("WCA hub")
        status, answer = await push_as(s, ng, hub, [unknown])
        assert [r["reason"] for r in answer["rejected"]] == ["unknown-origin"]
        assert unknown.id not in fed.ids("WCA hub")
        hub_counts = rejection_counts(hub)
        assert hub_counts[(gh.node_id, "signature")] == 1 and hub_counts[(gh.node_id, "expired")] == 1
        assert hub_counts[(ng.node_id, "unknown-origin")] == 1

        # None of the refused bundles ever reaches anyone by pulling either.
        await fed.sync(rounds=2)
        refused = {bid(o) for o, _ in cases} - {not_for_ghana.id, good.id}  # forged has good's id
        refused |= {expired.id, unknown.id}
        for name in fed.members:
            assert not refused & fed.ids(name), name


async def test_revoked_origin(fed):
    hub, ng, gh = build(fed, "Togo")
    tg = fed.members["Togo"]
    # The endorsing hub revokes Togo; Ghana learns of it from the revocation file.
    revocation = admin.revoke(str(hub.home), tg.node_id)
    assert revocation["revoked"] is True
    path = fed.root / "togo.revoked.json"
    path.write_text(json.dumps(revocation))
    admin.directory_add(str(gh.home), str(path))
    issued = revocation["issued"]
    await fed.start()

    after = seal_from(tg, [gh], make_seizure(1), created=issued + 1000)
    before = seal_from(tg, [gh], make_seizure(2), created=issued - 60_000)
    async with aiohttp.ClientSession() as s:
        for target, sender in ((hub, ng), (gh, ng)):
            status, answer = await push_as(s, sender, target, [after, before])
            assert status == 200, answer
            assert answer["rejected"] == [{"id": after.id, "reason": "revoked-origin"}]
            assert answer["accepted"] == [before.id]  # sent before the revocation: still good
            assert after.id not in fed.ids(target.name)
            assert rejection_counts(target)[(sender.node_id, "revoked-origin")] == 1
        status, rec = await api(gh, s, "GET", "/api/v1/records")
        assert [r["bundle_id"] for r in rec["records"]] == [before.id]
        # The revoked node itself can no longer sign requests that the hub accepts.
        status, answer = await push_as(s, tg, hub, [after])
        assert_error(status, answer, 401, "unknown-key")
        assert after.id not in fed.ids("WCA hub")


async def test_request_level_refusals(fed):
    hub, ng, gh = build(fed)
    await fed.start()
    ident = identity_of(ng)
    b1, b2, b3 = (seal_from(ng, [gh], make_seizure(i)) for i in range(3))

    def body_of(*bundles):
        return canonical({"bundles": [b.obj for b in bundles]})

    async with aiohttp.ClientSession() as s:
        # Unsigned descriptor: always served.
        status, d = await raw_call(s, gh, "GET", "/federation/v1/descriptor")
        assert status == 200 and d["node"] == gh.node_id and d["type"] == "cenmesh.descriptor"

        # Missing signature on /feed (and on push): 401, nothing processed.
        status, answer = await raw_call(s, gh, "GET", FEED, query="after=0")
        assert_error(status, answer, 401, "missing")
        status, answer = await raw_call(s, gh, "POST", PUSH, body=body_of(b1))
        assert_error(status, answer, 401, "missing")

        # Bad signature: the signature bytes altered.
        body = body_of(b1)
        headers = signed_headers(ident, gh, "POST", PUSH, body=body)
        label, value = headers["Signature"].split("=", 1)
        sig = bytearray(base64.b64decode(value.strip(":")))
        sig[0] ^= 0x01
        headers["Signature"] = f"{label}=:{base64.b64encode(bytes(sig)).decode()}:"
        status, answer = await raw_call(s, gh, "POST", PUSH, body=body, headers=headers)
        assert_error(status, answer, 401, "signature")
        assert answer["error"] == "bad-signature"

        # The body changed after signing: the digest no longer matches.
        headers = signed_headers(ident, gh, "POST", PUSH, body=body_of(b1))
        status, answer = await raw_call(s, gh, "POST", PUSH, body=body_of(b2), headers=headers)
        assert_error(status, answer, 401, "digest")

        # Signed for another node (authority differs): not valid here.
        headers = signed_headers(ident, hub, "POST", PUSH, body=body)
        status, answer = await raw_call(s, gh, "POST", PUSH, body=body, headers=headers)
        assert_error(status, answer, 401, "signature")

        # Unknown key id, and the node's own key id.
        headers = signed_headers(IdentityKey(os.urandom(32)), gh, "POST", PUSH, body=body)
        status, answer = await raw_call(s, gh, "POST", PUSH, body=body, headers=headers)
        assert_error(status, answer, 401, "unknown-key")
        headers = signed_headers(identity_of(gh), gh, "GET", FEED, query="after=0")
        status, answer = await raw_call(s, gh, "GET", FEED, query="after=0", headers=headers)
        assert_error(status, answer, 401, "unknown-key")

        # Stale: created 1000 s ago; and from the future.
        now_s = int(time.time())
        headers = signed_headers(ident, gh, "POST", PUSH, body=body, now_s=now_s - 1000)
        status, answer = await raw_call(s, gh, "POST", PUSH, body=body, headers=headers)
        assert_error(status, answer, 401, "stale")
        headers = signed_headers(ident, gh, "GET", FEED, query="after=0", now_s=now_s + 1000)
        status, answer = await raw_call(s, gh, "GET", FEED, query="after=0", headers=headers)
        assert_error(status, answer, 401, "stale")

        assert b1.id not in fed.ids("Ghana")

        # Replay: the exact same signed request twice; the second is refused and changes nothing.
        body = body_of(b1, b2)
        headers = signed_headers(ident, gh, "POST", PUSH, body=body)
        status, answer = await raw_call(s, gh, "POST", PUSH, body=body, headers=headers)
        assert status == 200 and sorted(answer["accepted"]) == sorted([b1.id, b2.id])
        held = fed.ids("Ghana")
        status, answer = await raw_call(s, gh, "POST", PUSH, body=body, headers=headers)
        assert_error(status, answer, 401, "replayed")
        headers = signed_headers(ident, gh, "GET", FEED, query="after=0")
        status, first = await raw_call(s, gh, "GET", FEED, query="after=0", headers=headers)
        assert status == 200 and {i["id"] for i in first["items"]} == {b1.id, b2.id}
        status, answer = await raw_call(s, gh, "GET", FEED, query="after=0", headers=headers)
        assert_error(status, answer, 401, "replayed")
        assert fed.ids("Ghana") == held
        assert db_rows(gh, "SELECT count(*), count(DISTINCT id) FROM bundles")[0] == (len(held), len(held))

        # A well-signed request with a bad body or route: 400 / 404 JSON errors, nothing stored.
        for bad in (b"not json", b'{"bundles": []}', b'{"bundles": [1]}', canonical({"ids": [b3.id]})):
            headers = signed_headers(ident, gh, "POST", PUSH, body=bad)
            status, answer = await raw_call(s, gh, "POST", PUSH, body=bad, headers=headers)
            assert_error(status, answer, 400)
        headers = signed_headers(ident, gh, "GET", FEED, query="after=x")
        status, answer = await raw_call(s, gh, "GET", FEED, query="after=x", headers=headers)
        assert_error(status, answer, 400)
        headers = signed_headers(ident, gh, "GET", "/federation/v1/nothing")
        status, answer = await raw_call(s, gh, "GET", "/federation/v1/nothing", headers=headers)
        assert_error(status, answer, 404)
        assert fed.ids("Ghana") == held
        assert rejection_counts(gh) == {}


async def test_size_limits(fed):
    hub, ng, gh = build(fed)
    set_setting(gh, "server", "max_body_bytes", 4096)
    set_setting(hub, "protocol", "max_bundle_bytes", 4096)
    await fed.start()
    assert gh.node.settings.server.max_body_bytes == 4096
    assert hub.node.settings.protocol.max_bundle_bytes == 4096
    small = [seal_from(ng, [gh], make_seizure(i)) for i in range(4)]
    async with aiohttp.ClientSession() as s:
        # One small bundle fits in 4096 bytes of body.
        status, answer = await push_as(s, ng, gh, small[:1])
        assert status == 200 and answer["accepted"] == [small[0].id], answer
        # Four do not: 413 as JSON, nothing of the request stored.
        status, answer = await push_as(s, ng, gh, small[1:])
        assert_error(status, answer, 413)
        assert fed.ids("Ghana") == {small[0].id}
        # A legal record (narrative of 5000 characters) makes a bundle over this hub's 4096-byte limit.
        long = seal_from(ng, [gh], make_seizure(9, narrative="x" * 5000))
        assert long.size > 4096
        status, answer = await push_as(s, ng, hub, [long, small[1]])
        assert status == 200, answer
        assert answer["rejected"] == [{"id": long.id, "reason": "too-large"}]
        assert answer["accepted"] == [small[1].id]
        assert long.id not in fed.ids("WCA hub")
        assert rejection_counts(hub)[(ng.node_id, "too-large")] == 1


async def test_officer_api_refusals(fed):
    _, ng, gh = build(fed)
    await fed.start()
    async with aiohttp.ClientSession() as s:
        for headers in ({}, {"Authorization": "Bearer cm_not-a-token"}, {"Authorization": ng.token}):
            for method, path in (("GET", "/api/v1/records"), ("POST", "/api/v1/records"), ("GET", "/api/v1/status")):
                async with s.request(method, ng.url + path, json={"kind": "seizure", "record": make_seizure()},
                                     headers=headers) as resp:
                    body = await resp.json()
                    assert resp.status == 401, (headers, path, body)
                    assert set(body) >= {"error", "detail"}
        # Ghana's token is not Nigeria's.
        async with s.get(ng.url + "/api/v1/records", headers={"Authorization": f"Bearer {gh.token}"}) as resp:
            assert resp.status == 401
        assert db_rows(ng, "SELECT count(*) FROM drafts")[0][0] == 0

        bad = make_seizure(route={"departure": "XX", "destination": "NG", "transit": []})
        status, body = await api(ng, s, "POST", "/api/v1/records", {"kind": "seizure", "record": bad})
        assert status == 400, body
        assert body["error"] == "invalid-record" and body["field"] == "route.departure"
        assert "route.departure" in body["detail"]
        status, body = await api(ng, s, "POST", "/api/v1/records", {"kind": "gossip", "record": make_seizure()})
        assert status == 400 and body["field"] == "kind"
        status, body = await api(ng, s, "POST", "/api/v1/records",
                                 {"kind": "seizure", "record": make_seizure(quantity={"amount": "-1", "unit": "kg"})})
        assert status == 400 and body["field"].startswith("quantity"), body
        assert db_rows(ng, "SELECT count(*) FROM drafts")[0][0] == 0

        status, made = await api(ng, s, "POST", "/api/v1/records", {"kind": "seizure", "record": make_seizure()})
        assert status == 201
        status, body = await api(ng, s, "POST", f"/api/v1/records/{made['id']}/share", {"audience": "everyone"})
        assert status == 400 and body["error"] == "bad-audience", body
        stranger = IdentityKey(os.urandom(32)).node_id
        status, body = await api(ng, s, "POST", f"/api/v1/records/{made['id']}/share",
                                 {"audience": f"nodes:{stranger}"})
        assert status == 409 and body["error"] == "cannot-share", body
        status, body = await api(ng, s, "POST", "/api/v1/records/00000000-0000-4000-8000-000000000000/share",
                                 {"audience": "federation"})
        assert status == 409, body
        assert fed.ids("Nigeria") == set()


async def test_gzip_body_with_digest_over_the_bytes_sent(fed):
    import gzip

    _, ng, gh = build(fed)
    await fed.start()
    b = seal_from(ng, [gh], make_seizure(1))
    sent = gzip.compress(canonical({"bundles": [b.obj]}))
    headers = signed_headers(identity_of(ng), gh, "POST", PUSH, body=sent)
    async with aiohttp.ClientSession() as s:
        status, answer = await raw_call(s, gh, "POST", PUSH, body=sent, headers={**headers, "Content-Encoding": "gzip"})
    assert status == 200 and answer["accepted"] == [b.id], answer
