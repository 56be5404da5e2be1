"""An urgent alert crosses two hubs and its feedback comes back; non-recipients never see it."""

from __future__ import annotations

import aiohttp

from tests.federation.harness import api

SEIZURE = {
    "category": "medicines", "date": "2020-03-24",
    "office": {"name": "Lagos Apapa Port", "locode": "NGAPP"},
    "transport_mode": "sea", "detection_method": "risk-profiling",
    "concealment": "masks inside cartons of T-shirts",
    "commodity": {"description": "surgical face masks, counterfeit CE marking", "hs_code": "630790"},
    "quantity": {"amount": "120000", "unit": "pieces"},
    "route": {"departure": "CN", "destination": "NG", "transit": ["TG"]},
    "tlp": "AMBER",
}

ALERT = {
    "title": "Counterfeit masks in container CSQU3054383", "urgency": "immediate",
    "requested_action": "examine", "respond_by": "2030-01-01",
    "consignment": {"container": "CSQU3054383", "destination_locode": "CNSHA"},
    "suspected": {"category": "medicines", "commodity": {"description": "face masks"}},
    "tlp": "AMBER",
}


def build(fed):
    fed.add("WCA hub", "CI", "hub", ["WCA"])
    fed.add("AP hub", "KR", "hub", ["AP"])
    fed.add("Nigeria", "NG", "national", ["WCA"])
    fed.add("Ghana", "GH", "national", ["WCA"])
    fed.add("China", "CN", "national", ["AP"])
    fed.wire()
    fed.peer("Nigeria", "WCA hub")
    fed.peer("Ghana", "WCA hub")
    fed.peer("China", "AP hub")
    fed.peer("WCA hub", "AP hub")


async def test_urgent_alert_crosses_hubs_and_feedback_returns(fed):
    build(fed)
    await fed.start()
    ng, gh, cn = fed.members["Nigeria"], fed.members["Ghana"], fed.members["China"]
    async with aiohttp.ClientSession() as s:
        status, made = await api(ng, s, "POST", "/api/v1/records", {"kind": "alert", "record": ALERT})
        assert status == 201, made
        status, shared = await api(ng, s, "POST", f"/api/v1/records/{made['id']}/share",
                                   {"audience": f"nodes:{cn.node_id}", "urgent": True})
        assert status == 201, shared
        await fed.drain()  # urgent: pushed at once, relayed by both hubs without any sync round
        await fed.drain()
        assert shared["bundle"] in fed.ids("China")
        assert shared["bundle"] in fed.ids("WCA hub") and shared["bundle"] in fed.ids("AP hub")
        status, box = await api(cn, s, "GET", "/api/v1/inbox")
        assert [a["id"] for a in box["alerts"]] == [made["id"]]
        status, fb = await api(cn, s, "POST", f"/api/v1/alerts/{made['id']}/feedback",
                               {"outcome": "examined-seized", "note": "40,000 masks held"})
        assert status == 201, fb
        await fed.drain()
        await fed.drain()
        status, rec = await api(ng, s, "GET", f"/api/v1/records/{made['id']}")
        assert [f["record"]["outcome"] for f in rec["feedback"]] == ["examined-seized"]
        await fed.sync(rounds=2)
        assert shared["bundle"] not in fed.ids("Ghana")
        status, gh_records = await api(gh, s, "GET", "/api/v1/records")
        assert gh_records["records"] == []


async def test_routine_seizure_to_a_region_arrives_by_pull(fed):
    build(fed)
    await fed.start()
    ng, gh = fed.members["Nigeria"], fed.members["Ghana"]
    async with aiohttp.ClientSession() as s:
        status, made = await api(ng, s, "POST", "/api/v1/records", {"kind": "seizure", "record": SEIZURE})
        assert status == 201, made
        status, shared = await api(ng, s, "POST", f"/api/v1/records/{made['id']}/share", {"audience": "region:WCA"})
        assert status == 201, shared
        await fed.drain()
        await fed.sync("WCA hub", "AP hub", "Ghana", "China")
        assert shared["bundle"] in fed.ids("Ghana")
        assert shared["bundle"] not in fed.ids("China")
        status, rec = await api(gh, s, "GET", f"/api/v1/records/{made['id']}")
        assert status == 200 and rec["record"]["commodity"]["hs_code"] == "630790"


async def test_meshed_hubs_relay_an_urgent_alert_once_each(fed):
    """Three meshed hubs: the first hub pushes to the other two; they pass it to their nationals
    only, not to each other again (no duplicate bodies between hubs)."""
    fed.add("WCA hub", "CI", "hub", ["WCA"])
    fed.add("AP hub", "KR", "hub", ["AP"])
    fed.add("WE hub", "DE", "hub", ["WE"])
    fed.add("Nigeria", "NG", "national", ["WCA"])
    fed.add("China", "CN", "national", ["AP"])
    fed.add("Belgium", "BE", "national", ["WE"])
    fed.wire()
    for national, hub in (("Nigeria", "WCA hub"), ("China", "AP hub"), ("Belgium", "WE hub")):
        fed.peer(national, hub)
    fed.peer("WCA hub", "AP hub")
    fed.peer("WCA hub", "WE hub")
    fed.peer("AP hub", "WE hub")
    await fed.start()
    hubs = {fed.members[n].node_id: n for n in ("WCA hub", "AP hub", "WE hub")}
    sent: list[tuple[str, str]] = []
    for name in hubs.values():
        client = fed.members[name].driver.client
        real_push = client.push

        async def push(url, bundles, _name=name, _real=real_push):
            sent.append((_name, url))
            return await _real(url, bundles)

        client.push = push
    ng, cn = fed.members["Nigeria"], fed.members["China"]
    async with aiohttp.ClientSession() as s:
        status, made = await api(ng, s, "POST", "/api/v1/records", {"kind": "alert", "record": ALERT})
        status, shared = await api(ng, s, "POST", f"/api/v1/records/{made['id']}/share",
                                   {"audience": f"nodes:{cn.node_id}", "urgent": True})
        assert status == 201, shared
        await fed.drain()
    assert shared["bundle"] in fed.ids("China")
    hub_urls = {fed.members[n].url for n in hubs.values()}
    between_hubs = sorted((src, url) for src, url in sent if url in hub_urls)
    assert between_hubs == sorted([("WCA hub", fed.members["AP hub"].url), ("WCA hub", fed.members["WE hub"].url)])
    assert shared["bundle"] not in fed.ids("Belgium")
