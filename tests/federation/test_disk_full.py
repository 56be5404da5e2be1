"""A full database refuses a batch whole with a clear 503, stores nothing half, and recovers."""

from __future__ import annotations

import os
import sqlite3
import time
import uuid

import aiohttp

from crypto.envelope import seal_bundle
from crypto.httpsig import sign_request
from node.keystore import KeyStore
from protocol.bundle import Audience
from protocol.canonical import b64u_encode, canonical, parse_json
from protocol.descriptor import parse_descriptor
from tests.federation.harness import Federation


def seizure(i: int) -> dict:
    return {
        "id": str(uuid.UUID(int=i + 1)), "version": 1, "category": "tobacco", "date": "2024-05-02",
        "office": {"name": "Tema Port", "locode": "GHTEM"}, "transport_mode": "sea", "detection_method": "x-ray",
        "concealment": "cigarettes behind a false wall " + "x" * 300, "commodity": {"description": f"cigarettes lot {i}"},
        "quantity": {"amount": str(1000 + i), "unit": "cartons"},
        "route": {"departure": "AE", "destination": "GH", "transit": []}, "tlp": "AMBER",
    }


async def push(session, sender, target, bundles):
    body = canonical({"bundles": bundles})
    path = "/federation/v1/push"
    authority = target.url.removeprefix("http://")
    headers = sign_request(method="POST", authority=authority, path=path, query="", body=body,
                           key=KeyStore(sender.home).identity(), now_s=int(time.time()),
                           nonce=b64u_encode(os.urandom(12)))
    headers["Content-Type"] = "application/json"
    async with session.post(target.url + path, data=body, headers=headers) as resp:
        return resp.status, parse_json(await resp.read())


def set_db_cap(member, mb: int | None) -> None:
    toml = (member.home / "node.toml").read_text()
    toml = "\n".join(line for line in toml.splitlines() if not line.startswith("max_size_mb"))
    if mb is not None:
        toml = toml.replace("[store]\n", f"[store]\nmax_size_mb = {mb}\n")
    (member.home / "node.toml").write_text(toml + "\n")


async def test_full_disk_refuses_whole_batches_and_recovers(tmp_path):
    fed = Federation(tmp_path)
    ng = fed.add("Nigeria", "NG", "national", ["WCA"])
    gh = fed.add("Ghana", "GH", "national", ["WCA"])
    fed.add("WCA hub", "CI", "hub", ["WCA"])
    fed.wire()
    set_db_cap(gh, 1)
    ident = KeyStore(ng.home).identity()
    gh_desc = parse_descriptor(KeyStore(gh.home).descriptor())
    ng_desc = parse_descriptor(KeyStore(ng.home).descriptor())
    now = int(time.time() * 1000)
    keys = {ng.node_id: ng_desc.enc_key_at(now), gh.node_id: gh_desc.enc_key_at(now)}
    bundles = [
        seal_bundle(identity=ident, kind="seizure", record=seizure(i), audience=Audience("nodes", (gh.node_id,)),
                    recipient_keys=keys, created=now, expires=now + 86_400_000, urgent=False, rng=os.urandom).obj
        for i in range(1500)
    ]
    accepted: set[str] = set()
    try:
        await fed.start("Ghana")
        async with aiohttp.ClientSession() as s:
            full_answer = None
            for start in range(0, len(bundles), 100):
                status, answer = await push(s, ng, gh, bundles[start:start + 100])
                if status == 503:
                    full_answer = answer
                    break
                assert status == 200, answer
                accepted.update(answer["accepted"])
            assert full_answer is not None, "a 1 MB database never filled up"
            assert full_answer["error"] == "store-full" and "cannot store" in full_answer["detail"]
        await fed.stop("Ghana")
        conn = sqlite3.connect(gh.home / "node.db")
        try:
            ids = {r[0] for r in conn.execute("SELECT id FROM bundles")}
            assert ids == accepted  # whole batches only: nothing of the refused batch
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("SELECT count(*) FROM records").fetchone()[0] == len(accepted)
        finally:
            conn.close()

        set_db_cap(gh, None)  # space returns
        await fed.start("Ghana")
        async with aiohttp.ClientSession() as s:
            for start in range(0, len(bundles), 250):
                status, answer = await push(s, ng, gh, bundles[start:start + 250])
                assert status == 200, answer
        assert fed.ids("Ghana") == {parse_bundle_id(b) for b in bundles}
    finally:
        await fed.stop()


def parse_bundle_id(obj) -> str:
    from protocol.bundle import parse_bundle

    return parse_bundle(obj).id
