"""The officers' search: the index kept right through versions, retractions and feedback; every filter
against a plain reference implementation; text; paging; counts; 400s; roles; export; the CLI.

Real parts only: one national node (Nigeria, with Ghana and a hub in its directory) on loopback, bundles
really sealed by Nigeria or Ghana and taken in by ``node.ingest.ingest``, the API over HTTP and the
``cenmesh`` command in-process.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import datetime
import io
import json
import os
import random
import sqlite3
import time
from typing import Any

import aiohttp
import pytest
from sqlite_utils import Database

from crypto.envelope import seal_bundle
from node import auth, cli
from node import search as search_mod
from node.ingest import ingest
from node.outbox import complete
from node.search import QueryError, SearchQuery, explain, search
from node.search_api import _cell
from node.store import search_index
from node.store.db import connect
from node.store.schema import migrations
from node.store.search_plan import date_cover, fts_match
from protocol.bundle import Audience
from tests.federation.harness import Federation, Member, enc_key_of, identity_of

DAY = 86_400_000


# --- set-up -----------------------------------------------------------------------------------

@pytest.fixture
async def net(tmp_path):
    """Nigeria running; Ghana (not running) in its directory, so Ghana's bundles are accepted."""
    fed = Federation(tmp_path)
    fed.add("WCA hub", "CI", "hub", ["WCA"])
    fed.add("Nigeria", "NG", "national", ["WCA"])
    fed.add("Ghana", "GH", "national", ["WCA"])
    fed.wire()
    await fed.start("Nigeria")
    yield fed
    await fed.stop()


class Sender:
    """Seals records as one member to Nigeria, each with its own ``created`` (one minute apart)."""

    clock = int(time.time() * 1000) - 300 * DAY

    def __init__(self, fed: Federation, name: str) -> None:
        self.fed = fed
        self.member = fed.members[name]
        self.ng = fed.members["Nigeria"]

    async def send(self, kind: str, record: dict[str, Any], *, created: int | None = None) -> dict[str, Any]:
        record = complete(record)
        if created is None:
            Sender.clock += 60_000
            created = Sender.clock
        self.created = created
        keys = {m.node_id: enc_key_of(m) for m in (self.member, self.ng)}
        others = sorted(n for n in keys if n != self.member.node_id)
        audience = Audience("nodes", tuple(others or [self.member.node_id]))
        bundle = seal_bundle(identity=identity_of(self.member), kind=kind, record=record, audience=audience,
                             recipient_keys=keys, created=created, expires=created + 390 * DAY, urgent=False,
                             rng=os.urandom)
        node = self.ng.node
        assert node is not None
        result = await ingest(node, [bundle.obj], via=None)
        assert result.accepted == [bundle.id], result.rejected
        return record

    async def send_many(self, items: list[tuple[str, dict[str, Any], int]]) -> list[dict[str, Any]]:
        """(kind, record, created) each, sealed and taken in as one batch."""
        keys = {m.node_id: enc_key_of(m) for m in (self.member, self.ng)}
        audience = Audience("nodes", tuple(sorted(n for n in keys if n != self.member.node_id)))
        records, bundles = [], []
        for kind, record, created in items:
            records.append(complete(record))
            bundles.append(seal_bundle(identity=identity_of(self.member), kind=kind, record=records[-1],
                                       audience=audience, recipient_keys=keys, created=created,
                                       expires=created + 390 * DAY, urgent=False, rng=os.urandom))
        assert self.ng.node is not None
        result = await ingest(self.ng.node, [b.obj for b in bundles], via=None)
        assert len(result.accepted) == len(bundles), result.rejected
        return records


def seizure(**over: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "category": "medicines", "date": "2020-03-24", "office": {"name": "Lagos Apapa Port", "locode": "NGAPP"},
        "transport_mode": "sea", "detection_method": "risk-profiling", "concealment": "inside cartons of T-shirts",
        "commodity": {"description": "surgical face masks", "hs_code": "630790"},
        "quantity": {"amount": "1000", "unit": "pieces"},
        "route": {"departure": "CN", "destination": "NG", "transit": []}, "tlp": "AMBER",
    }
    record.update(over)
    return record


def alert(**over: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "title": "Falsified antimalarials expected", "urgency": "priority", "requested_action": "examine",
        "respond_by": "2030-01-01", "consignment": {"container": "CSQU3054383", "destination_locode": "NGAPP"},
        "suspected": {"category": "medicines", "commodity": {"description": "artemether tablets",
                                                             "hs_code": "300490"}},
        "tlp": "AMBER",
    }
    record.update(over)
    return record


def message(**over: Any) -> dict[str, Any]:
    return {"subject": "Trend report", "body": "Rising volumes of khat through express couriers.", "tlp": "GREEN",
            **over}


def db(member: Member) -> sqlite3.Connection:
    return connect(member.home / "node.db")


def run(member: Member, q: SearchQuery, origins: tuple[str, ...] | None = None) -> search_mod.SearchResult:
    conn = db(member)
    try:
        return search(conn, q, origins)
    finally:
        conn.close()


def ids(result: search_mod.SearchResult) -> list[str]:
    return [r["id"] for r in result.results]


async def get(session: aiohttp.ClientSession, member: Member, path: str, token: str | None = None,
              **params: str) -> tuple[int, Any]:
    async with session.get(member.url + path, params=params,
                           headers={"Authorization": f"Bearer {token or member.token}"}) as resp:
        body = await resp.read()
        ctype = resp.headers.get("Content-Type", "")
        return resp.status, json.loads(body) if "json" in ctype and body else body.decode()


def index_consistent(member: Member) -> None:
    """One facets row and one FTS row per searchable record, with the same rowids; nothing else."""
    conn = db(member)
    try:
        facets = {r[0] for r in conn.execute("SELECT rowid FROM record_facets")}
        fts = {r[0] for r in conn.execute("SELECT rowid FROM records_fts")}
        held = {r[0] for r in conn.execute("SELECT id FROM records WHERE kind IN ('seizure', 'alert', 'message')")}
        indexed = {r[0] for r in conn.execute("SELECT id FROM record_facets")}
        assert facets == fts
        assert indexed == held
        for rowid, category in conn.execute("SELECT rowid, category FROM record_facets"):
            assert search_index.category_of(rowid) == category
    finally:
        conn.close()


# --- the query and its parsing ------------------------------------------------------------------

@pytest.mark.parametrize(("params", "param"), [
    ({"kind": "feedback"}, "kind"), ({"category": "guns"}, "category"), ({"hs": "6"}, "hs"),
    ({"hs": "63a7"}, "hs"), ({"hs": "12345678901"}, "hs"), ({"departure": "XX"}, "departure"),
    ({"destination": "Nigeria"}, "destination"), ({"transit": "TG,ZZ"}, "transit"), ({"route": "CN"}, "route"),
    ({"route": "CN-"}, "route"), ({"route": "CN-XX"}, "route"), ({"route": "CN-NG", "departure": "IN"}, "route"),
    ({"since": "2020-13-01"}, "since"), ({"until": "yesterday"}, "until"), ({"since": "2020-02-30"}, "since"),
    ({"since": "2021-01-01", "until": "2020-01-01"}, "until"), ({"origin": "Nigeria"}, "origin"),
    ({"tlp": "PINK"}, "tlp"), ({"transport_mode": "teleport"}, "transport_mode"),
    ({"has_feedback": "maybe"}, "has_feedback"), ({"include_retracted": "2"}, "include_retracted"),
    ({"limit": "0"}, "limit"), ({"limit": "501"}, "limit"), ({"limit": "ten"}, "limit"), ({"offset": "-1"}, "offset"),
    ({"offset": "10001"}, "offset"), ({"q": "  ...  "}, "q"), ({"q": "_ -"}, "q"), ({"q": "x" * 501}, "q"), ({"q": " ".join("w" * 17)}, "q"), ({"colour": "red"}, "colour"),
])
def test_bad_parameters_name_the_parameter(params, param):
    with pytest.raises(QueryError) as err:
        SearchQuery.from_params(params)
    assert err.value.param == param
    assert str(err.value).startswith(param + ":")


def test_parameters_are_read_and_round_trip():
    q = SearchQuery.from_params({"q": "masks", "hs": "6307", "route": "cn-tg-ng", "since": "2020-03-01",
                                 "origin": "gh", "tlp": "amber", "has_feedback": "yes", "limit": "10", "offset": "20",
                                 "kind": "Seizure", "category": "IPR"})
    assert (q.departure, q.destination, q.transit, q.origin, q.tlp) == ("CN", "NG", ("TG",), "GH", "AMBER")
    assert (q.kind, q.category, q.has_feedback, q.limit, q.offset) == ("seizure", "ipr", True, 10, 20)
    assert SearchQuery.from_params(q.to_params()) == q
    assert SearchQuery.from_params({"route": "CN-NG", "departure": "CN", "q": ""}) == SearchQuery(
        departure="CN", destination="NG")
    with pytest.raises(QueryError):
        SearchQuery(limit=1000)  # the dataclass checks itself too


def test_text_is_quoted_never_parsed():
    assert fts_match("masks") == '("masks" OR "masks"*)'
    assert fts_match('surgical "face masks" NOT') == '"surgical" AND "face masks" AND ("NOT" OR "NOT"*)'
    assert fts_match('a* OR b) AND c:d "') == '"a" AND "OR" AND "b" AND "AND" AND "c" AND "d"'
    assert fts_match('x"y') == '"x" AND "y"'
    assert fts_match("_ __init__ x") == '"init" AND "x"'  # only what the tokenizer keeps
    assert fts_match("Æthelred's café") == '"Æthelred" AND "s" AND ("café" OR "café"*)'


def test_date_cover_is_exact():
    rnd = random.Random(7)
    for _ in range(300):
        a = datetime.date(2018, 1, 1) + datetime.timedelta(days=rnd.randrange(3000))
        b = a + datetime.timedelta(days=rnd.choice([0, 1, 30, 400, rnd.randrange(2000)]))
        days: set[datetime.date] = set()
        for token in date_cover(a, b):
            kind, digits = token[0], token[1:]
            if kind == "d":
                start = end = datetime.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
            elif kind == "m":
                start = datetime.date(int(digits[:4]), int(digits[4:]), 1)
                end = (start.replace(day=28) + datetime.timedelta(days=4)).replace(day=1) - datetime.timedelta(days=1)
            else:
                start, end = datetime.date(int(digits), 1, 1), datetime.date(int(digits), 12, 31)
            span = {start + datetime.timedelta(days=i) for i in range((end - start).days + 1)}
            assert not span & days
            days |= span
        assert days == {a + datetime.timedelta(days=i) for i in range((b - a).days + 1)}
        assert len(date_cover(a, b)) <= 31 + 11 + 11 + 31 + (b.year - a.year)


# --- the index through a record's life --------------------------------------------------------

async def test_versions_retractions_and_feedback_keep_the_index_right(net):
    ng = net.members["Nigeria"]
    from_gh, from_ng = Sender(net, "Ghana"), Sender(net, "Nigeria")
    v1 = await from_gh.send("seizure", seizure(commodity={"description": "handbags with fake logos",
                                                          "hs_code": "420221"}, category="ipr"))
    assert ids(run(ng, SearchQuery(text="handbags"))) == [v1["id"]]
    # Version 2 changes the goods and the category: only version 2 is found.
    v2 = await from_gh.send("seizure", {**v1, "version": 2, "category": "drugs",
                                        "commodity": {"description": "cocaine bricks", "hs_code": "293979"}})
    assert ids(run(ng, SearchQuery(text="handbags"))) == []
    assert ids(run(ng, SearchQuery(text="cocaine"))) == [v1["id"]]
    assert ids(run(ng, SearchQuery(category="ipr"))) == []
    assert run(ng, SearchQuery(category="drugs")).results[0]["version"] == 2
    # A late copy of version 1 changes nothing.
    await from_gh.send("seizure", v1, created=Sender.clock - 30 * 60_000)
    assert ids(run(ng, SearchQuery(text="cocaine"))) == [v1["id"]]
    assert ids(run(ng, SearchQuery(hs_prefix="4202"))) == []
    index_consistent(ng)

    # Retraction: gone from searches unless asked for, and marked.
    await from_gh.send("retract", {"ref": v2["id"], "reason": "recorded twice"})
    assert ids(run(ng, SearchQuery(text="cocaine"))) == []
    found = run(ng, SearchQuery(text="cocaine", include_retracted=True))
    assert ids(found) == [v1["id"]] and found.results[0]["retracted"] is True
    # A retraction that arrives before its record still applies.
    early = complete(seizure(commodity={"description": "ivory carvings", "hs_code": "960110"},
                             category="environment"))
    await from_gh.send("retract", {"ref": early["id"], "reason": "wrong office"})
    await from_gh.send("seizure", early)
    assert ids(run(ng, SearchQuery(text="ivory"))) == []
    assert ids(run(ng, SearchQuery(text="ivory", include_retracted=True))) == [early["id"]]

    # Feedback marks the alert it answers, whichever arrives first.
    a1 = await from_gh.send("alert", alert())
    assert ids(run(ng, SearchQuery(has_feedback=True))) == []
    await from_ng.send("feedback", {"ref": a1["id"], "outcome": "acknowledged"})
    assert ids(run(ng, SearchQuery(has_feedback=True))) == [a1["id"]]
    assert a1["id"] not in ids(run(ng, SearchQuery(has_feedback=False, limit=500)))
    a2 = complete(alert(title="Pangolin scales in transit"))
    await from_ng.send("feedback", {"ref": a2["id"], "outcome": "not-arrived"})
    await from_gh.send("alert", a2)
    assert ids(run(ng, SearchQuery(has_feedback=True))) == [a2["id"], a1["id"]]
    index_consistent(ng)

    # reindex_all rebuilds the same index from the records alone.
    conn = db(ng)
    try:
        def snapshot() -> list[tuple[Any, ...]]:
            return conn.execute(
                "SELECT f.id, f.kind, f.origin, f.category, f.hs_code, f.departure, f.destination, f.transit, f.date,"
                " f.tlp, f.transport_mode, f.has_feedback, f.retracted, f.created, t.text, t.tags"
                " FROM record_facets f JOIN records_fts t ON t.rowid = f.rowid ORDER BY f.id").fetchall()
        before = snapshot()
        conn.execute("BEGIN IMMEDIATE")
        assert search_index.reindex_all(conn) == len(before)
        conn.execute("COMMIT")
        assert snapshot() == before
    finally:
        conn.close()
    index_consistent(ng)


def test_the_migration_indexes_records_already_held(tmp_path):
    conn = connect(tmp_path / "old.db")
    migrations.apply(Database(conn), stop_before="m003_search")
    record = complete(seizure(commodity={"description": "rosewood logs", "hs_code": "440349"}, category="environment"))
    conn.execute("INSERT INTO records (id, origin, kind, version, bundle_id, audience, created, body)"
                 " VALUES (?, 'naaaaaaaaaaaaaaaaaaaaaaaa', 'seizure', 1, 'b', 'federation', 1700000000000, ?)",
                 (record["id"], json.dumps(record)))
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'record_facets'").fetchone() is None
    migrations.apply(Database(conn))
    found = search(conn, SearchQuery(text="rosewood", hs_prefix="4403"))
    assert [r["id"] for r in found.results] == [record["id"]]
    conn.close()


# --- every filter, against a reference -----------------------------------------------------------

GOODS = [("ipr", "sneakers with fake swooshes", "640411", "Nike"), ("ipr", "handbags with fake logos", "420221", None),
         ("drugs", "cocaine bricks", "293979", None), ("drugs", "cannabis herb", "121190", None),
         ("tobacco", "cigarettes without stamps", "24022090", "Marlboro"),
         ("medicines", "tramadol tablets", "300490", None), ("environment", "pangolin scales", "05080000", None)]
WORDS = {"sneakers", "handbags", "cocaine", "cannabis", "cigarettes", "tramadol", "pangolin", "fake", "bricks"}


def make_corpus(rnd: random.Random, start_ms: int) -> list[tuple[str, str, int, dict[str, Any]]]:
    """(sender, kind, created, record) of a mixed corpus spread over about half a year, oldest first.

    Dates lie a few days (sometimes months) before ``created``, alerts are due
    days or weeks after it: every lag class of the index occurs.
    """
    out = []
    created = start_ms
    for i in range(70):
        created += rnd.randrange(DAY // 10, 3 * DAY)
        today = datetime.date(1970, 1, 1) + datetime.timedelta(days=created // DAY)
        sender = rnd.choice(["Nigeria", "Ghana", "Ghana"])
        if i % 10 == 7:
            category, description, hs, _ = rnd.choice(GOODS)
            due = today + datetime.timedelta(days=rnd.randint(-2, 45))
            out.append((sender, "alert", created, alert(
                title=f"Suspected {description}", respond_by=due.isoformat(),
                consignment={"container": "CSQU3054383", "destination_locode": rnd.choice(["NGAPP", "GHTEM"])},
                suspected={"category": category, "commodity": {"description": description, "hs_code": hs}})))
            continue
        if i % 10 == 9:
            out.append((sender, "message", created, message(body=f"About {rnd.choice(sorted(WORDS))} again.")))
            continue
        category, description, hs, brand = rnd.choice(GOODS)
        commodity: dict[str, Any] = {"description": description, "hs_code": hs}
        if brand:
            commodity["brand"] = brand
        day = today - datetime.timedelta(days=rnd.choice([0, 0, 1, 1, 2, 5, 7, 8, 20, 31, 32, 60, 400]))
        out.append((sender, "seizure", created, seizure(
            category=category, commodity=commodity, date=day.isoformat(),
            route={"departure": rnd.choice(["CN", "IN", "BR"]), "destination": rnd.choice(["NG", "GH"]),
                   "transit": sorted(rnd.sample(["TG", "BJ", "AE"], rnd.randrange(3)))},
            tlp=rnd.choice(["AMBER", "RED", "GREEN"]), transport_mode=rnd.choice(["sea", "air", "postal"]))))
    return out


def reference(kind: str, origin: str, created: int, rec: dict[str, Any], retracted: bool, feedback: bool,
              q: SearchQuery, origins: tuple[str, ...] | None) -> bool:
    """Whether ``rec`` matches ``q``, worked out directly from the record."""
    if kind == "seizure":
        cat, hs = rec["category"], rec["commodity"].get("hs_code")
        dep, dest, transit = rec["route"]["departure"], rec["route"]["destination"], rec["route"]["transit"]
        day, mode = rec["date"], rec["transport_mode"]
        words = rec["commodity"]["description"] + " " + rec["commodity"].get("brand", "") + " " + rec["concealment"]
    elif kind == "alert":
        cat, hs = rec["suspected"]["category"], rec["suspected"]["commodity"].get("hs_code")
        dep, dest, transit = None, rec["consignment"]["destination_locode"][:2], []
        day, mode = rec["respond_by"], None
        words = rec["title"] + " " + rec["suspected"]["commodity"]["description"]
    else:
        cat = hs = dep = dest = mode = None
        day = datetime.datetime.fromtimestamp(created / 1000, tz=datetime.UTC).date().isoformat()
        transit, words = [], rec["subject"] + " " + rec["body"]
    checks = [
        q.kind in (None, kind), q.category in (None, cat), q.departure in (None, dep),
        q.destination in (None, dest), all(c in transit for c in q.transit),
        q.hs_prefix is None or (hs or "").startswith(q.hs_prefix),
        q.since is None or day >= q.since, q.until is None or day <= q.until,
        origins is None or origin in origins, q.tlp in (None, rec["tlp"]), q.transport_mode in (None, mode),
        q.has_feedback is None or q.has_feedback == feedback, q.include_retracted or not retracted,
        q.text is None or all(w in words.lower().replace(",", " ").split() for w in q.text.lower().split()),
    ]
    return all(checks)


async def test_every_filter_matches_the_reference(net):
    ng, gh = net.members["Nigeria"], net.members["Ghana"]
    rnd = random.Random(20240601)
    senders = {"Nigeria": Sender(net, "Nigeria"), "Ghana": Sender(net, "Ghana")}
    held: list[tuple[str, str, str, int, dict[str, Any]]] = []  # (id, kind, origin, created, record), oldest first
    start = int(time.time() * 1000) - 250 * DAY
    for sender, kind, created, record in make_corpus(rnd, start):
        record = await senders[sender].send(kind, record, created=created)
        held.append((record["id"], kind, net.members[sender].node_id, created, record))
    retracted = {held[3][0], held[17][0]}
    for rid in sorted(retracted):
        origin = next(h for h in held if h[0] == rid)[2]
        sender = "Nigeria" if origin == ng.node_id else "Ghana"
        await senders[sender].send("retract", {"ref": rid, "reason": "duplicate"})
    alerts = [h for h in held if h[1] == "alert"]
    answered = {alerts[0][0], alerts[2][0]}
    for rid in sorted(answered):
        await senders["Nigeria"].send("feedback", {"ref": rid, "outcome": "monitoring"})
    index_consistent(ng)
    newest_first = list(reversed(held))
    origins_of = {None: None, "NG": (ng.node_id,), "GH": (gh.node_id,), ng.node_id: (ng.node_id,)}

    first_day = datetime.date(1970, 1, 1) + datetime.timedelta(days=start // DAY)
    days = [(first_day + datetime.timedelta(days=d)).isoformat() for d in range(-60, 260, 3)]
    queries = [SearchQuery()]
    for _ in range(300):
        fields: dict[str, Any] = {}
        for name, values in (("kind", ["seizure", "alert", "message"]), ("category", ["ipr", "drugs", "tobacco"]),
                             ("hs_prefix", ["64", "6404", "2402209", "24022090", "29", "050800"]),
                             ("departure", ["CN", "IN"]), ("destination", ["NG", "GH"]), ("transit", [("TG",), ("TG", "BJ")]),
                             ("origin", ["NG", "GH", ng.node_id]), ("tlp", ["AMBER", "RED"]),
                             ("transport_mode", ["sea", "postal"]), ("has_feedback", [True, False]),
                             ("include_retracted", [True]), ("text", [*sorted(WORDS), "fake logos", "cocaine bricks"])):
            if rnd.random() < 0.15:
                fields[name] = rnd.choice(values)
        if rnd.random() < 0.5:
            since, until = sorted(rnd.sample(days, 2))
            fields.update({"since": since, "until": until})
            if rnd.random() < 0.3:
                del fields[rnd.choice(["since", "until"])]
        queries.append(SearchQuery(**fields))
    queries += [SearchQuery(departure="CN", destination="NG"), SearchQuery(origin="GH", category="drugs"),
                SearchQuery(category="ipr"), SearchQuery(kind="alert"), SearchQuery(destination="GH"),
                SearchQuery(origin="GH"), SearchQuery(include_retracted=True), SearchQuery(has_feedback=False)]
    drivers = set()
    nonempty = 0
    for q in queries:
        origins = origins_of[q.origin]
        expected = [rid for rid, kind, origin, created, rec in newest_first
                    if reference(kind, origin, created, rec, rid in retracted, rid in answered, q, origins)]
        got = run(ng, q, origins)
        drivers.add(got.plan)
        assert ids(got) == expected[:q.limit], (q, got.plan)
        assert got.total == len(expected) and not got.total_capped
        want_counts: dict[str, int] = {}
        for rid, _, _, _, rec in held:
            if rid in expected:
                cat = rec.get("category") or rec.get("suspected", {}).get("category") or "none"
                want_counts[cat] = want_counts.get(cat, 0) + 1
        assert got.by_category == want_counts
        nonempty += len(expected) >= 2
    assert nonempty > len(queries) // 3  # the reference is not trivially satisfied by empty answers
    assert drivers >= {"fts", "fts+dates", "scan", "scan+dates", "facets_route", "facets_origin_category"}


async def test_date_ranges_at_every_edge(net):
    """Dates a day either side of every lag class's edges, alerts due before and long after they were sent,
    and every since/until pair on a grid: the rowid shortcuts of the date check never change an answer."""
    ng = net.members["Nigeria"]
    rnd = random.Random(5)
    start = (int(time.time() * 1000) // DAY - 200) * DAY
    items = []
    for i in range(240):
        created = start + i * DAY // 3 + rnd.randrange(DAY // 3)
        today = datetime.date(1970, 1, 1) + datetime.timedelta(days=created // DAY)
        if i % 8 == 3:
            due = today + datetime.timedelta(days=rnd.choice([-3, 0, 1, 30, 46, 90, 400]))
            items.append(("alert", alert(respond_by=due.isoformat()), created))
        else:
            lag = rnd.choice([0, 0, 1, 2, 6, 7, 8, 30, 31, 32, 46, 400])
            items.append(("seizure", seizure(date=(today - datetime.timedelta(days=lag)).isoformat()), created))
    records = await Sender(net, "Ghana").send_many(items)
    dated = [(r["id"], r.get("date") or r.get("respond_by"), created)
             for r, (_, _, created) in zip(records, items, strict=True)]
    seizures = {r["id"] for r in records if "date" in r}
    newest_first = [rid for rid, _, _ in sorted(dated, key=lambda x: -x[2])]
    day0 = datetime.date(1970, 1, 1) + datetime.timedelta(days=start // DAY)
    days = [(day0 + datetime.timedelta(days=d)).isoformat() for d in range(-40, 130)]
    pairs = [(None, None), *((None, d) for d in days), *((d, None) for d in days)]
    pairs += [tuple(sorted(rnd.sample(days, 2))) for _ in range(500)] + [(d, d) for d in days[::2]]
    conn = db(ng)
    try:
        for since, until in pairs:
            q = SearchQuery(since=since, until=until, limit=500)
            expected = {rid for rid, day, _ in dated if (not since or day >= since) and (not until or day <= until)}
            got = search(conn, q)
            assert ids(got) == [rid for rid in newest_first if rid in expected], (since, until)
            with_text = search(conn, dataclasses.replace(q, text="masks"))  # the seizures only
            assert ids(with_text) == [r for r in ids(got) if r in seizures], (since, until, with_text.plan)
    finally:
        conn.close()


async def test_paging_and_capped_counts(net, monkeypatch):
    ng = net.members["Nigeria"]
    s = Sender(net, "Ghana")
    made = [await s.send("seizure", seizure(category="ipr" if i % 3 else "drugs")) for i in range(12)]
    newest = [r["id"] for r in reversed(made)]
    pages = [ids(run(ng, SearchQuery(limit=5, offset=o))) for o in (0, 5, 10)]
    assert pages == [newest[:5], newest[5:10], newest[10:]]
    full = run(ng, SearchQuery())
    assert (full.total, full.total_capped, full.by_category) == (12, False, {"ipr": 8, "drugs": 4})
    monkeypatch.setattr(search_mod, "COUNT_CAP", 5)
    capped = run(ng, SearchQuery(limit=3))
    assert (capped.total, capped.total_capped) == (5, True)
    assert sum(capped.by_category.values()) == 5  # the newest five
    assert ids(capped) == newest[:3]
    assert ids(run(ng, SearchQuery(limit=3, offset=9))) == newest[9:12]  # paging goes past the cap


async def test_query_plans_use_the_indexes(net):
    ng = net.members["Nigeria"]
    await Sender(net, "Ghana").send("seizure", seizure())
    conn = db(ng)
    try:
        route = explain(conn, SearchQuery(departure="CN", destination="NG"))
        assert route[0] == "[facets_route]" and "COVERING INDEX facets_route" in route[1]
        both = explain(conn, SearchQuery(category="drugs"), (ng.node_id,))
        assert both[0] == "[facets_origin_category]" and "COVERING INDEX facets_origin_category" in both[1]
        text = explain(conn, SearchQuery(text="masks", hs_prefix="6307", since="2020-01-01"))
        assert text[0] == "[fts+dates]" and "records_fts VIRTUAL TABLE" in text[1]
        assert "TEMP B-TREE" not in " ".join(text)
        assert all("TEMP B-TREE" not in " ".join(explain(conn, q)) for q in
                   (SearchQuery(), SearchQuery(kind="alert"), SearchQuery(tlp="RED", include_retracted=True),
                    SearchQuery(category="drugs", since="2020-01-01"), SearchQuery(until="2021-01-01")))
    finally:
        conn.close()


# --- the API ------------------------------------------------------------------------------------

async def add_user(member: Member, name: str, role: str) -> str:
    assert member.node is not None
    return str(await member.node.store.write(auth.create_token, name, role, int(time.time() * 1000)))


async def test_api_search_roles_audit_and_errors(net):
    ng = net.members["Nigeria"]
    s = Sender(net, "Ghana")
    masks = await s.send("seizure", seizure())
    await s.send("seizure", seizure(category="tobacco", commodity={"description": "cigarettes", "hs_code": "240220"}))
    analyst, officer = await add_user(ng, "ana", "analyst"), await add_user(ng, "otto", "officer")
    async with aiohttp.ClientSession() as session:
        status, body = await get(session, ng, "/api/v1/search", analyst, q="masks", hs="6307", route="CN-NG",
                                 since="2020-03-01")
        assert status == 200, body
        assert body["total"] == 1 and body["total_capped"] is False and body["by_category"] == {"medicines": 1}
        row = body["results"][0]
        assert row["id"] == masks["id"] and row["record"] == masks and row["kind"] == "seizure"
        assert {"origin", "version", "bundle_id", "audience", "created", "retracted"} <= set(row)
        status, same = await get(session, ng, f"/api/v1/records/{masks['id']}", analyst)
        assert status == 200 and same["record"] == row["record"]
        status, body = await get(session, ng, "/api/v1/search", officer, origin="GH")
        assert status == 200 and body["total"] == 2
        for params, param in (({"hs": "x"}, "hs"), ({"since": "2020-02-30"}, "since"), ({"bogus": "1"}, "bogus")):
            status, body = await get(session, ng, "/api/v1/search", analyst, **params)
            assert status == 400 and body["error"] == "bad-query" and body["param"] == param, body
            assert body["detail"].startswith(param + ":")
        async with session.get(ng.url + "/api/v1/search") as resp:
            assert resp.status == 401
        status, _ = await get(session, ng, "/api/v1/export", analyst, format="json")
        assert status == 200
        status, body = await get(session, ng, "/api/v1/export", officer, format="json")
        assert status == 403, body
    conn = db(ng)
    try:
        audit = conn.execute("SELECT user, role, action, detail FROM audit WHERE action IN ('search', 'export')"
                             " ORDER BY seq").fetchall()
    finally:
        conn.close()
    assert [tuple(a)[:3] for a in audit] == [("ana", "analyst", "search"), ("otto", "officer", "search"),
                                             ("ana", "analyst", "export")]
    assert json.loads(audit[0][3]) == {"q": "masks", "hs": "6307", "departure": "CN", "destination": "NG",
                                       "since": "2020-03-01"}


async def test_export_csv_and_json(net):
    ng = net.members["Nigeria"]
    s = Sender(net, "Ghana")
    made = []
    for i in range(7):
        made.append(await s.send("seizure", seizure(
            concealment="=HYPERLINK(\"http://x\")" if i == 0 else "in cartons",
            commodity={"description": f"face masks lot {i}", "hs_code": "630790", "brand": "3M"},
            route={"departure": "CN", "destination": "NG", "transit": ["TG", "BJ"] if i == 1 else []},
            value={"amount": "100.50", "currency": "USD"})))
    await s.send("alert", alert())
    analyst = await add_user(ng, "ana", "analyst")
    newest = [r["id"] for r in reversed(made)]
    async with aiohttp.ClientSession() as session:
        status, text = await get(session, ng, "/api/v1/export", analyst, format="csv", q="masks", kind="seizure")
        assert status == 200
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [r["id"] for r in rows] == newest
        by_id = {r["id"]: r for r in rows}
        first = by_id[made[0]["id"]]
        assert first["concealment"].startswith("'=")  # never a live formula in a spreadsheet
        assert first["commodity"] == "face masks lot 0" and first["hs_code"] == "630790" and first["brand"] == "3M"
        assert first["departure"] == "CN" and first["destination"] == "NG" and first["category"] == "medicines"
        assert first["office_locode"] == "NGAPP" and first["quantity"] == "1000" and first["unit"] == "pieces"
        assert first["created"].endswith("Z") and first["retracted"] == "false"
        assert by_id[made[1]["id"]]["transit"] == "TG;BJ"
        assert by_id[made[2]["id"]]["value"] == "100.50" and by_id[made[2]["id"]]["currency"] == "USD"
        status, body = await get(session, ng, "/api/v1/export", analyst, format="json", q="masks", limit="3")
        assert status == 200
        assert [r["id"] for r in body["records"]] == newest[:3]
        assert body["count"] == 3 and body["capped"] is True and body["query"] == {"q": "masks"}
        assert body["records"][0]["record"] == made[-1]
        status, body = await get(session, ng, "/api/v1/export", analyst, format="json")
        assert body["count"] == 8 and body["capped"] is False
        for params, param in (({"format": "xml"}, "format"), ({"limit": "100001"}, "limit"), ({"offset": "5"}, "offset"),
                              ({"route": "CN"}, "route")):
            status, body = await get(session, ng, "/api/v1/export", analyst, **params)
            assert status == 400 and body["param"] == param, body


def test_csv_cells_are_never_formulas():
    assert [_cell(v) for v in ("=1+1", "+cmd", "@SUM(A1)", "-x", "\tx", "-5.00", "+3", "a=b", None, True, ["TG", "BJ"])] == [
        "'=1+1", "'+cmd", "'@SUM(A1)", "'-x", "'\tx", "-5.00", "+3", "a=b", "", "true", "TG;BJ"]
    assert _cell([{"role": "consignee", "name": "=Apex Ltd", "country": "NG"}]) == "consignee: =Apex Ltd (NG)"


async def test_export_pages_through_many_matches(net, monkeypatch):
    ng = net.members["Nigeria"]
    monkeypatch.setattr(search_mod, "EXPORT_PAGE", 4)
    s = Sender(net, "Ghana")
    made = [await s.send("seizure", seizure()) for _ in range(10)]
    async with aiohttp.ClientSession() as session:
        status, body = await get(session, ng, "/api/v1/export", format="json", route="CN-NG")
        assert status == 200 and [r["id"] for r in body["records"]] == [r["id"] for r in reversed(made)]
        status, body = await get(session, ng, "/api/v1/export", format="json", q="masks", limit="8")
        assert body["count"] == 8 and body["capped"] is True


# --- the CLI ------------------------------------------------------------------------------------

async def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


async def test_cli_query_and_export(net, capsys, tmp_path):
    ng = net.members["Nigeria"]
    s = Sender(net, "Ghana")
    masks = await s.send("seizure", seizure(route={"departure": "CN", "destination": "NG", "transit": ["TG"]}))
    await s.send("seizure", seizure(category="tobacco", commodity={"description": "cigarettes", "hs_code": "240220"}))
    home = str(ng.home)
    code, out, err = await run_cli(capsys, "query", "masks", "--hs", "6307", "--route", "CN-NG", "--since",
                                   "2020-03-01", "--home", home)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["DATE", "ORIGIN", "CATEGORY", "COMMODITY", "QUANTITY", "ROUTE", "ID"]
    assert "2020-03-24" in lines[1] and "GH" in lines[1] and "CN-TG-NG" in lines[1] and masks["id"] in lines[1]
    assert "1 match," in out and "medicines 1" in out
    code, out, _ = await run_cli(capsys, "query", "--origin", "GH", "--json", "--home", home)
    assert code == 0 and json.loads(out)["total"] == 2
    code, _, err = await run_cli(capsys, "query", "--since", "2020-02-30", "--home", home)
    assert code == 1 and "since" in err
    target = tmp_path / "out.csv"
    code, out, err = await run_cli(capsys, "export", "--category", "tobacco", "--format", "csv", "--out",
                                   str(target), "--home", home)
    assert code == 0, err
    assert "exported 1 record " in out
    rows = list(csv.DictReader(target.open()))
    assert len(rows) == 1 and rows[0]["commodity"] == "cigarettes"
    code, out, err = await run_cli(capsys, "export", "--format", "json", "--out", str(tmp_path / "all.json"),
                                   "--home", home)
    assert code == 0, err
    assert json.loads((tmp_path / "all.json").read_text())["count"] == 2


def test_records_list_pages_from_an_index(tmp_path) -> None:
    """Listing records newest first walks an index instead of sorting the whole table per page."""
    from node.store.db import connect, init_store

    path = tmp_path / "store.db"
    init_store(path)
    conn = connect(path)
    try:
        plan = " ".join(row[-1] for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM records ORDER BY created DESC, id LIMIT 50 OFFSET 100"))
    finally:
        conn.close()
    assert "records_created_id" in plan and "TEMP B-TREE" not in plan, plan
