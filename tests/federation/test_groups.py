"""Closed operation groups across a real federation: the roster reaches the members, only members
receive what is shared to the group, and nothing new is sealed to it after its end date."""

from __future__ import annotations

import asyncio
import datetime
import json

import aiohttp

from node import cli
from tests.federation.harness import api, make_seizure

GROUP = "op:PANGEA-XVII"


def build(fed):
    fed.add("WCA hub", "CI", "hub", ["WCA"])
    for name, country in (("Nigeria", "NG"), ("Ghana", "GH"), ("Benin", "BJ"), ("Togo", "TG")):
        fed.add(name, country, "national", ["WCA"])
    fed.wire()
    for name in ("Nigeria", "Ghana", "Benin", "Togo"):
        fed.peer(name, "WCA hub")
    return [fed.members[n] for n in ("Nigeria", "Ghana", "Benin", "Togo")]


async def settle(fed, rounds=1):
    await fed.drain()
    await fed.sync("WCA hub", "Nigeria", "Ghana", "Benin", "Togo", rounds=rounds)


def in_days(n: int) -> str:
    return (datetime.datetime.now(datetime.UTC).date() + datetime.timedelta(days=n)).isoformat()


def end_of(day: str) -> int:
    d = datetime.date.fromisoformat(day)
    return int(datetime.datetime(d.year, d.month, d.day, 23, 59, 59, 999000, datetime.UTC).timestamp() * 1000)


async def test_group_roster_membership_and_end(fed):
    ng, gh, bj, tg = build(fed)
    await fed.start()
    until = in_days(10)
    async with aiohttp.ClientSession() as s:
        # Bad requests name the field.
        for body, field in (({"name": "PANGEA", "members": [gh.node_id], "not_after": until}, "name"),
                            ({"name": "op:lower", "members": [gh.node_id], "not_after": until}, "name"),
                            ({"name": GROUP, "members": [gh.node_id], "not_after": "2020-01-01"}, "not_after"),
                            ({"name": GROUP, "members": [gh.node_id], "not_after": "10/10/2030"}, "not_after"),
                            ({"name": GROUP, "members": ["n" + "a" * 24], "not_after": until}, "members"),
                            ({"name": GROUP, "members": [], "not_after": until}, "members")):
            status, answer = await api(ng, s, "POST", "/api/v1/groups", body)
            assert status == 400 and answer["field"] == field, (body, answer)

        # The owner (an admin) creates the group: members sorted, itself included, ends at the end of the day.
        status, made = await api(ng, s, "POST", "/api/v1/groups",
                                 {"name": GROUP, "members": [gh.node_id, bj.node_id], "not_after": until})
        assert status == 201, made
        assert made["members"] == sorted([ng.node_id, gh.node_id, bj.node_id])
        assert made["not_after"] == end_of(until) and made["version"] == 1
        status, known = await api(ng, s, "GET", "/api/v1/groups")
        [g] = known["groups"]
        assert (g["group"], g["owner"], g["until"], g["active"], g["member"]) == (GROUP, ng.node_id, until, True, True)
        assert g["names"][gh.node_id] == "Ghana"
        assert GROUP in ng.node.rosters

        await settle(fed)
        for member in (gh, bj):
            status, known = await api(member, s, "GET", "/api/v1/groups")
            assert [g["group"] for g in known["groups"]] == [GROUP], member.name
            assert GROUP in member.node.rosters
        status, known = await api(tg, s, "GET", "/api/v1/groups")
        assert known["groups"] == []  # the roster went to the members only
        assert made["bundle"] not in fed.ids("Togo")

        # A member shares to the group: exactly the members receive it.
        status, rec = await api(gh, s, "POST", "/api/v1/records", {"kind": "seizure", "record": make_seizure(7)})
        status, shared = await api(gh, s, "POST", f"/api/v1/records/{rec['id']}/share", {"audience": GROUP})
        assert status == 201, shared
        assert sorted(shared["recipients"]) == made["members"]
        await settle(fed, rounds=2)
        assert shared["bundle"] in fed.ids("Nigeria") and shared["bundle"] in fed.ids("Benin")
        assert shared["bundle"] not in fed.ids("Togo")
        status, seen = await api(bj, s, "GET", f"/api/v1/records/{rec['id']}")
        assert status == 200 and seen["audience"] == GROUP
        status, _ = await api(tg, s, "GET", f"/api/v1/records/{rec['id']}")
        assert status == 404

        # A non-member cannot seal to the group.
        status, other = await api(tg, s, "POST", "/api/v1/records", {"kind": "seizure", "record": make_seizure(8)})
        status, refused = await api(tg, s, "POST", f"/api/v1/records/{other['id']}/share", {"audience": GROUP})
        assert status == 409 and f"no roster for {GROUP}" in refused["detail"] and "not a member" in refused["detail"]
        # Nor may a member change the roster: only its owner.
        status, refused = await api(gh, s, "POST", "/api/v1/groups",
                                    {"name": GROUP, "members": [tg.node_id], "not_after": until})
        assert status == 403 and ng.node_id in refused["detail"]

        # After the end date nothing new is sealed to it (Ghana's clock moves past not_after).
        gh.node.clock = lambda: made["not_after"] / 1000 + 1
        status, late = await api(gh, s, "POST", f"/api/v1/records/{rec['id']}/share", {"audience": GROUP})
        assert status == 409 and late["error"] == "cannot-share"
        assert f"{GROUP} ended on {until} 23:59 UTC" in late["detail"] and "nothing new" in late["detail"], late
        status, known = await api(gh, s, "GET", "/api/v1/groups")
        assert known["groups"][0]["active"] is False

    actions = [e for e in ng.node.store.read_now(lambda c: [dict(r) for r in c.execute("SELECT * FROM audit")])
               if e["action"] == "admin" and e["target"] == GROUP]
    assert len(actions) == 1 and "3 members" in actions[0]["detail"]


async def test_changing_members_reaches_who_joins_and_who_leaves(fed):
    ng, gh, bj, tg = build(fed)
    await fed.start()
    until = in_days(30)
    async with aiohttp.ClientSession() as s:
        status, v1 = await api(ng, s, "POST", "/api/v1/groups",
                               {"name": GROUP, "members": [gh.node_id, bj.node_id], "not_after": until})
        assert status == 201
        await settle(fed)
        status, v2 = await api(ng, s, "POST", "/api/v1/groups",
                               {"name": GROUP, "members": [gh.node_id, tg.node_id], "not_after": until})
        assert status == 200 and v2["version"] == 2 and v2["id"] == v1["id"]
        await settle(fed)
        for member in (ng, gh, bj, tg):
            assert member.node.rosters[GROUP].members == tuple(sorted([ng.node_id, gh.node_id, tg.node_id])), member.name
        # Benin, dropped, knows it and can no longer seal to the group; Togo, added, can.
        status, rec = await api(bj, s, "POST", "/api/v1/records", {"kind": "seizure", "record": make_seizure(9)})
        status, refused = await api(bj, s, "POST", f"/api/v1/records/{rec['id']}/share", {"audience": GROUP})
        assert status == 409 and "not a member" in refused["detail"]
        status, rec = await api(tg, s, "POST", "/api/v1/records", {"kind": "seizure", "record": make_seizure(10)})
        status, shared = await api(tg, s, "POST", f"/api/v1/records/{rec['id']}/share", {"audience": GROUP})
        assert status == 201 and bj.node_id not in shared["recipients"]


async def test_group_commands(fed, capsys):
    ng, gh, bj, _tg = build(fed)
    await fed.start()
    until = in_days(5)

    async def run(*argv):
        capsys.readouterr()
        code = await asyncio.to_thread(cli.main, list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, err = await run("group", "create", GROUP, "--member", gh.node_id, "--member", bj.node_id,
                               "--until", until, "--home", str(ng.home))
    assert code == 0, err
    assert f"{GROUP} created: 3 members including this node, open until {until}" in out
    code, out, err = await run("groups", "--home", str(ng.home))
    assert code == 0 and GROUP in out and "open" in out and "Ghana" in out and "Benin" in out
    code, out, err = await run("groups", "--home", str(ng.home), "--json")
    assert json.loads(out)["groups"][0]["members"] == sorted([ng.node_id, gh.node_id, bj.node_id])
    code, out, err = await run("group", "create", "op:bad name", "--member", gh.node_id, "--until", until,
                               "--home", str(ng.home))
    assert code == 1 and "name:" in err
