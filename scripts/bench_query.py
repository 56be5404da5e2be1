"""Benchmark the officers' search on a store of a million records, through the real API.

Run it as ``scripts/bench query [--records N] [--quick] [--requests N] [--rebuild]``.

Set-up: one national node's folder (``cenmesh init``'s admin function) in
./bench-run/query-N/, with 26 other administrations in its directory (one per
country that has a port in data/rilo_regions.json, real signed
descriptors) and N synthetic but realistic records written straight into
its SQLite: ``records`` rows (seizures ~92%, alerts ~6%, messages ~2%, plus
the feedback answering ~45% of the alerts and the retraction of ~0.4% of the
records) and the search index through ``node.store.search_index.write_entries``,
in transactions of 20,000 rows. No bundles are made: search never reads them.
Distributions: categories weighted as in WCO's annual reports (IPR, tobacco
and drugs lead), HS codes and goods per category from small vocabularies,
departures by category (drugs from the Andean countries and Brazil,
counterfeits from China and Hong Kong, ...), destination mostly the seizing
administration's own country, offices the real UN/LOCODEs of that country,
the transport mode from the office's kind, 30% of routes with transit
countries, dates from 2019-01-01 to today weighted towards recent years, and
``created`` a few days after the seizure. The folder is kept and reused by
later runs with the same N (``--rebuild`` makes it again).

Measured: the node's real aiohttp application (``node.runtime.build_app``,
``scheduled=False``, ``node.server.make_runner``) on 127.0.0.1, queried over
HTTP by an analyst's bearer token, one request at a time, after a warm-up.
Three kinds of officer search, with parameters drawn from the data:

  a. text + HS prefix + date range   q=cocaine&hs=2939&since=2021-02-01&until=2021-07-31
  b. route                           route=CO-NL (departure + destination)
  c. origin + category               origin=<node id or country>&category=tobacco

Each answer carries the total (capped at 10,000), counts by category and the
first page of 50 records. Latency is the client's wall time per request
(connection kept alive). Target: p95 < 50 ms over all requests.

The last line printed is one JSON object. The exit status is 0 whether or not
the target is met (this is a measurement, not a test); 1 when the run failed.
"""

# ruff: noqa: E402  (the imports below follow the sys.path set-up)

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import multiprocessing
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp
from aiohttp import web
from benchlib import free_port  # scripts/ is on the path when a script runs

from crypto.descriptor import make_descriptor
from crypto.keys import generate_encryption_key, generate_identity
from node import admin, auth
from node.runtime import build_app, open_node
from node.search import SearchQuery, explain
from node.server import make_runner
from node.store import directory as dir_store
from node.store import search_index
from node.store.db import Transaction, connect
from protocol.descriptor import EncKey

TARGET_P95_MS = 50.0
DEFAULT_RECORDS = 1_000_000
QUICK_RECORDS = 50_000
BATCH = 20_000
DAY_MS = 24 * 3600 * 1000
FIRST_DAY = datetime.date(2019, 1, 1)
FORMAT_VERSION = "6"  # bump when the generator changes, so cached stores are rebuilt
REGIONS_FILE = ROOT / "data" / "rilo_regions.json"


def say(*parts: object) -> None:
    """Progress on stderr (stdout is the report)."""
    print(*parts, file=sys.stderr, flush=True)


# --- Vocabulary -------------------------------------------------------------------------------

CATEGORY_WEIGHTS = {
    "ipr": 30, "tobacco": 14, "drugs": 14, "medicines": 9, "revenue": 7, "alcohol": 5, "environment": 5,
    "other": 6, "currency": 3, "weapons": 3, "cultural-heritage": 2, "explosives": 1,
}
# (description, HS code, brands)
GOODS: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "ipr": [
        ("sports shoes bearing counterfeit trademarks", "640411", ("Nike", "Adidas", "Puma")),
        ("handbags with counterfeit logos", "420221", ("Louis Vuitton", "Gucci", "Chanel", "Prada")),
        ("watches with counterfeit brand names", "910211", ("Rolex", "Omega", "Cartier")),
        ("phone chargers with fake certification marks", "850440", ("Apple", "Samsung")),
        ("headphones, counterfeit", "851830", ("Apple", "Beats", "Sony")),
        ("toys with counterfeit character licences", "950300", ("Lego", "Disney", "Mattel")),
        ("T-shirts and jerseys with counterfeit club crests", "610910", ("Adidas", "Nike", "Puma")),
        ("perfume in counterfeit packaging", "330300", ("Chanel", "Dior")),
        ("car spare parts with counterfeit trademarks", "870899", ("Toyota", "Bosch")),
        ("sunglasses, counterfeit", "900410", ("Ray-Ban", "Oakley")),
    ],
    "tobacco": [
        ("cigarettes without tax stamps", "24022090", ("Marlboro", "Winston", "Cheap White")),
        ("counterfeit cigarettes", "24022090", ("Marlboro", "Camel", "L&M")),
        ("waterpipe tobacco, undeclared", "240311", ()),
        ("raw tobacco leaves", "240120", ()),
        ("heated tobacco sticks", "240419", ("IQOS Heets",)),
    ],
    "drugs": [
        ("cocaine hydrochloride in vacuum-sealed bricks", "293979", ()),
        ("cannabis herb", "121190", ()),
        ("cannabis resin", "130190", ()),
        ("methamphetamine crystals", "293390", ()),
        ("heroin", "293911", ()),
        ("captagon tablets", "293990", ()),
        ("khat leaves", "121190", ()),
    ],
    "medicines": [
        ("surgical face masks, counterfeit CE marking", "630790", ("3M",)),
        ("falsified antimalarial tablets (artemether/lumefantrine)", "300490", ()),
        ("unregistered tramadol 225 mg tablets", "300490", ()),
        ("counterfeit insulin pens, broken cold chain", "300431", ("Novo Nordisk",)),
        ("erectile dysfunction tablets, falsified", "300490", ("Viagra",)),
        ("COVID-19 test kits without approval", "382219", ()),
    ],
    "revenue": [
        ("mobile phones, undervalued by 80%", "851713", ("Samsung", "Apple", "Xiaomi")),
        ("rice declared as animal feed", "100630", ()),
        ("used cars, misdeclared year of manufacture", "870323", ("Toyota", "Honda")),
        ("textiles, misdeclared origin", "520812", ()),
        ("frozen chicken, undervalued", "020714", ()),
    ],
    "alcohol": [
        ("whisky, undervalued and mislabelled", "220830", ("Johnnie Walker",)),
        ("ethanol declared as solvent", "220710", ()),
        ("vodka without excise stamps", "220860", ()),
        ("counterfeit champagne", "220410", ("Moet",)),
    ],
    "environment": [
        ("pangolin scales", "05080000", ()),
        ("ivory carvings", "960110", ()),
        ("rosewood logs without CITES permit", "440349", ()),
        ("ozone-depleting refrigerant R-22", "290371", ()),
        ("shark fins", "030571", ()),
        ("live reptiles", "010620", ()),
    ],
    "other": [
        ("counterfeit vehicle brake pads", "870830", ("Toyota",)),
        ("used tyres, prohibited import", "401220", ()),
        ("precursor chemicals", "291411", ()),
        ("gold bars, undeclared", "710812", ()),
    ],
    "currency": [
        ("undeclared cash in US dollar banknotes", "490700", ()),
        ("undeclared euro banknotes", "490700", ()),
    ],
    "weapons": [
        ("pistol parts declared as machine parts", "930591", ()),
        ("ammunition, 9 mm", "930630", ()),
        ("pistols", "930200", ()),
        ("firearm silencers", "930599", ()),
    ],
    "cultural-heritage": [
        ("terracotta figurines, suspected looted", "970500", ()),
        ("ancient coins", "970500", ()),
        ("manuscripts", "970110", ()),
    ],
    "explosives": [
        ("detonators declared as electrical fittings", "360300", ()),
        ("fireworks, undeclared", "360410", ()),
    ],
}
DEPARTURES: dict[str, dict[str, int]] = {
    "ipr": {"CN": 45, "HK": 15, "TR": 10, "AE": 8, "VN": 5, "IN": 5, "TH": 4, "MY": 3, "SG": 2},
    "tobacco": {"AE": 30, "CN": 15, "BY": 10, "VN": 10, "PY": 10, "UA": 8, "TR": 7},
    "drugs": {"CO": 25, "EC": 20, "BR": 15, "PE": 8, "PY": 4, "NL": 6, "MX": 10, "AF": 4, "MM": 4, "LB": 4},
    "medicines": {"IN": 40, "CN": 35, "PK": 10, "AE": 8, "TR": 7},
    "revenue": {"CN": 50, "IN": 10, "TR": 10, "AE": 10, "VN": 10, "JP": 10},
    "alcohol": {"GB": 20, "FR": 20, "ZA": 10, "AE": 10, "CN": 10, "MX": 10},
    "environment": {"NG": 20, "CM": 15, "CD": 10, "MZ": 10, "KE": 10, "TZ": 10, "MG": 10, "BR": 5},
    "other": {"CN": 40, "DE": 10, "JP": 10, "US": 10, "TR": 10, "AE": 10},
    "currency": {"AE": 20, "US": 20, "GB": 10, "CN": 10, "NG": 10, "LB": 10, "TR": 10},
    "weapons": {"US": 30, "TR": 20, "CZ": 10, "UA": 10, "CN": 10},
    "cultural-heritage": {"SY": 20, "IQ": 20, "EG": 15, "PE": 15, "ML": 10, "TR": 10},
    "explosives": {"CN": 40, "TR": 20, "RU": 20},
}
MARKETS = ["NL", "BE", "ES", "GB", "US", "DE", "FR", "IT", "AU"]
TRANSITS = ["AE", "SG", "MA", "PA", "ES", "TR", "TG", "BJ", "HK", "NL", "BE", "MY", "LK", "QA"]
# How many records each administration shares, relative to the others.
ORIGIN_WEIGHTS = {
    "NL": 8, "BE": 6, "DE": 7, "ES": 6, "FR": 7, "GB": 7, "US": 10, "MX": 3, "BR": 4, "EC": 2, "CO": 3, "DO": 1,
    "KE": 2, "ET": 1, "MA": 2, "TR": 4, "AE": 4, "QA": 1, "SG": 3, "CN": 4, "HK": 4, "KR": 3, "MY": 2, "IN": 4,
    "AU": 3, "GR": 2,
}
MODES_BY_PORT = {"sea": ["sea"], "air": ["air", "air", "express", "passenger"], "postal": ["postal", "express"],
                 "land": ["road", "road", "rail"]}
DETECTION = ["risk-profiling", "risk-profiling", "intelligence", "routine", "random", "x-ray", "x-ray", "dog"]
CONCEALMENT = [
    "declared as textiles", "hidden behind cartons of {goods}", "false wall in the container",
    "inside spare tyres", "mixed with legitimate cargo", "under layers of frozen fish", "in hollowed furniture",
    "in the vehicle's fuel tank", "inside a suitcase lining", "false bottom in machinery crates",
    "misdeclared as household effects", "body-packed by a passenger", "in postal parcels labelled as gifts",
    "in banana boxes", "inside industrial rollers", "among pineapples", "in coffee sacks", "in the ceiling panels",
    "", "", "",
]
_NARRATIVE_TEXT = (
    "the consignment was selected by the risk engine on the basis of the route the declared value and the "
    "consignee's history x-ray images showed anomalies in density officers examined the goods in the presence "
    "of the agent samples were sent to the laboratory the rights holder confirmed the goods are counterfeit the "
    "importer could not produce a licence and the goods were detained pending investigation further consignments "
    "to the same consignee are expected the shipping line has been informed and the bill of lading was checked "
    "against the manifest a controlled delivery was considered the dog indicated on the second pallet"
)
NARRATIVE = _NARRATIVE_TEXT.split()
MESSAGE_SUBJECTS = ["Request for information", "Modus operandi update", "Joint operation planning",
                    "Trend report", "Contact point change", "Follow-up on alert", "Risk indicators"]
ALERT_ACTIONS = ["examine", "hold", "monitor", "inform"]
URGENCY = ["routine", "routine", "priority", "immediate"]
TLP = ["GREEN", "AMBER", "AMBER", "AMBER", "AMBER+STRICT", "RED", "CLEAR"]


def load_ports() -> dict[str, list[tuple[str, str, str]]]:
    """Country -> [(locode, name, kind)] of the real offices in rilo_regions.json."""
    data = json.loads(REGIONS_FILE.read_text())
    ports: dict[str, list[tuple[str, str, str]]] = {}
    for p in data["major_ports"]:
        ports.setdefault(p["country"], []).append((p["code"], p["name"], p["kind"]))
    return ports


def region_of(country: str) -> str:
    data = json.loads(REGIONS_FILE.read_text())
    for r in data["rilos"]:
        if country in r["members"]:
            return str(r["code"])
    return "WE"


_ISO6346 = {c: v for c, v in zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                                   [v for v in range(10, 39) if v % 11], strict=True)}


def container_number(rnd: random.Random) -> str:
    """An ISO 6346 container number with its check digit."""
    stem = rnd.choice(["MSCU", "MAEU", "CMAU", "HLXU", "TGHU", "OOLU", "CSQU"]) + f"{rnd.randrange(10**6):06d}"
    total = sum((_ISO6346[c] if c.isalpha() else int(c)) * 2**i for i, c in enumerate(stem))
    return stem + str(total % 11 % 10)


def awb_number(rnd: random.Random) -> str:
    """An IATA air waybill number: airline prefix, serial, serial mod 7."""
    serial = rnd.randrange(10**7)
    return f"{rnd.choice(['176', '071', '157', '235', '618', '020'])}{serial:07d}{serial % 7}"


def _pick(rnd: random.Random, weights: dict[str, int]) -> str:
    return rnd.choices(list(weights), weights=list(weights.values()))[0]


class Generator:
    """Deterministic synthetic records for the administrations in ``origins`` (country -> node id)."""

    def __init__(self, seed: int, origins: dict[str, str], today: datetime.date) -> None:
        self.seed = seed
        self.rnd = random.Random(seed)
        self.origins = origins
        self.ports = load_ports()
        self.days = (today - FIRST_DAY).days
        self.today = today
        self.now_ms = int(time.time() * 1000)
        self.origin_countries = [c for c in ORIGIN_WEIGHTS if c in origins]
        self.origin_weights = [ORIGIN_WEIGHTS[c] for c in self.origin_countries]
        self.categories = list(CATEGORY_WEIGHTS)
        self.category_weights = list(CATEGORY_WEIGHTS.values())
        # A pool, so that the same boxes and waybills turn up in several records, as they do.
        self.containers = [container_number(self.rnd) for _ in range(20_000)]
        self.awbs = [awb_number(self.rnd) for _ in range(20_000)]

    def batch(self, index: int, count: int) -> tuple[list[tuple[Any, ...]], list[search_index.IndexEntry]]:
        """Batch ``index`` (the same whatever the order batches are made in): ``records`` rows, index entries.

        Besides the records: the feedback answering ~45% of the alerts and
        the retraction of ~0.4% of the records.
        """
        self.rnd = rnd = random.Random(self.seed * 1_000_003 + index)
        origin_ids = list(self.origins.values())
        rows: list[tuple[Any, ...]] = []
        entries: list[search_index.IndexEntry] = []
        for _ in range(count):
            kind, origin, created, record = self.record()
            retracted = rnd.random() < 0.004
            feedback = kind == "alert" and rnd.random() < 0.45
            rows.append((record["id"], origin, kind, 1, _fake_bundle_id(rnd), "federation", created, None,
                         int(retracted), json.dumps(record, sort_keys=True)))
            if feedback:
                answer = {"id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)), "version": 1,
                          "ref": record["id"], "outcome": rnd.choice(["acknowledged", "examined-seized", "examined-clear"])}
                rows.append((answer["id"], rnd.choice(origin_ids), "feedback", 1, _fake_bundle_id(rnd),
                             f"nodes:{origin}", created + rnd.randrange(1, 5 * DAY_MS), record["id"], 0,
                             json.dumps(answer, sort_keys=True)))
            if retracted:
                ret = {"id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)), "version": 1,
                       "ref": record["id"], "reason": "recorded twice"}
                rows.append((ret["id"], origin, "retract", 1, _fake_bundle_id(rnd), "federation",
                             created + rnd.randrange(1, 30 * DAY_MS), record["id"], 0, json.dumps(ret, sort_keys=True)))
            entries.append(search_index.IndexEntry(record["id"], kind, origin, created, record, retracted, feedback))
        return rows, entries

    def _date(self) -> datetime.date:
        # More records in recent years: the density grows linearly with time.
        return FIRST_DAY + datetime.timedelta(days=int(self.days * self.rnd.random() ** 0.6))

    def _words(self, low: int, high: int) -> str:
        text = " ".join(self.rnd.choice(NARRATIVE) for _ in range(self.rnd.randint(low, high)))
        return text[:1].upper() + text[1:] + "."

    def record(self) -> tuple[str, str, int, dict[str, Any]]:
        """(kind, origin node id, created ms, record)."""
        rnd = self.rnd
        country = rnd.choices(self.origin_countries, weights=self.origin_weights)[0]
        category = rnd.choices(self.categories, weights=self.category_weights)[0]
        description, hs, brands = rnd.choice(GOODS[category])
        day = self._date()
        created_day = min(self.today, day + datetime.timedelta(days=int(rnd.expovariate(1 / 4))))
        created = int(datetime.datetime.combine(created_day, datetime.time(), tzinfo=datetime.UTC).timestamp() * 1000)
        created += rnd.randrange(DAY_MS)
        if created > self.now_ms:  # today's records: made before now
            created = self.now_ms - rnd.randrange(1, 3_600_000)
        commodity: dict[str, Any] = {"description": description, "hs_code": hs}
        if brands:
            commodity["brand"] = rnd.choice(brands)
            if rnd.random() < 0.4:
                commodity["rights_holder"] = commodity["brand"] + " (registered rights holder)"
        rid = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        roll = rnd.random()
        if roll < 0.06:
            dest = rnd.choice(MARKETS + [country] * 4)
            ports = self.ports.get(dest)
            consignment: dict[str, Any] = {"eta": (day + datetime.timedelta(days=rnd.randint(2, 20))).isoformat()}
            if ports:
                consignment["destination_locode"] = rnd.choice(ports)[0]
            if rnd.random() < 0.7:
                consignment["container"] = rnd.choice(self.containers)
            else:
                consignment["awb"] = rnd.choice(self.awbs)
            alert = {
                "id": rid, "version": 1,
                "title": f"Suspected {description} from {_pick(rnd, DEPARTURES[category])}",
                "urgency": rnd.choice(URGENCY), "requested_action": rnd.choice(ALERT_ACTIONS),
                "respond_by": (day + datetime.timedelta(days=rnd.randint(3, 30))).isoformat(),
                "consignment": consignment, "suspected": {"category": category, "commodity": commodity},
                "tlp": rnd.choice(["AMBER", "AMBER", "AMBER+STRICT", "RED"]),
            }
            if rnd.random() < 0.5:
                alert["narrative"] = self._words(10, 60)
            return "alert", self.origins[country], created, alert
        if roll < 0.08:
            message = {"id": rid, "version": 1, "subject": f"{rnd.choice(MESSAGE_SUBJECTS)}: {category}",
                       "body": self._words(20, 120), "tlp": rnd.choice(TLP)}
            return "message", self.origins[country], created, message
        locode, office, port_kind = rnd.choice(self.ports[country])
        mode = rnd.choice(MODES_BY_PORT.get(port_kind, ["other"]))
        if rnd.random() < 0.85:
            departure = _pick(rnd, DEPARTURES[category])
            destination = country if departure != country else rnd.choice(MARKETS)
        else:  # an export or transit seizure
            departure, destination = country, rnd.choice([m for m in MARKETS if m != country])
        transit = sorted(set(rnd.sample(TRANSITS, rnd.randint(1, 2))) - {departure, destination}) \
            if rnd.random() < 0.3 else []
        unit, amount = (("kg", f"{rnd.randint(1, 4000)}.{rnd.randrange(10)}") if category == "drugs"
                        else ("cartons", str(rnd.randint(1, 3000))) if category == "tobacco"
                        else (rnd.choice(["pieces", "packages"]), str(rnd.randint(1, 200_000))))
        record: dict[str, Any] = {
            "id": rid, "version": 1, "category": category, "date": day.isoformat(),
            "office": {"name": office, "locode": locode}, "transport_mode": mode,
            "detection_method": rnd.choice(DETECTION),
            "concealment": rnd.choice(CONCEALMENT).format(goods=rnd.choice(["bananas", "tiles", "shoes"])),
            "commodity": commodity, "quantity": {"amount": amount, "unit": unit},
            "route": {"departure": departure, "destination": destination, "transit": transit},
            "tlp": rnd.choice(TLP),
        }
        if rnd.random() < 0.5:
            record["value"] = {"amount": f"{rnd.randint(100, 5_000_000)}.00", "currency": rnd.choice(["USD", "EUR"])}
        if mode == "sea":
            record["conveyance"] = {"container": rnd.choice(self.containers)}
        elif mode in ("air", "express"):
            record["conveyance"] = {"awb": rnd.choice(self.awbs), "flight": f"{rnd.choice(['EK', 'ET', 'TK', 'QR'])}{rnd.randint(1, 999)}"}
        if rnd.random() < 0.3:
            record["narrative"] = self._words(15, 90)
        return "seizure", self.origins[country], created, record


# --- Building the store ------------------------------------------------------------------------

@dataclass
class Built:
    home: Path
    records: int
    origins: dict[str, str]
    token: str
    seconds: float
    reused: bool




def _add_origins(home: Path, seed: int) -> dict[str, str]:
    """One accepted administration per country with a listed office: real keys, signed descriptors."""
    rnd = random.Random(seed)
    now = int(time.time() * 1000)
    node = open_node(home)
    origins: dict[str, str] = {node.settings.node.country: node.node_id}
    try:
        for country in ORIGIN_WEIGHTS:
            if country in origins:
                continue
            ident = generate_identity(rnd.randbytes)
            enc = generate_encryption_key(rnd.randbytes)
            d = make_descriptor(ident, seq=1, name=f"{country} Customs", country=country, role="national",
                                regions=[region_of(country)], endpoints=[f"https://cenmesh.customs.{country.lower()}.example"],
                                enc_keys=[EncKey(enc.public, now - 365 * DAY_MS, now + 365 * DAY_MS)], issued=now)
            node.store.write_now(dir_store.save_descriptor, d.obj, now)
            origins[country] = d.node
    finally:
        node.store.close()
    return origins


_GEN: Generator | None = None


def _init_worker(seed: int, origins: dict[str, str], today: datetime.date) -> None:
    global _GEN
    _GEN = Generator(seed, origins, today)


def _make_batch(job: tuple[int, int]) -> tuple[list[tuple[Any, ...]], list[search_index.IndexEntry]]:
    assert _GEN is not None
    return _GEN.batch(*job)


def build(root: Path, n: int, seed: int, rebuild: bool) -> Built:
    """The node folder with ``n`` records, made once and reused (``--rebuild`` makes it again).

    Records are made by worker processes while this one writes: ``records``
    rows with one executemany per batch, the index with
    ``search_index.write_entries``, one transaction per batch. For the bulk
    load only, the journal is off and the secondary indexes of ``records``
    and ``record_facets`` are dropped and made again at the end (the same
    SQL, read back from the schema), as a bulk load into SQLite should be.
    """
    home = root / f"query-{n}"
    done = home / "bench-built.json"
    if done.exists() and not rebuild:
        meta = json.loads(done.read_text())
        if meta.get("format") == FORMAT_VERSION and meta.get("seed") == seed:
            say(f"reusing {home} ({n:,} records, built in {meta['seconds']:.0f} s)")
            return Built(home, n, meta["origins"], meta["token"], meta["seconds"], True)
    if home.exists():
        shutil.rmtree(home)
    t0 = time.perf_counter()
    out = admin.init(str(home), name="NL Customs", country="NL", role="national", regions=["WE"],
                     listen=f"127.0.0.1:{free_port()}", public_url=None)
    origins = _add_origins(home, seed)
    conn = connect(home / "node.db")
    token = auth.create_token(conn, "analyst", "analyst", int(time.time() * 1000))
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -1000000")  # 1 GB while building
    indexes = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
                           " AND tbl_name IN ('records', 'record_facets')").fetchall()
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    today = datetime.date.today()
    jobs = [(i, min(BATCH, n - i * BATCH)) for i in range((n + BATCH - 1) // BATCH)]
    workers = max(1, min(4, (os.cpu_count() or 2) - 1))
    say(f"building {n:,} records in {home} ({workers} generating process(es)) ...")
    made = 0
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(seed, origins, today)) as pool:
        for rows, entries in pool.imap(_make_batch, jobs):
            with Transaction(conn):
                conn.executemany("INSERT INTO records (id, origin, kind, version, bundle_id, audience, created, ref,"
                                 " retracted, body) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
                search_index.write_entries(conn, entries)
            made += len(entries)
            if made % 100_000 < BATCH or made == n:
                say(f"  {made:,} records, {time.perf_counter() - t0:.0f} s")
    say(f"  making the indexes again, {time.perf_counter() - t0:.0f} s")
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    # On disk before measuring: otherwise the first checkpoint's fsync (under an audited search)
    # waits for the kernel to write back the whole freshly built file.
    fd = os.open(home / "node.db", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - t0
    done.write_text(json.dumps({"format": FORMAT_VERSION, "seed": seed, "records": n, "origins": origins,
                                "token": token, "admin_token": out["token"], "seconds": round(seconds, 1)}))
    say(f"built in {seconds:.0f} s; database {(home / 'node.db').stat().st_size / 1e6:,.0f} MB")
    return Built(home, n, origins, token, seconds, False)


def _fake_bundle_id(rnd: random.Random) -> str:
    return "".join(rnd.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", k=43))


# --- The workload ---------------------------------------------------------------------------------

TEXT_QUERIES: list[tuple[str, str]] = [  # (text, category) so the HS prefix belongs to the goods
    ("cocaine", "drugs"), ("cannabis", "drugs"), ("heroin", "drugs"), ("methamphetamine", "drugs"),
    ("captagon", "drugs"), ("cigarettes", "tobacco"), ("counterfeit cigarettes", "tobacco"),
    ("waterpipe", "tobacco"), ("masks", "medicines"), ("tramadol", "medicines"), ("antimalarial", "medicines"),
    ("insulin", "medicines"), ("shoes", "ipr"), ("handbags Gucci", "ipr"), ("Rolex", "ipr"), ("watches", "ipr"),
    ("chargers", "ipr"), ("Lego", "ipr"), ("pangolin", "environment"), ("ivory", "environment"),
    ("rosewood", "environment"), ("shark", "environment"), ("whisky", "alcohol"), ("ethanol", "alcohol"),
    ("phones", "revenue"), ("pistol", "weapons"), ("ammunition", "weapons"), ("banknotes", "currency"),
    ("detonators", "explosives"), ("figurines", "cultural-heritage"), ("brake pads", "other"),
    ("tyres", "other"), ("cocaine banana", "drugs"), ("cannabis resin", "drugs"), ("tobacco", "tobacco"),
]


def _hs_for(rnd: random.Random, text: str, category: str) -> str:
    goods = [g for g in GOODS[category] if any(w.lower() in (g[0] + " " + " ".join(g[2])).lower() for w in text.split())]
    hs = rnd.choice(goods or GOODS[category])[1]
    return hs[: rnd.choice([2, 4, 4, 4, 6])]


def workload(seed: int, count: int, origins: dict[str, str], today: datetime.date) -> list[tuple[str, dict[str, str]]]:
    """``count`` requests of each type, (type, query parameters), shuffled."""
    rnd = random.Random(seed)
    out: list[tuple[str, dict[str, str]]] = []
    days = (today - FIRST_DAY).days
    for _ in range(count):
        text, category = rnd.choice(TEXT_QUERIES)
        start = FIRST_DAY + datetime.timedelta(days=rnd.randrange(days - 30))
        end = min(today, start + datetime.timedelta(days=rnd.choice([30, 91, 182, 365, 730])))
        params = {"q": text, "hs": _hs_for(rnd, text, category), "since": start.isoformat(), "until": end.isoformat()}
        if rnd.random() < 0.3:
            del params["until"]
        out.append(("a_text_hs_date", params))
        category = rnd.choices(list(CATEGORY_WEIGHTS), weights=list(CATEGORY_WEIGHTS.values()))[0]
        dest = rnd.choice([c for c in ORIGIN_WEIGHTS if c in origins])
        dep = _pick(rnd, DEPARTURES[category])
        if dep == dest:
            dep = "CN"
        params = {"route": f"{dep}-{dest}"}
        if rnd.random() < 0.25:
            params["since"] = (today - datetime.timedelta(days=rnd.choice([90, 365, 730]))).isoformat()
        out.append(("b_route", params))
        country = rnd.choice([c for c in ORIGIN_WEIGHTS if c in origins])
        category = rnd.choices(list(CATEGORY_WEIGHTS), weights=list(CATEGORY_WEIGHTS.values()))[0]
        origin = origins[country] if rnd.random() < 0.5 else country
        out.append(("c_origin_category", {"origin": origin, "category": category}))
    rnd.shuffle(out)
    return out


# --- Measuring ----------------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


@dataclass
class Sample:
    kind: str
    params: dict[str, str]
    ms: float
    total: int
    capped: bool
    returned: int


async def measure(built: Built, requests: int, warmup: int,
                  seed: int) -> tuple[list[Sample], dict[tuple[str, str], tuple[int, list[str]]]]:
    node = open_node(built.home)
    app = build_app(node, scheduled=False)
    runner = make_runner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/api/v1/search"
    headers = {"Authorization": f"Bearer {built.token}"}
    today = datetime.date.today()
    plans: dict[tuple[str, str], tuple[int, list[str]]] = {}
    try:
        work = workload(seed, max(1, requests // 3), built.origins, today)
        warm = workload(seed + 7, max(1, warmup // 3), built.origins, today)
        for kind, params in work:  # how each request will run (not timed)
            origins = await asyncio.to_thread(_origins_for, node, params)
            lines = await node.store.read(explain, SearchQuery.from_params(params), origins)
            count, example = plans.get((kind, lines[0]), (0, lines))
            plans[(kind, lines[0])] = (count + 1, example)
        samples: list[Sample] = []
        async with aiohttp.ClientSession() as session:
            for phase, items in (("warm-up", warm), ("measure", work)):
                say(f"{phase}: {len(items)} requests")
                for kind, params in items:
                    t0 = time.perf_counter()
                    async with session.get(url + "?" + urlencode(params), headers=headers) as resp:
                        body = await resp.read()
                        status = resp.status
                    ms = (time.perf_counter() - t0) * 1000
                    if status != 200:
                        raise RuntimeError(f"GET {params} answered {status}: {body[:300]!r}")
                    if phase == "measure":
                        out = json.loads(body)
                        samples.append(Sample(kind, params, ms, out["total"], out["total_capped"], len(out["results"])))
        return samples, plans
    finally:
        await runner.cleanup()


def _origins_for(node: Any, params: dict[str, str]) -> tuple[str, ...] | None:
    from node.search import resolve_origin

    return resolve_origin(node, params.get("origin"))


def summarize(samples: list[Sample]) -> dict[str, Any]:
    ms = [s.ms for s in samples]
    return {"requests": len(samples), "p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2),
            "p99_ms": round(percentile(ms, 99), 2), "max_ms": round(max(ms), 2),
            "mean_ms": round(statistics.fmean(ms), 2),
            "median_total": int(statistics.median(s.total for s in samples)),
            "capped_share": round(sum(s.capped for s in samples) / len(samples), 2)}


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "aiohttp": aiohttp.__version__, "platform": platform.platform(),
            "loadavg_1m": round(os.getloadavg()[0], 2)}


def report(built: Built, samples: list[Sample], plans: dict[tuple[str, str], tuple[int, list[str]]]) -> dict[str, Any]:
    kinds = sorted({s.kind for s in samples})
    per = {k: summarize([s for s in samples if s.kind == k]) for k in kinds}
    overall = summarize(samples)
    header = f"{'query':<20} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'median total':>13} {'capped':>7}"
    print(f"search benchmark: {built.records:,} records, {len(samples)} requests through GET /api/v1/search")
    print(header)
    print("-" * len(header))
    for name, s in [*per.items(), ("overall", overall)]:
        print(f"{name:<20} {s['requests']:>5} {s['p50_ms']:>8.2f} {s['p95_ms']:>8.2f} {s['p99_ms']:>8.2f}"
              f" {s['max_ms']:>8.2f} {s['median_total']:>13,} {s['capped_share']:>7.0%}")
    print("query plans: plan used (requests), then EXPLAIN QUERY PLAN of one of them:")
    for (kind, driver), (count, lines) in sorted(plans.items()):
        explained = " | ".join(line if len(line) < 200 else line[:200] + " ..." for line in lines[1:])
        print(f"  {kind:<18} {driver:<26} ({count:>3})  {explained}")
    slowest = sorted(samples, key=lambda s: -s.ms)[:5]
    print("slowest requests:")
    for s in slowest:
        print(f"  {s.ms:8.2f} ms  {s.kind:<18} total={s.total:<6} {urlencode(s.params)}")
    ok = overall["p95_ms"] < TARGET_P95_MS
    print(f"target: p95 < {TARGET_P95_MS:.0f} ms over all requests: {overall['p95_ms']:.2f} ms  {'PASS' if ok else 'FAIL'}")
    return {
        "records": built.records, "p50_ms": overall["p50_ms"], "p95_ms": overall["p95_ms"],
        "p99_ms": overall["p99_ms"], "requests": overall["requests"], "target_p95_ms": TARGET_P95_MS, "pass": ok,
        "per_type": {k: {"p50_ms": v["p50_ms"], "p95_ms": v["p95_ms"], "requests": v["requests"]} for k, v in per.items()},
        "plans": {f"{kind}/{driver.strip('[]')}": count for (kind, driver), (count, _) in sorted(plans.items())},
        "build_s": built.seconds, "build_reused": built.reused, "machine": machine(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench query", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, help=f"records in the store (default {DEFAULT_RECORDS:,}; --quick {QUICK_RECORDS:,})")
    parser.add_argument("--quick", action="store_true", help=f"smoke test: {QUICK_RECORDS:,} records, 150 requests")
    parser.add_argument("--requests", type=int, help="measured requests, a third of each type (default 600; --quick 150)")
    parser.add_argument("--warmup", type=int, default=60, help="requests before measuring (default 60)")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--dir", default="bench-run", help="where built stores are kept (default ./bench-run)")
    parser.add_argument("--rebuild", action="store_true", help="build the store again even if one is kept")
    args = parser.parse_args(argv)
    n = args.records or (QUICK_RECORDS if args.quick else DEFAULT_RECORDS)
    requests = args.requests or (150 if args.quick else 600)
    if n < 1000 or requests < 3:
        parser.error("--records must be at least 1,000 and --requests at least 3")
    try:
        built = build(Path(args.dir).resolve(), n, args.seed, args.rebuild)
        samples, plans = asyncio.run(measure(built, requests, args.warmup, args.seed))
    except (RuntimeError, OSError, aiohttp.ClientError, sqlite3.Error) as exc:
        say(f"bench query failed: {type(exc).__name__}: {exc}")
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:2000], "machine": machine()}))
        return 1
    print(json.dumps(report(built, samples, plans), separators=(", ", ": ")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
