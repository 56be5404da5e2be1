"""Random audiences over a few random topologies: every node holds, and reads, exactly what it should.

Two hubs (WCA, AP) peer with each other; every national peers with its own hub only. Records are made
and shared through the officer API to random audiences; after a few sync rounds each national holds
exactly the bundles it is a recipient of, each hub holds them all, and everyone's record list is
exactly the records of the bundles addressed to it.
"""

from __future__ import annotations

import random

import aiohttp
import pytest

from protocol.canonical import canonical
from tests.federation.harness import (
    api,
    db_rows,
    identity_of,
    make_seizure,
    raw_call,
    rejection_counts,
    signed_headers,
)

NATIONALS = [("Nigeria", "NG"), ("Ghana", "GH"), ("Senegal", "SN"), ("Togo", "TG"), ("China", "CN"),
             ("Japan", "JP"), ("Viet Nam", "VN"), ("Morocco", "MA"), ("Australia", "AU")]
BUNDLES_PER_TOPOLOGY = 6


def build(fed, rng: random.Random) -> None:
    fed.add("WCA hub", "CI", "hub", ["WCA"])
    fed.add("AP hub", "KR", "hub", ["AP"])
    names = rng.sample(NATIONALS, rng.randint(4, 5))
    for i, (name, country) in enumerate(names):
        if i == 0:
            regions = ["WCA"]
        elif i == 1:
            regions = ["AP"]
        else:
            regions = rng.choice([["WCA"], ["AP"], ["WCA"], ["AP"], ["AP", "WCA"]])
        fed.add(name, country, "national", regions)
    fed.wire()
    fed.peer("WCA hub", "AP hub")
    for m in list(fed.members.values()):
        if m.role == "national":
            # The harness endorses a national by the first hub serving one of its regions; it peers there.
            fed.peer(m.name, "WCA hub" if "WCA" in m.regions else "AP hub")


def random_audience(rng: random.Random, origin, members) -> tuple[str, set[str]]:
    """An officer's audience spec and the node ids it must resolve to (origin included)."""
    choice = rng.choice(["nodes", "nodes", "region:WCA", "region:AP", "federation"])
    everyone = {m.node_id for m in members}
    if choice == "nodes":
        others = [m for m in members if m is not origin]
        picked = rng.sample(others, rng.randint(1, min(3, len(others))))
        return "nodes:" + ",".join(m.node_id for m in picked), {origin.node_id, *(m.node_id for m in picked)}
    if choice == "federation":
        return "federation", everyone
    region = choice.removeprefix("region:")
    return choice, {origin.node_id, *(m.node_id for m in members if region in m.regions)}


async def signed_json(session, sender, target, method, path, query="", body=b""):
    headers = signed_headers(identity_of(sender), target, method, path, query, body)
    return await raw_call(session, target, method, path, query=query, body=body, headers=headers)


@pytest.mark.parametrize("seed", [11, 22, 33])
async def test_random_audiences(fed, seed):
    rng = random.Random(seed)
    build(fed, rng)
    await fed.start()
    members = list(fed.members.values())
    by_id = {m.node_id: m for m in members}
    hubs = [m for m in members if m.role == "hub"]
    nationals = [m for m in members if m.role == "national"]
    shared: dict[str, tuple[str, set[str]]] = {}  # bundle id -> (record id, recipients)

    async with aiohttp.ClientSession() as s:
        for i in range(BUNDLES_PER_TOPOLOGY):
            # Mostly nationals share, sometimes a hub's own officers do.
            origin = rng.choice(nationals) if rng.random() < 0.85 else rng.choice(hubs)
            spec, expected = random_audience(rng, origin, members)
            urgent = rng.random() < 0.3
            status, made = await api(origin, s, "POST", "/api/v1/records",
                                     {"kind": "seizure", "record": make_seizure(seed * 100 + i)})
            assert status == 201, made
            status, out = await api(origin, s, "POST", f"/api/v1/records/{made['id']}/share",
                                    {"audience": spec, "urgent": urgent})
            assert status == 201, out
            recipients = set(out["recipients"])
            assert recipients == expected, (spec, sorted(by_id[n].name for n in recipients))
            assert out["recipients"] == sorted(out["recipients"])
            shared[out["bundle"]] = (made["id"], recipients)
        await fed.drain()
        await fed.sync(rounds=3)

        everything = set(shared)
        expected_ids = {m.name: {b for b, (_, r) in shared.items() if m.node_id in r} for m in members}
        for m in nationals:
            assert fed.ids(m.name) == expected_ids[m.name], m.name
        for m in hubs:
            assert fed.ids(m.name) == everything, m.name

        for m in members:
            # Each node can open exactly the bundles addressed to it, and lists exactly their records.
            states = dict(db_rows(m, "SELECT id, state FROM bundles"))
            for b, state in states.items():
                assert state == ("readable" if b in expected_ids[m.name] else "relay"), (m.name, b, state)
            status, listed = await api(m, s, "GET", "/api/v1/records?limit=500")
            assert status == 200
            want = {shared[b][0]: b for b in expected_ids[m.name]}
            assert {r["id"]: r["bundle_id"] for r in listed["records"]} == want, m.name
            assert rejection_counts(m) == {}, m.name  # nobody was ever offered what it may not hold

        # The serving rule, asked directly: a national's hub feeds and fetches to it only its own bundles.
        ids = sorted(everything)
        for m in nationals:
            hub = fed.members["WCA hub" if "WCA" in m.regions else "AP hub"]
            status, page = await signed_json(s, m, hub, "GET", "/federation/v1/feed", "after=0&limit=1000")
            assert status == 200
            assert {item["id"] for item in page["items"]} == expected_ids[m.name], m.name
            status, got = await signed_json(s, m, hub, "POST", "/federation/v1/fetch",
                                            body=canonical({"ids": ids}))
            assert status == 200
            assert {bundle_id(b) for b in got["bundles"]} == expected_ids[m.name], m.name
            for other in hubs:  # the other hub sees every header
                if other is hub:
                    continue
                status, page = await signed_json(s, other, hub, "GET", "/federation/v1/feed", "after=0&limit=1000")
                assert {item["id"] for item in page["items"]} == everything

        # Stable: more rounds move nothing.
        before = {m.name: fed.ids(m.name) for m in members}
        await fed.sync(rounds=1)
        assert {m.name: fed.ids(m.name) for m in members} == before
        for m in members:
            n, distinct = db_rows(m, "SELECT count(*), count(DISTINCT id) FROM bundles")[0]
            assert n == distinct


def bundle_id(obj) -> str:
    from protocol.bundle import parse_bundle

    return parse_bundle(obj).id
