"""Benchmark pull sync between two real nodes over HTTP on 127.0.0.1.

Run it as ``scripts/bench sync [--bundles N] [--quick] [--receiver national|hub] ...``.

Set-up (in a temporary folder, with the same admin functions as ``cenmesh
init / trust / endorse / directory add``, wired as tests/federation/harness.py does):
node A (national, the origin) and node B (by default a national of the same
region, endorsed by a hub that does not run; ``--receiver hub`` makes B the
region's hub). Both run as separate processes (``python -m node.cli run``),
so B's ingest shares no GIL with this script. B pulls from A through a small
counting TCP proxy on 127.0.0.1 that forwards bytes unchanged and frames the
HTTP/1.1 messages, so bytes (headers included) and requests are exact.
Scheduled syncs are pushed out of the way (``sync.interval_s=86400``,
``jitter_s=0``); every round is forced with B's officer API
``POST /api/v1/sync``, which returns when the round is over.

Bundles: realistic seizure records of varying content (categories,
commodities, offices, routes, free text, some with parties), sealed by A to
``nodes:[B]`` (recipients A and B) with ``crypto.envelope.seal_bundle`` and
stored at A with ``node.ingest.ingest``, before A starts. Sealing is not
measured.

Measured:

1. Ingest: B already holds 1,000 older bundles of A (warm-up) and its cursor is
   at their end; A then holds N new ones. One forced sync moves all N to B;
   ``ingest_per_s = N / wall time of that call``, checked against B's
   database (N more bundles, all ``readable``). ``--ingest-rounds`` times, B
   restored from a snapshot of its database in between.
2. Raw: verify-plus-open of the same N bundles with only the libsodium calls
   (``crypto_sign_open`` over sig + signed bytes, ``crypto_box_seal_open`` of
   B's wrap, ``crypto_aead_xchacha20poly1305_ietf_decrypt`` with the header
   hash as aad), one core, in this process, in passes over all N bundles
   interleaved with the ingest rounds (before the first, after each); the
   median pass gives ``raw_per_s``. ``ratio_ingest_vs_raw = ingest / raw``.
   On a busy machine both rates move with the load, so the same ratio is
   also given in CPU time (``ratio_b_cpu_vs_raw``: this thread's CPU seconds
   per raw bundle over the CPU seconds per ingested bundle of B's process and
   its verifier worker processes together, from /proc): the share of B's
   work that is the raw cryptography, whatever the load.
3. Wire: bytes A sent to B through the proxy during an ingest round (HTTP
   headers and bodies of the feed pages, fetch answers and directory check)
   divided by the sum of the N bundles' own canonical sizes.
4. Idle poll: forced rounds with nothing new, with A holding 1,000 bundles and
   with A holding 100,000 (the N real ones plus synthetic rows inserted with
   ``node.store.bundles.insert_bundles``; B's cursor is set to their end while
   B is stopped), plus once after the ingest. Each round is classified by
   what B sent: ``GET /feed`` alone, or also ``GET /directory`` (the driver
   checks the directory on its first round and every ``sync.directory_every``-th,
   default 10, with ``If-None-Match``, expecting 304); both kinds are
   reported, with the directory answers' status codes, and the headline idle
   poll is the feed-only kind when there is one. Rounds run back to back, so
   the kept-alive connection is reused; one last round after ``--cold-gap``
   seconds without traffic shows whether it survives a realistic interval.
5. ``--profile FILE``: afterwards, a copy of B pulls the same N bundles inside
   this process with every thread hop (``asyncio.to_thread``, the store's
   reader and writer threads) made inline, under cProfile; the top functions
   go to stderr and the stats to FILE.

The last line printed is one JSON object. The exit status is 0 whether or not
the targets are met (this is a measurement, not a test); 1 when the run itself
failed (a node did not start, a sync did not complete, a timeout).
"""

# ruff: noqa: E402  (the imports below follow the sys.path set-up)

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime
import gc
import hashlib
import json
import os
import platform
import pstats
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import (  # scripts/ is on the path when a script runs
    NodeProcess,
    children_cpu_seconds,
    cpu_model,
    cpu_seconds,
    free_port,
)

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp
import nacl
import nacl.bindings as sodium

from crypto.envelope import seal_bundle
from node import admin
from node.ingest import ingest
from node.keystore import KeyStore
from node.peers import SyncDriver
from node.runtime import open_node
from node.store import bundles as bundle_store
from node.store import peers as peer_store
from node.store.bundles import BundleRow
from node.store.db import Transaction, connect
from node.transport import HttpTransport, PeerClient
from protocol.audience import resolve_recipients
from protocol.bundle import Audience, Bundle
from protocol.canonical import b64u_encode, canonical

TARGET_RATIO_INGEST = 0.5
TARGET_WIRE_OVERHEAD = 1.1
TARGET_IDLE_ROUND_TRIPS = 1
TARGET_IDLE_BYTES = 1024
# "Does not grow with the store": the only growth allowed is the extra digits of
# larger sequence numbers (after=... in the query, "next":... in the answer).
IDLE_GROWTH_ALLOWANCE = 16

WARM_BUNDLES = 1_000
DAY_MS = 24 * 3600 * 1000
LOG_LEVEL = "WARNING"


def say(*parts: object) -> None:
    """Progress on stderr (stdout is the report)."""
    print(*parts, file=sys.stderr, flush=True)


# --- Records ------------------------------------------------------------------------

GOODS: dict[str, list[tuple[str, str, str | None]]] = {
    "ipr": [
        ("sports shoes bearing counterfeit trademarks", "640411", "Nike"),
        ("handbags with counterfeit logos", "420221", "Louis Vuitton"),
        ("phone chargers with fake certification marks", "850440", "Apple"),
        ("toys with counterfeit character licences", "950300", "Lego"),
    ],
    "medicines": [
        ("surgical face masks, counterfeit CE marking", "630790", "3M"),
        ("falsified antimalarial tablets (artemether/lumefantrine)", "300490", None),
        ("unregistered tramadol 225 mg tablets", "300490", None),
        ("counterfeit insulin pens, broken cold chain", "300431", "Novo Nordisk"),
    ],
    "drugs": [
        ("cocaine hydrochloride in vacuum-sealed bricks", "293979", None),
        ("cannabis herb", "121190", None),
        ("methamphetamine crystals", "293390", None),
    ],
    "tobacco": [
        ("cigarettes without tax stamps", "240220", "Marlboro"),
        ("waterpipe tobacco, undeclared", "240311", None),
    ],
    "alcohol": [
        ("whisky, undervalued and mislabelled", "220830", None),
        ("ethanol declared as solvent", "220710", None),
    ],
    "weapons": [
        ("pistol parts declared as machine parts", "930591", None),
        ("ammunition, 9 mm", "930630", None),
    ],
    "explosives": [("detonators declared as electrical fittings", "360300", None)],
    "environment": [
        ("pangolin scales", "050800", None),
        ("ivory carvings", "960100", None),
        ("rosewood logs without CITES permit", "440399", None),
        ("ozone-depleting refrigerant R-22", "290371", None),
    ],
    "cultural-heritage": [("terracotta figurines, suspected looted", "970500", None)],
    "currency": [("undeclared cash in US dollar banknotes", "490700", None)],
    "revenue": [
        ("mobile phones, undervalued by 80%", "851713", "Samsung"),
        ("rice declared as animal feed", "100630", None),
    ],
    "other": [
        ("counterfeit vehicle brake pads", "870830", "Toyota"),
        ("used tyres, prohibited import", "401220", None),
    ],
}
OFFICES = [
    ("Lagos Apapa Port", "NGAPP"),
    ("Tin Can Island Port", "NGTIN"),
    ("Murtala Muhammed Airport", "NGLOS"),
    ("Onne Port", "NGONN"),
    ("Seme Border Post", "NGSEM"),
    ("Mallam Aminu Kano Airport", "NGKAN"),
    ("Nnamdi Azikiwe Airport", "NGABV"),
    ("Idiroko Border Post", "NGIDI"),
]
DEPARTURES = ["CN", "IN", "TR", "AE", "BR", "NL", "BE", "MY", "VN", "PK", "US", "DE"]
TRANSIT = ["TG", "BJ", "GH", "CI", "SN", "MA", "ES"]
CONCEALMENT = [
    "declared",
    "as",
    "textiles",
    "hidden",
    "behind",
    "cartons",
    "false",
    "wall",
    "in",
    "container",
    "inside",
    "spare",
    "tyres",
    "mixed",
    "with",
    "legitimate",
    "cargo",
    "under",
    "layers",
    "of",
    "frozen",
    "fish",
    "in",
    "hollowed",
    "furniture",
    "in",
    "the",
    "vehicle's",
    "fuel",
    "tank",
    "inside",
    "a",
    "suitcase",
    "lining",
    "false",
    "bottom",
    "in",
    "machinery",
    "crates",
    "misdeclared",
    "as",
    "household",
    "effects",
    "body-packed",
    "by",
    "passenger",
    "in",
    "postal",
    "parcels",
    "labelled",
    "as",
    "gifts",
]
NARRATIVE = [
    "the",
    "consignment",
    "was",
    "selected",
    "by",
    "the",
    "risk",
    "engine",
    "on",
    "the",
    "basis",
    "of",
    "the",
    "route",
    "the",
    "declared",
    "value",
    "and",
    "the",
    "consignee's",
    "history",
    "x-ray",
    "images",
    "showed",
    "anomalies",
    "in",
    "density",
    "officers",
    "examined",
    "the",
    "goods",
    "in",
    "the",
    "presence",
    "of",
    "the",
    "agent",
    "samples",
    "were",
    "sent",
    "to",
    "the",
    "laboratory",
    "the",
    "rights",
    "holder",
    "confirmed",
    "the",
    "goods",
    "are",
    "counterfeit",
    "the",
    "importer",
    "could",
    "not",
    "produce",
    "a",
    "licence",
    "and",
    "the",
    "goods",
    "were",
    "detained",
    "pending",
    "investigation",
    "further",
    "consignments",
    "to",
    "the",
    "same",
    "consignee",
    "are",
    "expected",
    "the",
    "shipping",
    "line",
    "has",
    "been",
    "informed",
    "and",
    "the",
    "bill",
    "of",
    "lading",
    "was",
    "checked",
    "against",
    "the",
    "manifest",
]
COMPANIES = [
    "Apex Trading",
    "Blue Harbour Logistics",
    "Crescent General Merchants",
    "Delta Imports",
    "Evergreen Ventures",
    "Fortune Global Enterprises",
    "Golden Gate Shipping",
]
PEOPLE = ["A. Okafor", "B. Adeyemi", "C. Mensah", "D. Diallo", "E. Zhang", "F. Kaya"]


def _words(rnd: random.Random, vocab: list[str], low: int, high: int) -> str:
    text = " ".join(rnd.choice(vocab) for _ in range(rnd.randint(low, high)))
    return text[:1].upper() + text[1:] + "."


def _iso6346_values() -> dict[str, int]:
    """Letter values of ISO 6346: A=10, then on, skipping multiples of 11."""
    values, v = {}, 10
    for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        if v % 11 == 0:
            v += 1
        values[c] = v
        v += 1
    return values


_ISO6346 = _iso6346_values()


def _container(rnd: random.Random) -> str:
    stem = (
        rnd.choice(["CSQU", "MSCU", "MAEU", "CMAU", "HLXU", "TGHU"]) + f"{rnd.randrange(10**6):06d}"
    )
    digits = [_ISO6346[c] if c.isalpha() else int(c) for c in stem]
    return stem + str(sum(d << i for i, d in enumerate(digits)) % 11 % 10)


def _awb(rnd: random.Random) -> str:
    serial = rnd.randrange(10**7)
    return f"{rnd.choice(['176', '071', '157', '235', '618'])}{serial:07d}{serial % 7}"


def _imo(rnd: random.Random) -> str:
    digits = [rnd.randrange(10) for _ in range(6)]
    digits[0] = rnd.randint(1, 9)
    return (
        "IMO"
        + "".join(map(str, digits))
        + str(sum(d * w for d, w in zip(digits, (7, 6, 5, 4, 3, 2), strict=True)) % 10)
    )


def make_record(rnd: random.Random, today: datetime.date) -> dict[str, Any]:
    """One valid seizure record; content, optional members and lengths vary."""
    category = rnd.choice(list(GOODS))
    description, hs_code, brand = rnd.choice(GOODS[category])
    office, locode = rnd.choice(OFFICES)
    mode = rnd.choice(["sea", "sea", "sea", "air", "express", "road", "postal", "passenger"])
    commodity: dict[str, Any] = {"description": description, "hs_code": hs_code}
    if brand:
        commodity["brand"] = brand
        if rnd.random() < 0.5:
            commodity["rights_holder"] = brand + " (registered rights holder)"
    record: dict[str, Any] = {
        "id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
        "version": 1,
        "category": category,
        "date": (today - datetime.timedelta(days=rnd.randint(0, 364))).isoformat(),
        "office": {"name": office, "locode": locode},
        "transport_mode": mode,
        "detection_method": rnd.choice(
            ["risk-profiling", "intelligence", "routine", "random", "x-ray", "dog"]
        ),
        "concealment": _words(rnd, CONCEALMENT, 3, 30),
        "commodity": commodity,
        "quantity": {
            "amount": str(rnd.randint(1, 500_000)),
            "unit": rnd.choice(["pieces", "kg", "cartons", "packages"]),
        },
        "route": {
            "departure": rnd.choice(DEPARTURES),
            "destination": "NG",
            "transit": sorted(rnd.sample(TRANSIT, rnd.randint(0, 2))),
        },
        "tlp": rnd.choice(["GREEN", "AMBER", "AMBER", "AMBER+STRICT", "RED"]),
    }
    if rnd.random() < 0.6:
        record["value"] = {
            "amount": f"{rnd.randint(100, 5_000_000)}.{rnd.randrange(100):02d}",
            "currency": rnd.choice(["USD", "EUR", "NGN"]),
        }
    conveyance: dict[str, Any] = {}
    if mode == "sea":
        conveyance["container"] = _container(rnd)
        if rnd.random() < 0.5:
            conveyance["vessel_imo"] = _imo(rnd)
            conveyance["bill_of_lading"] = f"MEDU{rnd.randrange(10**8):08d}"
    elif mode in ("air", "express"):
        conveyance["awb"] = _awb(rnd)
        if rnd.random() < 0.5:
            conveyance["flight"] = (
                f"{rnd.choice(['ET', 'KQ', 'TK', 'EK', 'AF'])}{rnd.randint(1, 999)}"
            )
    if conveyance:
        record["conveyance"] = conveyance
    if rnd.random() < 0.3:
        record["narrative"] = _words(rnd, NARRATIVE, 20, 200)
    if rnd.random() < 0.25:
        record["tlp"] = rnd.choice(
            ["AMBER", "AMBER+STRICT", "RED"]
        )  # personal data: never CLEAR or GREEN
        record["parties"] = [
            {
                "role": "consignee",
                "name": rnd.choice(COMPANIES) + " Ltd",
                "country": "NG",
                "identifier": f"RC{rnd.randrange(10**7):07d}",
            },
            *(
                [
                    {
                        "role": "passenger",
                        "name": rnd.choice(PEOPLE),
                        "country": rnd.choice(DEPARTURES),
                    }
                ]
                if rnd.random() < 0.3
                else []
            ),
        ]
    if rnd.random() < 0.3:
        record["handling"] = rnd.choice(["H0", "H1", "H2", "H3"])
    return record


# --- Federation set-up ----------------------------------------------------------------


@dataclass
class Member:
    """One node's folder, as ``cenmesh init`` made it."""

    name: str
    home: Path
    node_id: str
    url: str
    token: str

    def descriptor_file(self) -> str:
        path = self.home.parent / f"{self.name}.descriptor.json"
        path.write_text(json.dumps(admin.own_descriptor(str(self.home))))
        return str(path)


@dataclass
class Setup:
    root: Path
    a: Member
    b: Member
    receiver: str




def init_node(root: Path, name: str, country: str, role: str) -> Member:
    port = free_port()
    out = admin.init(
        str(root / name),
        name=name,
        country=country,
        role=role,
        regions=["WCA"],
        listen=f"127.0.0.1:{port}",
        public_url=None,
    )
    return Member(name, root / name, out["node"], f"http://127.0.0.1:{port}", out["token"])


def build_federation(root: Path, receiver: str) -> Setup:
    """A (national NG) and B (national GH, or the WCA hub), wired as tests/federation/harness.py does:
    everyone trusts the hub, the hub endorses the nationals, the nationals accept each other by endorsement."""
    if receiver == "hub":
        b = hub = init_node(root, "B", "CI", "hub")
        a = init_node(root, "A", "NG", "national")
        nationals = [a]
    else:
        hub = init_node(root, "H", "CI", "hub")  # the anchor that endorses A and B; it never runs
        a = init_node(root, "A", "NG", "national")
        b = init_node(root, "B", "GH", "national")
        nationals = [a, b]
    for m in (a, b):
        if m is not hub:
            admin.trust(str(m.home), hub.descriptor_file())
    for m in nationals:
        endorsed = root / f"{m.name}.endorsed.json"
        endorsed.write_text(json.dumps(admin.endorse_file(str(hub.home), m.descriptor_file())))
        admin.directory_add(str(m.home), str(endorsed))  # our own descriptor, now endorsed
    for m in (a, b):
        for other in nationals:
            if other is not m:
                admin.directory_add(str(m.home), other.descriptor_file())
    return Setup(root, a, b, receiver)


def seal_all(s: Setup, count: int, seed: int) -> list[Bundle]:
    """``count`` bundles from A to nodes:[B], recipients resolved from A's directory."""
    node = open_node(s.a.home)
    try:
        now = node.now_ms()
        audience = Audience("nodes", (s.b.node_id,))
        keys = resolve_recipients(audience, node.node_id, node.directory, node.rosters, now_ms=now)
        rnd = random.Random(seed)
        today = datetime.datetime.fromtimestamp(now / 1000, tz=datetime.UTC).date()
        out = []
        for _ in range(count):
            out.append(
                seal_bundle(
                    identity=node.identity,
                    kind="seizure",
                    record=make_record(rnd, today),
                    audience=audience,
                    recipient_keys=keys,
                    created=now,
                    expires=now + 30 * DAY_MS,
                    urgent=False,
                    rng=os.urandom,
                )
            )
        return out
    finally:
        node.store.close()


async def store_at(home: Path, bundles: Sequence[Bundle]) -> None:
    """Store bundles as the node's own (``ingest`` with via=None), while the node is stopped."""
    node = open_node(home)
    try:
        for i in range(0, len(bundles), 500):
            result = await ingest(node, [b.obj for b in bundles[i : i + 500]], via=None)
            if result.rejected or len(result.accepted) != len(bundles[i : i + 500]):
                raise RuntimeError(f"seeding {home.name}: {result.rejected[:3]}")
    finally:
        node.store.close()


def db_path(m: Member) -> Path:
    return m.home / "node.db"


@contextlib.contextmanager
def read_db(m: Member) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"file:{db_path(m)}?mode=ro", uri=True, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


def bundle_states(m: Member) -> dict[str, int]:
    with read_db(m) as conn:
        return {
            r[0]: r[1] for r in conn.execute("SELECT state, count(*) FROM bundles GROUP BY state")
        }


def stored(m: Member) -> int:
    return sum(bundle_states(m).values())


def add_synthetic(a: Member, b: Member, target: int, template: Bundle) -> int:
    """Fill A's store up to ``target`` bundles with synthetic rows (addressed to A and B); returns A's top seq."""
    conn = connect(db_path(a))
    try:
        have = conn.execute("SELECT count(*) FROM bundles").fetchone()[0]
        now = int(time.time() * 1000)
        recipients = tuple(sorted((a.node_id, b.node_id)))
        raw = template.raw or canonical(template.obj)
        i = have
        while i < target:
            rows = []
            for j in range(i, min(target, i + 10_000)):
                rows.append(
                    BundleRow(
                        id=b64u_encode(hashlib.sha256(b"cenmesh bench synthetic %d" % j).digest()),
                        origin=a.node_id,
                        created=now,
                        expires=now + 30 * DAY_MS,
                        urgent=False,
                        size=len(raw),
                        scope=f"nodes:{b.node_id}",
                        raw=raw,
                        recipients=recipients,
                        state="relay",
                        note="bench: synthetic row",
                        via=None,
                        received=now,
                    )
                )
            with Transaction(conn):
                bundle_store.insert_bundles(conn, rows)
            i += len(rows)
        return bundle_store.max_seq(conn)
    finally:
        conn.close()


def set_cursor(b: Member, peer: str, epoch: str, seq: int) -> None:
    """Put B's cursor into A's feed at ``seq`` (B must be stopped: a running driver keeps it in memory)."""
    conn = connect(db_path(b))
    try:
        with Transaction(conn):
            peer_store.save_cursor(conn, peer, epoch, seq, int(time.time() * 1000), None)
    finally:
        conn.close()


def a_feed_top(a: Member) -> tuple[str, int]:
    with read_db(a) as conn:
        epoch = conn.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()[0]
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name='bundles'").fetchone()
        return epoch, int(row[0]) if row else 0


def snapshot_db(m: Member, dest: Path) -> None:
    """Copy a stopped node's database (and WAL, if any) to ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal"):
        src = Path(str(db_path(m)) + suffix)
        if src.exists():
            shutil.copy2(src, dest / ("node.db" + suffix))


def restore_db(m: Member, src: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(str(db_path(m)) + suffix).unlink(missing_ok=True)
    for suffix in ("", "-wal"):
        f = src / ("node.db" + suffix)
        if f.exists():
            shutil.copy2(f, Path(str(db_path(m)) + suffix))


# --- Node processes ----------------------------------------------------------------------




# --- The counting proxy ---------------------------------------------------------------------


@dataclass
class Message:
    """One HTTP message seen by the proxy: its start line, bytes (head + body) and times."""

    start: str
    t_start: float
    size: int = 0
    t_end: float = 0.0


class HttpFramer:
    """Frames one direction of an HTTP/1.1 byte stream (Content-Length or chunked bodies)."""

    def __init__(self, sink: list[Message]) -> None:
        self.buf = bytearray()
        self.state = "head"
        self.remaining = 0
        self.head_bytes = 0
        self.sink = sink
        self.current: Message | None = None

    def _done(self) -> None:
        assert self.current is not None
        self.current.t_end = time.perf_counter()
        self.state = "head"

    def _count(self, n: int) -> None:
        assert self.current is not None
        self.current.size += n

    def feed(self, data: bytes) -> None:
        self.buf += data
        buf = self.buf
        while buf:
            if self.state == "head":
                i = buf.find(b"\r\n\r\n")
                if i < 0:
                    return
                head = bytes(buf[: i + 4])
                del buf[: i + 4]
                self.head_bytes += len(head)
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                self.current = Message(lines[0], time.perf_counter(), len(head))
                self.sink.append(self.current)
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    self.state = "size"
                else:
                    self.remaining = int(headers.get("content-length") or 0)
                    if self.remaining:
                        self.state = "body"
                    else:
                        self._done()
            elif self.state in ("body", "chunk"):
                take = min(self.remaining, len(buf))
                del buf[:take]
                self._count(take)
                self.remaining -= take
                if self.remaining == 0:
                    if self.state == "body":
                        self._done()
                    else:
                        self.state = "size"
            else:  # "size" or "trailer": one line at a time
                i = buf.find(b"\r\n")
                if i < 0:
                    return
                size_line = bytes(buf[:i])
                del buf[: i + 2]
                self._count(i + 2)
                if self.state == "trailer":
                    if i == 0:
                        self._done()
                    continue
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    self.state = "trailer"
                else:
                    self.remaining, self.state = size + 2, "chunk"


@dataclass
class ProxyCounts:
    """Everything the proxy has seen so far (monotonic; subtract two snapshots for a window)."""

    c2s: int
    s2c: int
    c2s_head: int
    s2c_head: int
    connections: int
    requests: int
    responses: int


@dataclass
class Window:
    """What went over the wire between two snapshots."""

    c2s: int
    s2c: int
    c2s_head: int
    s2c_head: int
    connections: int
    requests: list[Message]
    responses: list[Message]

    @property
    def total(self) -> int:
        return self.c2s + self.s2c

    def paths(self) -> list[str]:
        return [
            m.start.split(" ")[1].split("?")[0].removeprefix("/federation/v1")
            for m in self.requests
        ]

    def statuses(self, route: str | None = None) -> list[int]:
        return [
            int(resp.start.split(" ")[1])
            for resp, path in zip(self.responses, self.paths(), strict=False)
            if route is None or path == route
        ]

    def count(self, route: str) -> int:
        return sum(1 for p in self.paths() if p == route)

    def exchange_bytes(self, route: str) -> int:
        """Request + answer bytes of the exchanges with ``route`` (the client is sequential)."""
        return sum(
            req.size + resp.size
            for req, resp, path in zip(self.requests, self.responses, self.paths(), strict=False)
            if path == route
        )

    def answer_bytes(self, route: str) -> int:
        """Bytes of the answers to ``route`` (head + body)."""
        return sum(
            resp.size
            for resp, path in zip(self.responses, self.paths(), strict=False)
            if path == route
        )

    def latencies_ms(self, route: str) -> list[float]:
        """Request head seen -> answer fully forwarded, per request to ``route``."""
        return [
            (resp.t_end - req.t_start) * 1000
            for req, resp, path in zip(self.requests, self.responses, self.paths(), strict=False)
            if path == route and resp.t_end
        ]


class CountingProxy:
    """A TCP forwarder on 127.0.0.1 that counts bytes both ways and frames the HTTP messages."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.c2s = self.s2c = 0
        self.connections = 0
        self.requests: list[Message] = []
        self.responses: list[Message] = []
        self._up: list[HttpFramer] = []
        self._down: list[HttpFramer] = []
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def snapshot(self) -> ProxyCounts:
        return ProxyCounts(
            self.c2s,
            self.s2c,
            sum(f.head_bytes for f in self._up),
            sum(f.head_bytes for f in self._down),
            self.connections,
            len(self.requests),
            len(self.responses),
        )

    def since(self, s: ProxyCounts) -> Window:
        now = self.snapshot()
        return Window(
            now.c2s - s.c2s,
            now.s2c - s.s2c,
            now.c2s_head - s.c2s_head,
            now.s2c_head - s.s2c_head,
            now.connections - s.connections,
            self.requests[s.requests :],
            self.responses[s.responses :],
        )

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            sreader, swriter = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            cwriter.close()
            return
        self._writers |= {cwriter, swriter}
        up, down = HttpFramer(self.requests), HttpFramer(self.responses)
        self._up.append(up)
        self._down.append(down)

        async def pump(
            reader: asyncio.StreamReader,
            writer: asyncio.StreamWriter,
            framer: HttpFramer,
            upstream: bool,
        ) -> None:
            try:
                while data := await reader.read(1 << 16):
                    if upstream:
                        self.c2s += len(data)
                    else:
                        self.s2c += len(data)
                    framer.feed(data)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    writer.close()
                self._writers.discard(writer)

        await asyncio.gather(pump(creader, swriter, up, True), pump(sreader, cwriter, down, False))


# --- Raw libsodium baseline ---------------------------------------------------------------------


@dataclass
class RawInputs:
    signed: list[bytes]
    wraps: list[bytes]
    cts: list[bytes]
    aads: list[bytes]
    nonces: list[bytes]
    origin_public: bytes
    public: bytes
    private: bytes


def raw_inputs(bundles: Sequence[Bundle], a: Member, b: Member) -> RawInputs:
    key = KeyStore(b.home).encryption_keys()[0]
    wraps = []
    for x in bundles:
        w = x.wrap_for(b.node_id)
        assert w is not None
        wraps.append(w)
    return RawInputs(
        [x.sig + x.signed_bytes for x in bundles],
        wraps,
        [x.ct for x in bundles],
        [hashlib.sha256(x.header_bytes).digest() for x in bundles],  # H, as open_bundle computes it
        [x.nonce for x in bundles],
        KeyStore(a.home).identity().public,
        key.public,
        key.private,
    )


def raw_pass(r: RawInputs, cpu: list[float]) -> float:
    """Seconds per bundle for verify (crypto_sign_open) + unwrap (box_seal_open) + AEAD decrypt of all of them.

    The same pass's CPU seconds per bundle (this thread's) are appended to ``cpu``.
    """
    sign_open, seal_open = sodium.crypto_sign_open, sodium.crypto_box_seal_open
    decrypt = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt
    opk, pk, sk = r.origin_public, r.public, r.private
    gc.collect()
    gc.disable()
    try:
        start, start_cpu = time.perf_counter(), time.thread_time()
        for signed, wrap, ct, aad, nonce in zip(
            r.signed, r.wraps, r.cts, r.aads, r.nonces, strict=True
        ):
            sign_open(signed, opk)
            decrypt(ct, aad, nonce, seal_open(wrap, pk, sk))
        cpu.append((time.thread_time() - start_cpu) / len(r.signed))
        return (time.perf_counter() - start) / len(r.signed)
    finally:
        gc.enable()


def raw_sanity(r: RawInputs, bundle: Bundle) -> None:
    cek = sodium.crypto_box_seal_open(r.wraps[0], r.public, r.private)
    payload = json.loads(
        sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(r.cts[0], r.aads[0], r.nonces[0], cek)
    )
    assert payload["origin"] == bundle.origin and payload["kind"] == "seizure"


# --- Rounds ------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, s: Setup, args: argparse.Namespace) -> None:
        self.s = s
        self.args = args
        self.session: aiohttp.ClientSession | None = None
        self.proxy: CountingProxy | None = None
        env = {
            **os.environ,
            "CENMESH_SYNC__INTERVAL_S": "86400",
            "CENMESH_SYNC__JITTER_S": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        for k in [
            k
            for k in env
            if k.startswith("CENMESH_")
            and k not in ("CENMESH_SYNC__INTERVAL_S", "CENMESH_SYNC__JITTER_S")
        ]:
            env.pop(k)  # the nodes run with their defaults, whatever this shell sets
        self.env_b = env
        self.env_a = dict(env)
        self.a = NodeProcess(s.a.name, s.a.home, s.a.url, s.root / "A.log", env=self.env_a, log_level=LOG_LEVEL)
        self.b = NodeProcess(s.b.name, s.b.home, s.b.url, s.root / "B.log", env=self.env_b, log_level=LOG_LEVEL)

    async def sync_b(self) -> tuple[float, dict[str, Any]]:
        """One forced sync round on B (officer API); returns (seconds, answer)."""
        assert self.session is not None
        start = time.perf_counter()
        async with self.session.post(
            self.s.b.url + "/api/v1/sync",
            headers={"Authorization": f"Bearer {self.s.b.token}"},
            timeout=aiohttp.ClientTimeout(total=self.args.timeout),
        ) as resp:
            body = await resp.json()
        elapsed = time.perf_counter() - start
        if resp.status != 200 or set(body.get("peers", {}).values()) != {"ok"}:
            raise RuntimeError(
                f"sync on B failed: HTTP {resp.status} {body}; B log: {self.b.tail()}"
            )
        return elapsed, body

    async def idle_rounds(self, n: int) -> list[tuple[Window, float]]:
        assert self.proxy is not None
        before = stored(self.s.b)
        out = []
        for _ in range(n):
            snap = self.proxy.snapshot()
            elapsed, _ = await self.sync_b()
            await asyncio.sleep(0.01)  # let the proxy finish forwarding the last response
            out.append((self.proxy.since(snap), elapsed))
        if stored(self.s.b) != before:
            raise RuntimeError("an idle round stored bundles: the cursor was not at the end")
        for w, _ in out:
            if any(code >= 400 for code in w.statuses()):
                raise RuntimeError(f"idle round got an error answer: {w.statuses()}")
        return out


@dataclass
class RoundKind:
    """Idle rounds of one kind: feed poll only, or feed poll plus a directory check."""

    rounds: int
    round_trips: int
    bytes_out: int
    bytes_in: int
    head_bytes: int
    feed_ms: float
    sync_ms: float
    directory_statuses: list[int]

    @property
    def bytes(self) -> int:
        return self.bytes_out + self.bytes_in


@dataclass
class IdleSummary:
    stored_at_a: int
    feed_only: RoundKind | None
    with_directory: RoundKind | None
    feed_exchange_bytes: int  # GET /feed request + answer alone, median over every round
    new_connections: int

    @property
    def typical(self) -> RoundKind:
        """What an idle poll costs as the node runs: a feed-only round when there are any."""
        kind = self.feed_only or self.with_directory
        assert kind is not None
        return kind

    @property
    def directory_every_round(self) -> bool:
        """Every round checked the directory (the driver never kept an ETag)."""
        return self.feed_only is None

    @property
    def directory_resent(self) -> int:
        """Directory checks answered 200 (sent in full) instead of 304."""
        return (
            0 if self.with_directory is None else self.with_directory.directory_statuses.count(200)
        )


def summarize_idle(stored_at_a: int, rounds: list[tuple[Window, float]]) -> IdleSummary:
    def med(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    def kind(sel: list[tuple[Window, float]]) -> RoundKind | None:
        if not sel:
            return None
        return RoundKind(
            rounds=len(sel),
            round_trips=max(len(w.requests) for w, _ in sel),
            bytes_out=round(statistics.median(w.c2s for w, _ in sel)),
            bytes_in=round(statistics.median(w.s2c for w, _ in sel)),
            head_bytes=round(statistics.median(w.c2s_head + w.s2c_head for w, _ in sel)),
            feed_ms=med([x for w, _ in sel for x in w.latencies_ms("/feed")]),
            sync_ms=med([t * 1000 for _, t in sel]),
            directory_statuses=[c for w, _ in sel for c in w.statuses("/directory")],
        )

    for w, _ in rounds:
        if w.paths() not in (["/feed"], ["/directory", "/feed"]):
            say(f"  note: an idle round sent {w.paths()}")
    return IdleSummary(
        stored_at_a=stored_at_a,
        feed_only=kind([(w, t) for w, t in rounds if w.count("/directory") == 0]),
        with_directory=kind([(w, t) for w, t in rounds if w.count("/directory") > 0]),
        feed_exchange_bytes=round(statistics.median(w.exchange_bytes("/feed") for w, _ in rounds)),
        new_connections=sum(w.connections for w, _ in rounds),
    )


@dataclass
class IngestRound:
    seconds: float
    window: Window
    cpu_b: float  # B's own process
    cpu_a: float
    cpu_workers: float  # B's verifier worker processes

    @property
    def waiting_for_a_s(self) -> float:
        """Time during which at least one of B's requests was at A (seen by the proxy, answer not yet
        forwarded). B keeps several requests in flight, so this is a sweep over the starts and
        ends, not a sum of the requests' times."""
        events = sorted([(m.t_start, 1) for m in self.window.requests]
                        + [(m.t_end, -1) for m in self.window.responses if m.t_end])
        waiting, open_requests, since = 0.0, 0, 0.0
        for t, step in events:
            if open_requests > 0:
                waiting += t - since
            open_requests, since = max(open_requests + step, 0), t
        return waiting


# --- In-process profile of B's ingest ------------------------------------------------------------


class InlineExecutor(Executor):
    """Runs submitted work at once in the calling thread, so cProfile sees all of it."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut


async def profile_ingest(
    s: Setup, snapshot: Path, count: int, out: Path, top: int
) -> dict[str, Any]:
    """B's sync + ingest of the N bundles in this process, every thread hop made inline, under cProfile."""
    home = s.root / "B-profile"
    shutil.copytree(s.b.home, home, ignore=shutil.ignore_patterns("node.db*"))
    shutil.copy2(snapshot / "node.db", home / "node.db")
    if (snapshot / "node.db-wal").exists():
        shutil.copy2(snapshot / "node.db-wal", home / "node.db-wal")
    conn = connect(home / "node.db")
    try:
        with Transaction(conn):
            peer_store.add_peer(conn, s.a.node_id, s.a.url)  # straight to A, no proxy
    finally:
        conn.close()
    node = open_node(home)
    inline = InlineExecutor()
    node.store._writer.shutdown(wait=True)
    node.store._readers.shutdown(wait=True)
    node.store._writer = inline  # type: ignore[assignment]
    node.store._readers = inline  # type: ignore[assignment]
    real_to_thread = asyncio.to_thread

    async def to_thread_inline(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    transport = HttpTransport(timeout_s=120)
    driver = SyncDriver(node, PeerClient(node.identity, transport, node.clock))
    before = sum(node.store.read_now(bundle_store.count_by_state).values())
    prof = cProfile.Profile()
    asyncio.to_thread = to_thread_inline
    try:
        start = time.perf_counter()
        prof.enable()
        results = await driver.sync_all(force=True)
        prof.disable()
        elapsed = time.perf_counter() - start
    finally:
        asyncio.to_thread = real_to_thread
        await transport.close()
    after = sum(node.store.read_now(bundle_store.count_by_state).values())
    node.store._write_conn.close()
    if after - before != count or set(results.values()) != {"ok"}:
        raise RuntimeError(f"profile run stored {after - before} of {count}: {results}")
    prof.dump_stats(str(out))
    say(
        f"\nprofile of B's sync+ingest in-process (inline threads, under cProfile): {count} bundles in "
        f"{elapsed:.2f} s = {count / elapsed:,.0f}/s (profiler overhead included); stats in {out}"
    )
    for key in ("tottime", "cumulative"):
        say(f"--- top {top} by {key} ---")
        st = pstats.Stats(prof, stream=sys.stderr)
        st.strip_dirs().sort_stats(key).print_stats(top)
    return {"profile_bundles_per_s": round(count / elapsed, 1), "profile_stats": str(out)}


# --- Report -----------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "pynacl": nacl.__version__,
        "aiohttp": aiohttp.__version__,
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def pf_(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    load_start = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="cenmesh-bench-sync-"))
    say(f"working folder {root}")
    n = args.bundles
    bench: Bench | None = None
    try:
        s = build_federation(root, args.receiver)
        bench = Bench(s, args)
        t0 = time.perf_counter()
        sealed = seal_all(s, WARM_BUNDLES + n, seed=args.seed)
        warm, measured = sealed[:WARM_BUNDLES], sealed[WARM_BUNDLES:]
        say(
            f"sealed {len(sealed):,} bundles in {time.perf_counter() - t0:.1f} s "
            f"(mean {statistics.mean(b.size for b in measured):,.0f} bytes)"
        )
        await store_at(s.a.home, warm)

        # A serves its feed; B pulls it through the proxy. Raise A's per-peer rate limit only if the
        # planned number of requests would exceed its default burst (it is not what is measured).
        planned = args.ingest_rounds * (n // 200 + n // 500 + 4) + 4 * (args.idle_rounds + 2) + 20
        if planned > 500:
            bench.env_a["CENMESH_SERVER__REQUESTS_PER_MINUTE"] = str(planned * 2)
            say(f"A's requests_per_minute raised to {planned * 2} for {planned} planned requests")
        proxy = CountingProxy(int(s.a.url.rsplit(":", 1)[1]))
        await proxy.start()
        bench.proxy = proxy
        conn = connect(db_path(s.b))
        try:
            with Transaction(conn):
                peer_store.add_peer(conn, s.a.node_id, f"http://127.0.0.1:{proxy.port}")
        finally:
            conn.close()

        async with aiohttp.ClientSession() as session:
            bench.session = session
            await bench.a.start(session, 60)
            await bench.b.start(session, 60)

            # Warm-up: B takes A's first 1,000 bundles; then idle rounds with 1,000 stored at A.
            await bench.sync_b()
            if stored(s.b) != WARM_BUNDLES:
                raise RuntimeError(f"warm-up: B holds {stored(s.b)}, expected {WARM_BUNDLES}")
            say("idle rounds, 1,000 stored at A")
            idle_small = summarize_idle(stored(s.a), await bench.idle_rounds(args.idle_rounds))

            # The measured bundles arrive at A while both are stopped; B's state is kept to restore per round.
            await bench.b.stop()
            await bench.a.stop()
            await store_at(s.a.home, measured)
            snap = root / "B-snapshot"
            snapshot_db(s.b, snap)
            await bench.a.start(session, 60)

            rin = raw_inputs(measured, s.a, s.b)
            raw_sanity(rin, measured[0])
            raw_slots: list[list[float]] = []
            raw_cpu: list[float] = []

            def raw_slot() -> None:
                raw_slots.append([raw_pass(rin, raw_cpu) for _ in range(args.raw_passes)])
                say(f"  raw verify+open: {1 / statistics.median(raw_slots[-1]):,.0f}/s")

            raw_slot()
            rounds: list[IngestRound] = []
            for k in range(args.ingest_rounds):
                if k:
                    await bench.b.stop()
                    restore_db(s.b, snap)
                await bench.b.start(session, 60)
                await asyncio.sleep(0.2)  # let B settle after start-up
                before = stored(s.b)
                cpu_b, cpu_a = cpu_seconds(bench.b.pid), cpu_seconds(bench.a.pid)
                cpu_w = children_cpu_seconds(bench.b.pid)
                snapc = proxy.snapshot()
                elapsed, _ = await bench.sync_b()
                await asyncio.sleep(0.01)
                w = proxy.since(snapc)
                cpu_b, cpu_a = cpu_seconds(bench.b.pid) - cpu_b, cpu_seconds(bench.a.pid) - cpu_a
                cpu_w = children_cpu_seconds(bench.b.pid) - cpu_w
                states = bundle_states(s.b)
                if (
                    sum(states.values()) - before != n
                    or states.get("readable", 0) != WARM_BUNDLES + n
                ):
                    raise RuntimeError(
                        f"ingest round {k + 1}: B holds {states} (expected {n} more, all readable)"
                    )
                if any(code >= 400 for code in w.statuses()):
                    raise RuntimeError(
                        f"ingest round {k + 1}: error answers {sorted(set(w.statuses()))}"
                    )
                rounds.append(IngestRound(elapsed, w, cpu_b, cpu_a, cpu_w))
                say(
                    f"ingest round {k + 1}: {n:,} bundles in {elapsed:.2f} s = {n / elapsed:,.0f}/s "
                    f"(B cpu {cpu_b:.2f} s + workers {cpu_w:.2f} s, A cpu {cpu_a:.2f} s, a request at A for {rounds[-1].waiting_for_a_s:.2f} s, "
                    f"{len(w.requests)} requests)"
                )
                raw_slot()

            say("idle rounds after ingest")
            idle_mid = summarize_idle(stored(s.a), await bench.idle_rounds(args.idle_rounds))
            await bench.b.stop()

            profile_info: dict[str, Any] = {}
            if (
                args.profile
            ):  # before the synthetic rows, so the profiled copy of B pulls exactly the N bundles
                profile_info = await profile_ingest(
                    s, snap, n, Path(args.profile).resolve(), args.profile_top
                )

            # The large store: synthetic rows at A, B's cursor at their end (both stopped meanwhile).
            await bench.a.stop()
            t0 = time.perf_counter()
            top = add_synthetic(s.a, s.b, args.idle_store, measured[0])
            epoch, top = a_feed_top(s.a)
            set_cursor(s.b, s.a.node_id, epoch, top)
            say(
                f"A filled to {stored(s.a):,} bundles in {time.perf_counter() - t0:.1f} s; B's cursor set to {top}"
            )
            await bench.a.start(session, 60)
            await bench.b.start(session, 60)
            say(f"idle rounds, {stored(s.a):,} stored at A")
            idle_large = summarize_idle(stored(s.a), await bench.idle_rounds(args.idle_rounds))
            cold: tuple[Window, float] | None = None
            if args.cold_gap > 0:
                say(f"one more idle round after {args.cold_gap:g} s without traffic")
                await asyncio.sleep(args.cold_gap)
                cold = (await bench.idle_rounds(1))[0]
            await bench.b.stop()
            await bench.a.stop()
        await proxy.close()
    finally:
        if bench is not None:
            bench.b.kill_now()
            bench.a.kill_now()
        if args.keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    # --- Numbers ---
    bundle_bytes = sum(b.size for b in measured)
    ingest_rates = [n / r.seconds for r in rounds]
    ingest_per_s = statistics.median(ingest_rates)
    all_raw = [t for slot in raw_slots for t in slot]
    raw_per_s = 1 / statistics.median(all_raw)
    mid = rounds[sorted(range(len(rounds)), key=lambda i: ingest_rates[i])[len(rounds) // 2]]
    w = mid.window
    wire_in = w.s2c
    overhead = wire_in / bundle_bytes
    small, large = idle_small.typical, idle_large.typical
    rt_small, rt_large = small.round_trips, large.round_trips
    growth = large.bytes - small.bytes
    ratio = ingest_per_s / raw_per_s
    cpu_us = statistics.median(r.cpu_b for r in rounds) / n * 1e6
    workers_us = statistics.median(r.cpu_workers for r in rounds) / n * 1e6
    raw_cpu_us = statistics.median(raw_cpu) * 1e6
    cpu_ratio = raw_cpu_us / (cpu_us + workers_us)

    print(
        f"cenmesh sync benchmark: A -> B over HTTP on 127.0.0.1 through a counting proxy; "
        f"B = {args.receiver} recipient in its own process"
    )
    print(
        f"Python {platform.python_version()}, PyNaCl {nacl.__version__}, aiohttp {aiohttp.__version__}, "
        f"SQLite {sqlite3.sqlite_version}, {cpu_model()} x{os.cpu_count()}; load average {load_start:.2f} at start, "
        f"{os.getloadavg()[0]:.2f} now"
    )
    print(
        f"{n:,} seizure bundles (A -> nodes:[B], 2 recipients), canonical size mean {bundle_bytes / n:,.0f} B "
        f"(min {min(b.size for b in measured):,}, max {max(b.size for b in measured):,}); "
        f"B already held {WARM_BUNDLES:,} older ones"
    )
    print()
    head = (
        f"{'ingest (one forced sync round)':<44} {'seconds':>8} {'bundles/s':>10} {'B cpu s':>8} {'workers':>8} {'A cpu s':>8} "
        f"{'at A s':>9} {'requests':>9}"
    )
    print(head)
    print("-" * len(head))
    for i, r in enumerate(rounds):
        print(
            f"{'round ' + str(i + 1):<44} {r.seconds:>8.2f} {n / r.seconds:>10,.0f} {r.cpu_b:>8.2f} {r.cpu_workers:>8.2f} {r.cpu_a:>8.2f} "
            f"{r.waiting_for_a_s:>9.2f} {len(r.window.requests):>9}"
        )
    print(f"{'median':<44} {'':>8} {ingest_per_s:>10,.0f}")
    slot_rates = [1 / statistics.median(slot) for slot in raw_slots]
    print(
        f"{'raw verify+open (libsodium only, 1 core)':<44} {'':>8} {raw_per_s:>10,.0f}   "
        f"(median of {len(all_raw)} passes over the {n:,} bundles; per slot {', '.join(f'{x:,.0f}' for x in slot_rates)})"
    )
    print(f"{'ratio ingest / raw':<44} {'':>8} {ratio:>10.2f}")
    print(
        f"{'same in CPU time (less sensitive to load)':<44} {'':>8} {cpu_ratio:>10.2f}   "
        f"(raw {raw_cpu_us:,.0f} us / B's {cpu_us + workers_us:,.0f} us of CPU per bundle: {cpu_us:,.0f} in its process, "
        f"{workers_us:,.0f} in its verifier workers)"
    )
    print()
    print(
        f"wire, median ingest round: {len(w.requests)} requests ({w.count('/feed')} feed, {w.count('/fetch')} fetch, "
        f"{w.count('/directory')} directory), {w.connections} new TCP connection(s)"
    )
    print(
        f"  A -> B bytes                      {wire_in:>12,}   HTTP headers {w.s2c_head:,}; feed answers "
        f"{w.answer_bytes('/feed'):,}, fetch answers {w.answer_bytes('/fetch'):,}, directory {w.answer_bytes('/directory'):,}"
    )
    print(f"  bundles' own canonical bytes      {bundle_bytes:>12,}")
    print(
        f"  overhead ratio A -> B             {overhead:>12.3f}   ({(wire_in - bundle_bytes) / n:,.1f} B per bundle)"
    )
    print(
        f"  B -> A bytes                      {w.c2s:>12,}   HTTP headers {w.c2s_head:,}; both ways / bundles = "
        f"{w.total / bundle_bytes:.3f}"
    )
    print(
        f"  B's CPU busy during the round     {mid.cpu_b / mid.seconds:>12.0%}   (its workers' {mid.cpu_workers / mid.seconds:.0%}, "
        f"A's {mid.cpu_a / mid.seconds:.0%}, of one core; a request of B's "
        f"was at A during {mid.waiting_for_a_s / mid.seconds:.0%} of the round)"
    )
    print()
    head = (
        f"{'idle poll (nothing new)':<28} {'stored at A':>11} {'rounds':>6} {'round trips':>11} {'bytes out':>9} "
        f"{'bytes in':>8} {'total':>6} {'headers':>7} {'feed ms':>8} {'sync ms':>8}  directory answers"
    )
    print(head)
    print("-" * len(head))
    for x in (idle_small, idle_mid, idle_large):
        for label, rk in (("feed only", x.feed_only), ("feed + directory check", x.with_directory)):
            if rk is None:
                continue
            codes = (
                ", ".join(
                    f"{c}x{rk.directory_statuses.count(c)}"
                    for c in sorted(set(rk.directory_statuses))
                )
                or "-"
            )
            print(
                f"{label:<28} {x.stored_at_a:>11,} {rk.rounds:>6} {rk.round_trips:>11} {rk.bytes_out:>9,} "
                f"{rk.bytes_in:>8,} {rk.bytes:>6,} {rk.head_bytes:>7,} {rk.feed_ms:>8.2f} {rk.sync_ms:>8.1f}  {codes}"
            )
    print(
        f"GET /feed exchange alone: {idle_small.feed_exchange_bytes:,} B at {idle_small.stored_at_a:,}, "
        f"{idle_mid.feed_exchange_bytes:,} B at {idle_mid.stored_at_a:,}, "
        f"{idle_large.feed_exchange_bytes:,} B at {idle_large.stored_at_a:,}"
    )
    print(
        "(round trips = HTTP requests; bytes = HTTP headers + bodies through the proxy, TCP/IP not counted; "
        "rounds ran back to back, so the kept-alive connection was reused "
        f"({idle_small.new_connections + idle_mid.new_connections + idle_large.new_connections} new connections); "
        "feed ms = request seen -> answer forwarded, at the proxy; sync ms = B's whole POST /api/v1/sync)"
    )
    if cold is not None:
        cw = cold[0]
        print(
            f"after {args.cold_gap:g} s without traffic (aiohttp's client keep-alive is 15 s by default): "
            f"{len(cw.requests)} round trip(s) {cw.paths()}, {cw.connections} new TCP connection(s) "
            f"(+1 round trip for the TCP handshake each, +1 or 2 for TLS), {cw.total:,} bytes of HTTP"
        )
    if any(
        x.directory_every_round or x.directory_resent for x in (idle_small, idle_mid, idle_large)
    ):
        print(
            f"NOTE: the directory was checked on {'every' if idle_large.directory_every_round else 'some'} idle "
            f"round and sent in full (200) {idle_small.directory_resent + idle_mid.directory_resent + idle_large.directory_resent} "
            f"times: B does not keep A's ETag, so the If-None-Match / 304 path never happens "
            f"(expected: one check every sync.directory_every rounds, answered 304)"
        )
    print()
    meets_ratio = ratio >= TARGET_RATIO_INGEST
    meets_wire = overhead <= TARGET_WIRE_OVERHEAD
    meets_rt = rt_small == rt_large == TARGET_IDLE_ROUND_TRIPS
    meets_bytes = max(small.bytes, large.bytes) < TARGET_IDLE_BYTES
    meets_flat = rt_large <= rt_small and growth <= IDLE_GROWTH_ALLOWANCE
    print(
        f"target: ratio_ingest_vs_raw >= {TARGET_RATIO_INGEST}: {ratio:.2f} -> {pf_(meets_ratio)}"
    )
    print(
        f"target: wire_overhead_ratio <= {TARGET_WIRE_OVERHEAD}: {overhead:.3f} -> {pf_(meets_wire)}"
    )
    print(
        f"target: idle poll is {TARGET_IDLE_ROUND_TRIPS} round trip: {rt_small} at {idle_small.stored_at_a:,}, "
        f"{rt_large} at {idle_large.stored_at_a:,} -> {pf_(meets_rt)}"
        + (
            f" (rounds that also check the directory: {idle_large.with_directory.round_trips})"
            if idle_large.with_directory and idle_large.feed_only
            else ""
        )
    )
    print(
        f"target: idle poll < {TARGET_IDLE_BYTES} bytes: {small.bytes:,} at {idle_small.stored_at_a:,}, "
        f"{large.bytes:,} at {idle_large.stored_at_a:,} -> {pf_(meets_bytes)}"
    )
    print(
        f"target: idle poll does not grow with the store: {growth:+d} bytes from {idle_small.stored_at_a:,} to "
        f"{idle_large.stored_at_a:,} (allowance {IDLE_GROWTH_ALLOWANCE} for longer seq numbers), round trips "
        f"{rt_small} -> {rt_large}, feed ms {small.feed_ms:.2f} -> {large.feed_ms:.2f} -> {pf_(meets_flat)}"
    )

    summary: dict[str, Any] = {
        "bundles": n,
        "receiver": args.receiver,
        "ingest_per_s": round(ingest_per_s, 1),
        "ingest_per_s_rounds": [round(x, 1) for x in ingest_rates],
        "raw_per_s": round(raw_per_s, 1),
        "raw_per_s_slots": [round(x, 1) for x in slot_rates],
        "ratio_ingest_vs_raw": round(ratio, 3),
        "ingest_b_cpu_share": round(mid.cpu_b / mid.seconds, 3),
        "ingest_b_cpu_us_per_bundle": round(cpu_us, 1),  # B's own process
        "ingest_b_workers_cpu_us_per_bundle": round(workers_us, 1),
        "raw_cpu_us_per_bundle": round(raw_cpu_us, 1),
        "ratio_b_cpu_vs_raw": round(cpu_ratio, 3),
        "ingest_waiting_for_a_share": round(mid.waiting_for_a_s / mid.seconds, 3),
        "wire_bytes_a_to_b": wire_in,
        "wire_header_bytes_a_to_b": w.s2c_head,
        "wire_bytes_b_to_a": w.c2s,
        "bundle_bytes": bundle_bytes,
        "mean_bundle_bytes": round(bundle_bytes / n, 1),
        "wire_overhead_ratio": round(overhead, 4),
        "wire_overhead_ratio_both_ways": round(w.total / bundle_bytes, 4),
        "wire_overhead_bytes_per_bundle": round((wire_in - bundle_bytes) / n, 1),
        "ingest_requests": {
            "feed": w.count("/feed"),
            "fetch": w.count("/fetch"),
            "directory": w.count("/directory"),
        },
        "idle_poll_bytes": max(small.bytes, large.bytes),
        "idle_poll_round_trips": max(rt_small, rt_large),
        "idle_poll_bytes_1k": small.bytes,
        "idle_poll_bytes_100k": large.bytes,
        "idle_poll_round_trips_1k": rt_small,
        "idle_poll_round_trips_100k": rt_large,
        "idle_poll_bytes_after_ingest": idle_mid.typical.bytes,
        "idle_feed_exchange_bytes_1k": idle_small.feed_exchange_bytes,
        "idle_feed_exchange_bytes_100k": idle_large.feed_exchange_bytes,
        "idle_poll_feed_ms_1k": round(small.feed_ms, 3),
        "idle_poll_feed_ms_100k": round(large.feed_ms, 3),
        "idle_poll_with_directory_round_trips": idle_large.with_directory.round_trips
        if idle_large.with_directory
        else None,
        "idle_poll_with_directory_bytes": idle_large.with_directory.bytes
        if idle_large.with_directory
        else None,
        "idle_directory_every_round": idle_small.directory_every_round
        or idle_large.directory_every_round,
        "idle_directory_sent_in_full": idle_small.directory_resent
        + idle_mid.directory_resent
        + idle_large.directory_resent,
        "idle_poll_after_gap": None
        if cold is None
        else {
            "gap_s": args.cold_gap,
            "round_trips": len(cold[0].requests),
            "new_connections": cold[0].connections,
            "bytes": cold[0].total,
        },
        "idle_store_small": idle_small.stored_at_a,
        "idle_store_large": idle_large.stored_at_a,
        "targets": {
            "ratio_ingest_vs_raw": TARGET_RATIO_INGEST,
            "wire_overhead_ratio": TARGET_WIRE_OVERHEAD,
            "idle_poll_round_trips": TARGET_IDLE_ROUND_TRIPS,
            "idle_poll_bytes_below": TARGET_IDLE_BYTES,
        },
        "meets": {
            "ratio_ingest_vs_raw": meets_ratio,
            "wire_overhead_ratio": meets_wire,
            "idle_poll_round_trips": meets_rt,
            "idle_poll_bytes": meets_bytes,
            "idle_poll_flat": meets_flat,
        },
        "meets_targets": meets_ratio and meets_wire and meets_rt and meets_bytes and meets_flat,
        "ingest_rounds": args.ingest_rounds,
        "raw_passes_per_slot": args.raw_passes,
        **profile_info,
        "machine": machine(),
    }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench sync", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--bundles", type=int, help="bundles moved from A to B (default 10,000; --quick 2,000)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke: 2,000 bundles, 10,000 stored for the large idle poll, 1 ingest round",
    )
    parser.add_argument(
        "--idle-store",
        type=int,
        help="bundles stored at A for the large idle poll (default 100,000; --quick 10,000)",
    )
    parser.add_argument(
        "--ingest-rounds",
        type=int,
        help="ingest rounds, B restored in between (default 3; --quick 1)",
    )
    parser.add_argument(
        "--raw-passes", type=int, help="raw passes over all bundles per slot (default 3; --quick 2)"
    )
    parser.add_argument(
        "--idle-rounds",
        type=int,
        default=11,
        help="forced rounds per idle measurement (default 11: includes a directory check)",
    )
    parser.add_argument(
        "--cold-gap",
        type=float,
        help="seconds without traffic before one last idle round, to see whether the connection "
        "survives (default 16; --quick 0 = skip)",
    )
    parser.add_argument(
        "--receiver",
        choices=["national", "hub"],
        default="national",
        help="B is a national recipient (default) or the region's hub (also a recipient)",
    )
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds allowed for one sync call (default 600)"
    )
    parser.add_argument(
        "--total-timeout",
        type=float,
        default=3600,
        help="seconds allowed for the whole run (default 3600)",
    )
    parser.add_argument("--seed", type=int, default=20240601, help="seed of the record generator")
    parser.add_argument(
        "--profile",
        metavar="FILE.pstats",
        help="afterwards, run B's sync+ingest in this process under cProfile (threads made inline); "
        "top functions go to stderr",
    )
    parser.add_argument(
        "--profile-top", type=int, default=30, help="functions shown per profile listing"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (node homes and logs)"
    )
    args = parser.parse_args(argv)
    args.bundles = args.bundles or (2_000 if args.quick else 10_000)
    args.idle_store = args.idle_store or (10_000 if args.quick else 100_000)
    args.ingest_rounds = args.ingest_rounds or (1 if args.quick else 3)
    args.raw_passes = args.raw_passes or (2 if args.quick else 3)
    if args.cold_gap is None:
        args.cold_gap = 0.0 if args.quick else 16.0
    if args.bundles < 1 or args.ingest_rounds < 1 or args.raw_passes < 1 or args.idle_rounds < 2:
        parser.error(
            "--bundles, --ingest-rounds and --raw-passes must be positive, --idle-rounds at least 2"
        )
    try:
        summary = asyncio.run(asyncio.wait_for(run(args), args.total_timeout))
    except (TimeoutError, RuntimeError, OSError, aiohttp.ClientError) as exc:
        say(f"bench sync failed: {type(exc).__name__}: {exc}")
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:2000], "machine": machine()}))
        return 1
    print(json.dumps(summary, separators=(", ", ": ")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
