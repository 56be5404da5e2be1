#!/usr/bin/env python3
"""Chaos run: about 20 real ``cenmesh run`` processes on 127.0.0.1, killed and filled while they sync.

The federation is made with the same functions ``cenmesh init``, ``trust``,
``endorse``, ``directory add`` and ``peer add`` use: a few RILO hubs, meshed,
and customs administrations in their regions, each peered with its region's
hub (some with a second hub too). Every node syncs every two seconds.

While officers create, edit, import and share seizures through each node's
officer API (bearer token), the run SIGKILLs random nodes (a third of the time
a hub) and restarts them on the same folder. Two nodes run out of room:

* one database is capped (``store.max_size_mb``, i.e. SQLite's
  ``PRAGMA max_page_count``); space returns when the operator raises the cap
  and restarts the node;
* when the run may mount (root), another node's database lives on a small
  tmpfs (``--disk-mb``, 32 MB) that a ballast file fills (a real ENOSPC); space returns when the
  ballast is deleted, and the node must store again without a restart.

Each must answer ``503 store-full`` naming the file and the remedy, log it,
survive a SIGKILL while full, and catch up once space returns.

Then everything heals (every node up, no cap, no more kills) and the run checks:

* every bundle accepted anywhere (answered 201 by an origin, or found in any
  store) reaches every one of its recipients, readable there;
* no national that is not a recipient holds it (hubs may relay anything);
* no store holds a bundle or record twice;
* ``PRAGMA integrity_check`` is ``ok`` on every store (also on each killed
  store right after its SIGKILL, before the node restarts).

    scripts/chaos                                   # 20 nodes, 12 kills, 90 s of traffic
    scripts/chaos --nodes 8 --kills 4 --duration 20 # the short version the tests run
    scripts/chaos --seed 7 --dir /tmp/chaos --keep  # keep the folders and logs to look at

The last line printed is one JSON object with the figures. Exit status 0 when
nothing was lost, leaked, duplicated or corrupt, and the full disk was reported
clearly and recovered from; 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchlib import free_port  # noqa: E402  (scripts/ is on the path when a script runs)

from node import admin  # noqa: E402

SYNC_INTERVAL_S = 2
SYNC_JITTER_S = 1
REQUEST_TIMEOUT_S = 5
READY_TIMEOUT_S = 60.0
# (hub region, hub country); nationals are spread over the hubs' regions in turn.
HUBS = [("WA", "CI"), ("AP", "KR"), ("WE", "BE"), ("ESA", "KE"), ("MENA", "AE")]
COUNTRIES = ["NG", "CN", "FR", "TZ", "EG", "GH", "JP", "DE", "UG", "SA", "SN", "VN", "NL", "ZA", "MA", "TG",
             "TH", "IT", "RW", "JO", "ML", "MY", "ES", "ET", "TN"]


class ChaosError(Exception):
    """The run itself could not go on (a node did not start, a setup step failed)."""


@dataclass
class Options:
    nodes: int = 20
    kills: int = 12
    duration: float = 90.0
    seed: int = 1
    rate: float = 4.0  # shares per second across the federation (the filling node's officer comes on top)
    settle: float = 180.0  # how long healing may take before what is missing counts as lost
    full_cap_mb: int = 1
    disk_mb: int = 32  # the tmpfs: room for what the node must catch up on once the ballast goes
    real_disk: str = "auto"  # also fill a real (tmpfs) disk: "on", "off", or "auto" (when mount works)
    dir: str | None = None
    keep: bool = False
    quiet: bool = False


@dataclass
class Member:
    key: str
    name: str
    country: str
    role: str
    regions: list[str]
    home: Path
    port: int
    hub: str | None = None  # key of the hub that endorses it
    node_id: str = ""
    token: str = ""
    proc: subprocess.Popen[bytes] | None = None
    capped: bool = False  # the node whose database fills up
    up: bool = False
    db: Path | None = None  # the database, when not HOME/node.db

    @property
    def db_path(self) -> Path:
        return self.db or self.home / "node.db"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_hub(self) -> bool:
        return self.role == "hub"

    @property
    def log(self) -> Path:
        return self.home / "node.log"


@dataclass
class Figures:
    shared: dict[str, tuple[str, set[str]]] = field(default_factory=dict)  # bundle -> (origin key, recipients)
    share_errors: Counter[str] = field(default_factory=Counter)
    kills: int = 0  # every SIGKILL: the random ones and one per full node while it is full
    random_kills: int = 0
    edits: int = 0
    imports: int = 0
    kill_log: list[str] = field(default_factory=list)
    restarts: int = 0
    integrity_after_kill: list[str] = field(default_factory=list)
    full_answers: list[dict[str, Any]] = field(default_factory=list)  # officer and federation 503s
    recover_s: float | None = None
    notes: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # 4xx to requests that are valid
    internal: list[str] = field(default_factory=list)  # 5xx answers other than store-full: unclear errors


@dataclass
class Filling:
    """A node whose store runs out of room: ``cap`` (store.max_size_mb, i.e. PRAGMA max_page_count;
    space returns when the operator raises it and restarts) or ``disk`` (its database on a small
    tmpfs that really fills up, ENOSPC; space returns when a ballast file is deleted, no restart)."""

    m: Member
    how: str
    refused_at: float | None = None
    recovering: bool = False
    recovered: bool = False
    mount: Path | None = None

    @property
    def ballast(self) -> Path:
        assert self.mount is not None
        return self.mount / "ballast"




def cast(n: int, root: Path) -> dict[str, Member]:
    """``n`` nodes: about one hub per seven nodes (at least two, at most five), the rest nationals."""
    if n < 4:
        raise ChaosError("--nodes: at least 4 (two hubs and two administrations)")
    hubs = min(len(HUBS), max(2, (n + 3) // 7))
    members: list[Member] = []
    for i in range(hubs):
        region, country = HUBS[i]
        members.append(Member(f"hub-{region.lower()}", f"RILO {region} hub", country, "hub", [region],
                              root / f"hub-{region.lower()}", free_port()))
    for i in range(n - hubs):
        region = HUBS[i % hubs][0]
        country = COUNTRIES[i % len(COUNTRIES)]
        key = f"{country.lower()}-{i}"
        members.append(Member(key, f"Customs {country} {i}", country, "national", [region], root / key, free_port(),
                              hub=f"hub-{region.lower()}"))
    return {m.key: m for m in members}


def seizure(rng: random.Random, i: int, big: bool = False) -> dict[str, Any]:
    """A valid seizure without personal data (so any audience may receive it)."""
    lot = rng.randrange(10**6)
    return {
        "category": rng.choice(["medicines", "tobacco", "ipr", "drugs"]), "date": "2024-05-02",
        "office": {"name": "Tema Port", "locode": "GHTEM"},
        "transport_mode": rng.choice(["sea", "air", "road"]), "detection_method": "x-ray",
        "concealment": "behind a false wall",
        "commodity": {"description": f"counterfeit goods lot {lot}", "hs_code": "630790"},
        "quantity": {"amount": str(100 + i), "unit": "pieces"},
        "route": {"departure": "CN", "destination": "GH", "transit": []},
        # The filling node's officer writes long reports, so its capped database fills in seconds.
        "narrative": (f"chaos record {i} " + uuid.uuid4().hex * 150)[:4800] if big else f"chaos record {i}",
        "tlp": "AMBER",
    }


def set_store_cap(m: Member, mb: int | None) -> None:
    """What an operator does: set or remove ``store.max_size_mb`` in node.toml."""
    path = m.home / "node.toml"
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("max_size_mb")]
    if mb is not None:
        lines.insert(lines.index("[store]") + 1, f"max_size_mb = {mb}")
    path.write_text("\n".join(lines) + "\n")


def set_sync(m: Member) -> None:
    path = m.home / "node.toml"
    text = path.read_text().replace(
        "[sync]\n",
        f"[sync]\ninterval_s = {SYNC_INTERVAL_S}\njitter_s = {SYNC_JITTER_S}\nrequest_timeout_s = {REQUEST_TIMEOUT_S}\n"
        "verify_processes = 1\n")
    # render_settings writes every default; drop the defaults we just replaced (the first wins otherwise: an error).
    seen: set[str] = set()
    out = []
    section = ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line
        name = line.split("=", 1)[0].strip() if "=" in line else None
        if name and section == "[sync]":
            if name in seen:
                continue
            seen.add(name)
        out.append(line)
    path.write_text("\n".join(out) + "\n")


def db_connect(m: Member) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{m.db_path}?mode=ro", uri=True, timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def integrity(m: Member) -> str:
    try:
        conn = db_connect(m)
        try:
            return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"cannot open: {exc}"


class Out:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.monotonic()

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.t0:6.1f} s] {msg}", flush=True)


class Chaos:
    def __init__(self, opts: Options, root: Path, out: Out) -> None:
        self.opts = opts
        self.root = root
        self.out = out
        self.rng = random.Random(opts.seed)
        self.m = cast(opts.nodes, root)
        nationals = [m for m in self.m.values() if not m.is_hub]
        self.capped = nationals[-1]
        self.capped.capped = True
        self.fills = [Filling(self.capped, "cap")]
        if opts.real_disk != "off":
            nationals[-2].capped = True
            self.fills.append(Filling(nationals[-2], "disk"))
        self.fig = Figures()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CENMESH_")}
        self.env["PYTHONUNBUFFERED"] = "1"
        self.stopping = asyncio.Event()
        self.session: aiohttp.ClientSession | None = None
        self.counter = 0
        self.orphans: dict[str, int] = {}
        self.room: dict[str, str] = {}
        self.mine: dict[str, list[tuple[str, str]]] = {}  # node key -> (record id, audience) it shared
        self.intended: dict[str, set[str]] = {}  # bundle id -> the node keys its audience names

    # -- setting up -----------------------------------------------------------------------------

    def setup(self) -> None:
        """init, sync settings, trust every hub, endorse each national by its hub, directory add."""
        hubs = [m for m in self.m.values() if m.is_hub]
        for m in self.m.values():
            made = admin.init(str(m.home), name=m.name, country=m.country, role=m.role, regions=m.regions,
                              listen=f"127.0.0.1:{m.port}", public_url=None)
            m.node_id, m.token = made["node"], made["token"]
            set_sync(m)
            (self.root / f"{m.key}.json").write_text(json.dumps(made["descriptor"]))
        for m in self.m.values():
            for h in hubs:
                if h is not m:
                    admin.trust(str(m.home), str(self.root / f"{h.key}.json"))
        for m in self.m.values():
            if m.hub is None:
                continue
            endorsed = self.root / f"{m.key}.endorsed.json"
            endorsed.write_text(json.dumps(admin.endorse_file(str(self.m[m.hub].home), str(self.root / f"{m.key}.json"))))
            admin.directory_add(str(m.home), str(endorsed))  # our own descriptor, now endorsed
            admin.directory_add(str(self.m[m.hub].home), str(endorsed))  # the rest learn it by gossip
        set_store_cap(self.capped, self.opts.full_cap_mb)
        for f in self.fills:
            if f.how == "disk" and not self.mount_disk(f):
                self.fills.remove(f)
                f.m.capped = False

    def mount_disk(self, f: Filling) -> bool:
        """Move the node's database onto its own small tmpfs (root only); False when that cannot be done."""
        mount = self.root / f"{f.m.key}-disk"
        mount.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.opts.disk_mb}m,mode=0700", "tmpfs", str(mount)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            if self.opts.real_disk == "on":
                raise ChaosError(f"--real-disk on: cannot mount a tmpfs: {done.stderr.strip()}")
            self.out(f"no real full disk in this run (mount: {done.stderr.strip() or 'refused'}); "
                     "only the capped database fills")
            return False
        f.mount = mount
        f.m.db = mount / "node.db"
        for name in ("node.db", "node.db-wal", "node.db-shm"):
            if (f.m.home / name).exists():
                shutil.move(str(f.m.home / name), str(mount / name))
        path = f.m.home / "node.toml"
        path.write_text(path.read_text().replace('path = "node.db"', f'path = "{mount / "node.db"}"'))
        return True

    def fill_disk(self, f: Filling) -> None:
        """Take all but 256 kB of the tmpfs with a ballast file: the node's next writes hit ENOSPC."""
        st = os.statvfs(f.mount or "")
        free = st.f_bavail * st.f_frsize - 256 * 1024
        with open(f.ballast, "wb") as fh:
            os.posix_fallocate(fh.fileno(), 0, max(4096, free))

    def unmount(self) -> None:
        for f in self.fills:
            if f.mount is not None:
                subprocess.run(["umount", str(f.mount)], capture_output=True)
                f.mount = None

    def start(self, m: Member) -> None:
        log = open(m.log, "ab")  # noqa: SIM115 - the child holds it; closed right after Popen
        try:
            m.proc = subprocess.Popen(
                [sys.executable, "-m", "node.cli", "run", "--home", str(m.home), "--log-level", "INFO"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        finally:
            log.close()

    async def wait_ready(self, m: Member, timeout: float = READY_TIMEOUT_S) -> None:
        assert self.session is not None and m.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if m.proc.poll() is not None:
                raise ChaosError(f"{m.key} exited with {m.proc.returncode} while starting:\n{self.tail(m)}")
            try:
                async with self.session.get(m.url + "/federation/v1/descriptor",
                                            timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200 and (await resp.json()).get("node") == m.node_id:
                        m.up = True
                        return
            except (aiohttp.ClientError, TimeoutError, ValueError):
                pass
            await asyncio.sleep(0.1)
        raise ChaosError(f"{m.key} did not answer within {timeout:.0f} s:\n{self.tail(m)}")

    def tail(self, m: Member, n: int = 15) -> str:
        if not m.log.exists():
            return ""
        lines = [ln for ln in m.log.read_text(errors="replace").splitlines() if " apscheduler." not in ln]
        return "\n".join(lines[-n:])

    async def peer_all(self) -> None:
        """`cenmesh peer add` on both sides: hubs meshed, each national with its hub, every third also
        with the next hub (a second path)."""
        hubs = [m for m in self.m.values() if m.is_hub]
        pairs = [(a, b) for i, a in enumerate(hubs) for b in hubs[i + 1:]]
        for i, m in enumerate(x for x in self.m.values() if not x.is_hub):
            assert m.hub is not None
            own = self.m[m.hub]
            pairs.append((m, own))
            if i % 3 == 2 and len(hubs) > 1:
                pairs.append((m, hubs[(hubs.index(own) + 1) % len(hubs)]))
        sem = asyncio.Semaphore(4)

        async def add(a: Member, b: Member) -> None:
            async with sem:
                await asyncio.to_thread(admin.peer_add, str(a.home), b.url)

        await asyncio.gather(*(add(a, b) for a, b in pairs), *(add(b, a) for a, b in pairs))
        self.out(f"peered: {len(pairs)} links ({len(hubs)} hubs meshed, every administration with its hub)")

    async def api(self, m: Member, method: str, path: str, body: Any = None,
                  timeout: float = 15) -> tuple[int, Any]:
        assert self.session is not None
        async with self.session.request(method, m.url + path, json=body, timeout=aiohttp.ClientTimeout(total=timeout),
                                        headers={"Authorization": f"Bearer {m.token}"}) as resp:
            try:
                return resp.status, await resp.json(content_type=None)
            except ValueError:
                return resp.status, None

    async def wait_directory(self, timeout: float = 90) -> None:
        every = {m.node_id for m in self.m.values()}
        start = time.monotonic()
        for m in self.m.values():
            while True:
                try:
                    status, body = await self.api(m, "GET", "/api/v1/directory")
                    if status == 200 and every <= {n["node"] for n in body["nodes"]}:
                        break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if time.monotonic() - start > timeout:
                    raise ChaosError(f"{m.key} did not learn the whole directory by gossip in {timeout:.0f} s")
                # Directories are asked for every few rounds; `cenmesh sync` asks now (second-hand entries
                # need the hub to have learnt them first, hence the loop).
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    await self.api(m, "POST", "/api/v1/sync", {"directory": True}, timeout=30)
                await asyncio.sleep(0.3)
        self.out(f"directory gossip: every node knows all {len(every)} nodes after {time.monotonic() - start:.1f} s")

    # -- the chaos -------------------------------------------------------------------------------

    def audience(self, origin: Member) -> str:
        r = self.rng.random()
        if r < 0.3:
            return "federation"
        if r < 0.7:
            return f"region:{origin.regions[0]}"
        if r < 0.8:
            other = self.rng.choice([m for m in self.m.values() if m.is_hub])
            return f"region:{other.regions[0]}"
        others = [m for m in self.m.values() if m is not origin and not m.is_hub]
        return "nodes:" + ",".join(x.node_id for x in self.rng.sample(others, min(len(others), self.rng.randint(1, 3))))

    async def officer_once(self, m: Member, *, big: bool = False) -> None:
        """One officer action at ``m`` through its officer API: mostly a record created and shared,
        sometimes a new version of an earlier one, sometimes a CSV import shared in one go."""
        r = self.rng.random()
        if not big and r < 0.05:
            return await self.import_csv(m)
        if not big and r < 0.15 and self.mine.get(m.key):
            return await self.edit(m, *self.rng.choice(self.mine[m.key]))
        self.counter += 1
        status, made = await self.api(m, "POST", "/api/v1/records",
                                      {"kind": "seizure", "record": seizure(self.rng, self.counter, big)})
        if status != 201:
            self.note_refusal(m, "create", status, made)
            return
        spec = self.audience(m)
        urgent = self.rng.random() < 0.2
        status, shared = await self.api(m, "POST", f"/api/v1/records/{made['id']}/share",
                                        {"audience": spec, "urgent": urgent})
        if status == 201:
            self.fig.shared[shared["bundle"]] = (m.key, {self.key_of(r) for r in shared["recipients"]})
            self.mine.setdefault(m.key, []).append((made["id"], spec))
            self.intended[shared["bundle"]] = self.audience_keys(m, spec)
        else:
            self.note_refusal(m, "share", status, shared)

    def audience_keys(self, origin: Member, spec: str) -> set[str]:
        """Who ``spec`` names, worked out from the cast (not from any node): the origin always."""
        if spec == "federation":
            named = set(self.m)
        elif spec.startswith("region:"):
            named = {m.key for m in self.m.values() if spec.removeprefix("region:") in m.regions}
        else:
            named = {self.key_of(n) for n in spec.removeprefix("nodes:").split(",")}
        return named | {origin.key}

    async def edit(self, m: Member, rid: str, spec: str) -> None:
        """The next version of one of ``m``'s shared records (PATCH), sent to the same audience."""
        status, held = await self.api(m, "GET", f"/api/v1/records/{rid}")
        if status != 200:
            return self.note_refusal(m, "read", status, held)
        record = dict(held["record"])
        for drop in ("version", "id", "created", "updated"):
            record.pop(drop, None)
        record["narrative"] = f"{record.get('narrative', '')} / amended".strip()[:4900]
        status, done = await self.api(m, "PATCH", f"/api/v1/records/{rid}", {"record": record})
        if status == 200:
            self.fig.shared[done["bundle"]] = (m.key, {self.key_of(r) for r in done["recipients"]})
            self.intended[done["bundle"]] = self.audience_keys(m, spec)
            self.fig.edits += 1
        else:
            self.note_refusal(m, "edit", status, done)

    async def import_csv(self, m: Member) -> None:
        """`cenmesh import --share`: 5-30 seizures kept and shared in one request (big sync batches)."""
        rows = ["category,date,office_name,office_locode,transport_mode,detection_method,commodity_description,"
                "quantity_amount,quantity_unit,route_departure,route_destination,narrative,tlp"]
        for _ in range(self.rng.randint(5, 30)):
            self.counter += 1
            rows.append(f"drugs,2024-04-0{self.rng.randint(1, 9)},Apapa,NGAPP,sea,x-ray,cocaine bricks lot "
                        f"{self.counter},{self.rng.randint(1, 90)},kg,BR,NG,chaos import {self.counter},AMBER")
        spec = self.audience(m)
        if spec.startswith("nodes:") or self.rng.random() < 0.5:
            spec = f"region:{m.regions[0]}"
        assert self.session is not None
        async with self.session.post(m.url + "/api/v1/import", params={"share": spec},
                                     data=("\n".join(rows) + "\n").encode(), timeout=aiohttp.ClientTimeout(total=30),
                                     headers={"Authorization": f"Bearer {m.token}", "Content-Type": "text/csv"}) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 201:
                return self.note_refusal(m, "import", resp.status, body)
        # The origin stored them all in one transaction; their recipients are read from the stores.
        for bid in body["shared"]["bundles"]:
            self.fig.shared[bid] = (m.key, set())
            self.intended[bid] = self.audience_keys(m, spec)
        self.fig.imports += 1

    def note_refusal(self, m: Member, what: str, status: int, body: Any) -> None:
        code = body.get("error") if isinstance(body, dict) else None
        self.fig.share_errors[f"{what} {status} {code}"] += 1
        if status == 503 and code in ("store-full", "imported-not-shared"):
            self.fig.full_answers.append({"node": m.key, "call": what, **body})
            f = self.filling(m)
            if f is not None and f.refused_at is None:
                f.refused_at = time.monotonic()
                self.out(f"{m.key}: {what} answered 503 {json.dumps(body)}")
        elif status >= 500:
            self.fig.internal.append(f"{m.key}: {what} answered {status} {body}")
        else:  # the run's own requests are valid: any other refusal is a finding
            self.fig.refused.append(f"{m.key}: {what} answered {status} {body}")

    def filling(self, m: Member) -> Filling | None:
        return next((f for f in self.fills if f.m is m), None)

    async def officers(self) -> None:
        """Shares at ``rate`` per second from random nodes, plus the filling node's own officer."""
        members = list(self.m.values())

        async def one(m: Member, big: bool = False) -> None:
            try:
                await self.officer_once(m, big=big)
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.fig.share_errors[f"unreachable ({type(exc).__name__})"] += 1

        async def fill(f: Filling) -> None:
            # The filling node's officer writes long reports back to back until the store refuses
            # them, then tries once a second (each refusal must be clear) until space returns.
            while not self.stopping.is_set() and not f.recovered:
                if f.m.up and not f.recovering:
                    await one(f.m, big=True)
                if f.refused_at is not None or not f.m.up:
                    await asyncio.sleep(1.0)

        tasks: set[asyncio.Task[None]] = {asyncio.create_task(fill(f)) for f in self.fills for _ in range(2)}
        while not self.stopping.is_set():
            m = self.rng.choice(members)
            if m.up:
                t = asyncio.create_task(one(m))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.rng.expovariate(self.opts.rate))
        await asyncio.gather(*tasks, return_exceptions=True)

    async def kill(self, m: Member) -> None:
        assert m.proc is not None
        m.up = False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(m.proc.pid, signal.SIGKILL)
        await asyncio.to_thread(m.proc.wait)
        self.fig.kills += 1
        verdict = await asyncio.to_thread(integrity, m)
        if verdict != "ok":
            self.fig.integrity_after_kill.append(f"{m.key}: {verdict}")

    async def restart(self, m: Member) -> None:
        self.start(m)
        await self.wait_ready(m)
        self.fig.restarts += 1

    async def killer(self) -> None:
        """``kills`` SIGKILLs at random moments spread over the run; each victim restarts after 0.2-3 s."""
        n = self.opts.kills
        if n == 0:
            return
        slot = self.opts.duration / (n + 1)
        for i in range(n):
            if self.fig.random_kills >= n:
                return
            at = slot * (i + 1) + self.rng.uniform(-slot / 3, slot / 3)
            delay = self.t_start + at - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
            if self.stopping.is_set():
                return
            # Sometimes two at once: a hub and one of its nationals, so bundles wait in two places.
            # A third of the kills hit a hub, the relay everything goes through.
            pool = [m for m in self.m.values() if m.up and not self.busy(m)]
            hubs_up = [m for m in pool if m.is_hub]
            victims = [self.rng.choice(hubs_up if hubs_up and self.rng.random() < 0.33 else pool or [None])]
            if victims[0] is not None and self.rng.random() < 0.25 and self.fig.random_kills + 2 <= n:
                more = [m for m in self.m.values() if m.up and m is not victims[0] and not self.busy(m)]
                if more:
                    victims.append(self.rng.choice(more))
            victims = [v for v in victims if v is not None]
            for v in victims:
                await self.kill(v)
                self.fig.random_kills += 1
            self.fig.kill_log.append("+".join(v.key for v in victims))
            self.out(f"SIGKILL {' and '.join(v.key for v in victims)} (kill {self.fig.random_kills} of {n})")
            await asyncio.sleep(self.rng.uniform(0.2, 3.0))
            for v in victims:
                await self.restart(v)

    def busy(self, m: Member) -> bool:
        f = self.filling(m)
        return f is not None and f.recovering

    async def filler(self, f: Filling) -> None:
        """Wait for the filling node to refuse a write as full, leave it full for a while (its syncs
        fail, pushes to it are refused), then give space back as its operator would."""
        m = f.m
        deadline = self.t_start + self.opts.duration * 0.6
        while f.refused_at is None and time.monotonic() < self.t_start + self.opts.duration:
            await asyncio.sleep(0.2)
        if f.refused_at is None:
            return
        await asyncio.sleep(max(2.0, deadline - time.monotonic()))
        f.recovering = True
        logged = self.full_log_lines(m)
        self.out(f"{m.key}: {len(logged)} 'full' lines in its log, e.g. {logged[0] if logged else '(none)'}")
        while not m.up:
            await asyncio.sleep(0.1)  # a SIGKILL just hit it; wait for the restart
        # A crash while full: the node must start again on its full store (WAL recovery needs no room).
        await self.kill(m)
        self.fig.kill_log.append(f"{m.key} (while full)")
        self.out(f"SIGKILL {m.key} while its store is full; restarting it still full")
        await self.restart(m)
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            status, body = await self.api(m, "GET", "/api/v1/status")
            self.fig.notes.append(f"{m.key}: status after a restart while still full: {status} {json.dumps(body)[:200]}")
        if f.how == "cap":
            assert m.proc is not None
            m.up = False
            m.proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(m.proc.wait, 30)
            set_store_cap(m, None)
            self.out(f"{m.key}: space returns (store.max_size_mb removed), restarting it")
            await self.restart(m)
        else:
            f.ballast.unlink()
            self.out(f"{m.key}: space returns (ballast deleted from its disk); the node keeps running")
        f.recovering = False
        # Recovered means: its officer can record and share again, and (checked when healing) it catches up.
        before = len(self.fig.shared)
        for _ in range(5):
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                await self.officer_once(m, big=True)
            if len(self.fig.shared) > before:
                f.recovered = True
                self.out(f"{m.key}: records and shares again")
                break
            await asyncio.sleep(1)

    def full_log_lines(self, m: Member) -> list[str]:
        """The node's own log lines about the full store (not traceback lines)."""
        return [ln.strip() for ln in m.log.read_text(errors="replace").splitlines()
                if "is full" in ln and (" ERROR " in ln or " WARNING " in ln)]

    # -- healing and checking ----------------------------------------------------------------------

    def holdings(self) -> tuple[dict[str, dict[str, str]], dict[str, tuple[str, set[str]]], dict[str, int]]:
        """Per node: bundle id -> state; per bundle: (origin, recipients); per node: duplicate rows."""
        held: dict[str, dict[str, str]] = {}
        meta: dict[str, tuple[str, set[str]]] = {}
        dups: dict[str, int] = {}
        by_id = {m.node_id: m.key for m in self.m.values()}
        for m in self.m.values():
            conn = db_connect(m)
            try:
                rows = conn.execute("SELECT id, state, origin, seq FROM bundles").fetchall()
                recips: dict[int, set[str]] = {}
                for node, seq in conn.execute("SELECT node, seq FROM bundle_recipients"):
                    recips.setdefault(seq, set()).add(by_id.get(node, node))
                d = conn.execute("SELECT (SELECT count(*) - count(DISTINCT id) FROM bundles)"
                                 " + (SELECT count(*) - count(DISTINCT id) FROM records)").fetchone()[0]
                # Every readable bundle (all are seizures here) must have left its record version:
                # the current one in records, the others in record_versions.
                self.orphans[m.key] = conn.execute(
                    "SELECT count(*) FROM bundles b WHERE b.state = 'readable'"
                    " AND NOT EXISTS (SELECT 1 FROM records r WHERE r.bundle_id = b.id)"
                    " AND NOT EXISTS (SELECT 1 FROM record_versions v WHERE v.bundle_id = b.id)").fetchone()[0]
            finally:
                conn.close()
            held[m.key] = {r[0]: r[1] for r in rows}
            dups[m.key] = d
            for bid, _, origin, seq in rows:
                meta.setdefault(bid, (by_id.get(origin, origin), recips.get(seq, set())))
        return held, meta, dups

    def missing(self) -> tuple[dict[str, set[str]], dict[str, tuple[str, set[str]]], dict[str, dict[str, str]],
                               dict[str, int]]:
        """What each node still lacks: every bundle found anywhere or answered 201, at its origin and
        at each of its recipients."""
        held, meta, dups = self.holdings()
        want: dict[str, set[str]] = {}
        for bid, (origin, recips) in {**self.fig.shared, **meta}.items():
            for k in set(recips) | {origin}:
                if bid not in held.get(k, {}):
                    want.setdefault(k, set()).add(bid)
        return want, meta, held, dups

    def key_of(self, node_or_key: str) -> str:
        for m in self.m.values():
            if node_or_key in (m.node_id, m.key):
                return m.key
        return node_or_key

    async def heal(self) -> dict[str, set[str]]:
        """All nodes up and uncapped; force sync rounds until nothing is missing or ``settle`` runs out."""
        for m in self.m.values():
            if not m.up:
                await self.restart(m)
        start = time.monotonic()
        rounds = 0
        while True:
            want, *_ = await asyncio.to_thread(self.missing)
            if not want:
                self.out(f"healed: every bundle at every recipient {time.monotonic() - start:.1f} s after the chaos "
                         f"stopped ({rounds} forced sync passes)")
                return want
            if time.monotonic() - start > self.opts.settle:
                return want
            rounds += 1
            if rounds % 5 == 1:
                self.out(f"healing: {sum(len(v) for v in want.values())} deliveries missing at {len(want)} nodes")
            # What a watchful operator would run: `cenmesh sync` on the hubs and the nodes still missing bundles.
            targets = [m for m in self.m.values() if m.is_hub or m.key in want]
            await asyncio.gather(*(self.force_sync(m) for m in targets))
            await asyncio.sleep(0.5)

    async def force_sync(self, m: Member) -> None:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            await self.api(m, "POST", "/api/v1/sync", timeout=30)

    async def stop_one(self, m: Member) -> None:
        if m.proc is not None and m.proc.poll() is None:
            m.up = False
            m.proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(m.proc.wait, 30)

    async def stop_all(self) -> None:
        for m in self.m.values():
            if m.proc is not None and m.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(m.proc.pid, signal.SIGTERM)
        for m in self.m.values():
            if m.proc is None:
                continue
            try:
                await asyncio.to_thread(m.proc.wait, 15)
            except subprocess.TimeoutExpired:
                self.fig.notes.append(f"{m.key} did not stop within 15 s of SIGTERM: killed")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(m.proc.pid, signal.SIGKILL)
                await asyncio.to_thread(m.proc.wait)
            m.up = False

    def kill_all_now(self) -> None:
        for m in self.m.values():
            if m.proc is not None and m.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(m.proc.pid, signal.SIGKILL)
                m.proc.wait()

    # -- the whole run -----------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        t0 = time.monotonic()
        hubs = sum(m.is_hub for m in self.m.values())
        self.out(f"{len(self.m)} nodes ({hubs} hubs, {len(self.m) - hubs} administrations) in {self.root}; "
                 f"{self.capped.key} capped at {self.opts.full_cap_mb} MB")
        await asyncio.to_thread(self.setup)
        self.out(f"set up with cenmesh init / trust / endorse / directory add in {time.monotonic() - t0:.1f} s")
        async with aiohttp.ClientSession() as session:
            self.session = session
            for m in self.m.values():
                self.start(m)
            for m in self.m.values():
                await self.wait_ready(m)
            self.out(f"all {len(self.m)} `cenmesh run` processes answer (sync every {SYNC_INTERVAL_S} s "
                     f"+ up to {SYNC_JITTER_S} s)")
            await self.peer_all()
            await self.wait_directory()

            for f in self.fills:
                if f.how == "disk":
                    self.fill_disk(f)
                    self.out(f"{f.m.key}: its database is on a {self.opts.disk_mb} MB tmpfs, now filled up to 256 kB by a ballast file")
            self.t_start = time.monotonic()
            tasks = [asyncio.create_task(self.officers()), asyncio.create_task(self.killer()),
                     *(asyncio.create_task(self.filler(f)) for f in self.fills)]
            await asyncio.sleep(self.opts.duration)
            # The kills and the recovery may still be under way: let them finish, then stop the traffic.
            await asyncio.gather(*tasks[1:])
            self.stopping.set()
            await asyncio.gather(*tasks)
            chaos_s = time.monotonic() - self.t_start
            self.out(f"chaos over after {chaos_s:.1f} s: {len(self.fig.shared)} bundles shared, "
                     f"{self.fig.kills} SIGKILLs, refusals {dict(self.fig.share_errors)}")
            for f in self.fills:  # space returns anyway before healing (the run then fails as not recovered)
                if not f.recovered and f.how == "cap":
                    set_store_cap(f.m, None)
                    await self.stop_one(f.m)
                    await self.restart(f.m)
                elif not f.recovered and f.ballast.exists():
                    f.ballast.unlink()
            want = await self.heal()
            _, meta, held, dups = await asyncio.to_thread(self.missing)
        await self.stop_all()
        for f in self.fills:  # how much room each full node's store takes, to tell "full again" from a bug
            sizes = {n: (f.m.db_path.parent / n).stat().st_size for n in ("node.db", "node.db-wal")
                     if (f.m.db_path.parent / n).exists()}
            free = f", {os.statvfs(f.mount).f_bavail * os.statvfs(f.mount).f_frsize / 1e6:.1f} MB free" if f.mount else ""
            self.room[f.m.key] = (f"database {sizes.get('node.db', 0) / 1e6:.1f} MB, WAL "
                                  f"{sizes.get('node.db-wal', 0) / 1e6:.1f} MB{free}")
        integrity_failures = {m.key: v for m in self.m.values() if (v := integrity(m)) != "ok"}
        return self.summary(t0, chaos_s, want, meta, held, dups, integrity_failures)

    def summary(self, t0: float, chaos_s: float, want: dict[str, set[str]], meta: dict[str, tuple[str, set[str]]],
                held: dict[str, dict[str, str]], dups: dict[str, int], integrity_failures: dict[str, str]) -> dict[str, Any]:
        lost = {b for v in want.values() for b in v}
        accepted = set(self.fig.shared) | set(meta)
        unreadable = sum(1 for bid, (_, recips) in meta.items() for k in recips
                         if held.get(k, {}).get(bid) not in (None, "readable"))
        out_of_audience = sum(1 for m in self.m.values() if not m.is_hub
                              for bid in held[m.key] if bid in meta and m.key not in meta[bid][1])
        deliveries = sum(len(r) for _, r in meta.values())
        orphans = sum(self.orphans.values())
        # Exactly the intended recipients: the sealed recipient list is what the audience names.
        wrong_recipients = sorted(b for b, keys in self.intended.items() if b in meta and meta[b][1] != keys)
        full_logged = [ln for f in self.fills for ln in self.full_log_lines(f.m)]
        # Clear: every refusal says store-full and names the file and what gives room back (the
        # setting, or disk space), and no call anywhere failed with an unexplained 5xx instead.
        clear = all(any(a["node"] == f.m.key for a in self.fig.full_answers) for f in self.fills) \
            and not self.fig.internal and all(
                a.get("error") in ("store-full", "imported-not-shared") and "is full" in str(a.get("detail", ""))
                and ("store.max_size_mb" in str(a.get("detail", "")) or "Free disk space" in str(a.get("detail", "")))
                for a in self.fig.full_answers)
        recovered = all(f.recovered and not want.get(f.m.key) for f in self.fills)
        fig = {
            "nodes": len(self.m), "hubs": sum(m.is_hub for m in self.m.values()), "seed": self.opts.seed,
            "bundles": len(accepted), "shared_201": len(self.fig.shared), "edits": self.fig.edits,
            "imports": self.fig.imports, "deliveries": deliveries,
            "kills": self.fig.kills, "random_kills": self.fig.random_kills, "restarts": self.fig.restarts,
            "disk_full_errors": len(self.fig.full_answers), "disk_full_log_lines": len(full_logged),
            "disk_full_clear": clear, "recovered": recovered,
            "full_nodes": {f.m.key: f.how for f in self.fills},
            "lost": len(lost), "missing_deliveries": sum(len(v) for v in want.values()),
            "unreadable": unreadable, "internal_errors": len(self.fig.internal),
            "refused_valid": len(self.fig.refused), "wrong_recipients": len(wrong_recipients), "readable_without_record": orphans, "out_of_audience": out_of_audience, "duplicates": sum(dups.values()),
            "integrity_failures": len(integrity_failures) + len(self.fig.integrity_after_kill),
            "chaos_s": round(chaos_s, 1), "wall_s": round(time.monotonic() - t0, 1),
        }
        print()
        print(f"cenmesh chaos run, seed {self.opts.seed}: {fig['nodes']} real nodes ({fig['hubs']} hubs)")
        print(f"  bundles accepted     {fig['bundles']} ({fig['shared_201']} answered 201 to an officer, of them "
              f"{self.fig.edits} new versions and {self.fig.imports} CSV imports; {deliveries} recipient copies)")
        unanswered = Counter(meta[b][0] for b in meta if b not in self.fig.shared)
        if unanswered:  # a kill cut the answer off, or a later write of the request (audit) found the store full
            print(f"      stored but not answered 201: {dict(unanswered)}")
        print(f"  SIGKILLs             {fig['kills']}, {fig['random_kills']} of them at random ({', '.join(self.fig.kill_log) or 'none'}), "
              f"{fig['restarts']} restarts")
        for f in self.fills:
            answers = [a for a in self.fig.full_answers if a["node"] == f.m.key]
            logged = self.full_log_lines(f.m)
            what = "store.max_size_mb" if f.how == "cap" else f"a real full disk ({self.opts.disk_mb} MB tmpfs)"
            print(f"  full disk            {f.m.key}, {what}: {len(answers)} '503 store-full' answers, "
                  f"{len(logged)} log lines naming it; recovered: {f.recovered and not want.get(f.m.key)}")
            if answers:
                print(f"      e.g. {json.dumps(answers[0])[:400]}")
            if logged:
                print(f"      log: {logged[0][:300]}")
            print(f"      at the end: {self.room.get(f.m.key, '?')}")
        print(f"  full disk clear      {clear}")
        print(f"  recovered            {recovered} (once space returned, each full node's officer shared again and the "
              f"node caught up)")
        print(f"  lost                 {fig['lost']} bundles ({fig['missing_deliveries']} missing recipient copies)")
        print(f"  unreadable copies    {unreadable} (and {orphans} readable bundles without their record)")
        print(f"  out of audience      {out_of_audience} national copies outside a bundle's recipients; "
              f"{len(wrong_recipients)} of {len(self.intended)} bundles sealed to other recipients than their "
              f"audience names {wrong_recipients[:3]}")
        print(f"  duplicate rows       {fig['duplicates']}")
        print(f"  integrity_check      {len(self.m) - len(integrity_failures)} of {len(self.m)} stores ok at the end; "
              f"{fig['kills'] - len(self.fig.integrity_after_kill)} of {fig['kills']} ok right after SIGKILL")
        for k, v in integrity_failures.items():
            print(f"      {k}: {v}")
        for v in self.fig.integrity_after_kill:
            print(f"      after kill {v}")
        for k, v in sorted(want.items()):
            print(f"      {k} misses {len(v)}: {sorted(v)[:3]}")
        other = {k: v for k, v in self.fig.share_errors.items()}
        print(f"  officer refusals     {other or 'none'}")
        for note in [*self.fig.internal[:5], *self.fig.refused[:5], *self.fig.notes[:5]]:
            print(f"      {note[:300]}")
        print(f"  time                 {fig['chaos_s']} s of chaos, {fig['wall_s']} s in all")
        return fig


def passed(fig: dict[str, Any]) -> bool:
    return (fig["lost"] == 0 and fig["out_of_audience"] == 0 and fig["duplicates"] == 0
            and fig["integrity_failures"] == 0 and fig["unreadable"] == 0 and fig["disk_full_clear"]
            and fig["internal_errors"] == 0 and fig["disk_full_log_lines"] > 0 and fig["refused_valid"] == 0
            and fig["readable_without_record"] == 0 and fig["wrong_recipients"] == 0
            and fig["recovered"] and fig["bundles"] > 0)


_locks: list[Any] = []


def lock(path: Path) -> bool:
    """Take an exclusive lock on ``path`` for the rest of this process; False when another has it."""
    fh = open(path, "a")  # noqa: SIM115 - held open on purpose: the lock lives as long as the file
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return False
    _locks.append(fh)
    return True


def run(opts: Options) -> dict[str, Any]:
    """Run the chaos once; returns the figures (the JSON line)."""
    made = opts.dir is None
    root = Path(tempfile.mkdtemp(prefix="cenmesh-chaos-")) if made else Path(opts.dir or "").resolve()
    if not made:
        if root.exists():
            if any(root.iterdir()) and not (root / ".cenmesh-chaos").exists():
                raise ChaosError(f"{root} exists and was not made by the chaos run; refusing to delete it")
            if (root / ".cenmesh-chaos").exists() and not lock(root / ".cenmesh-chaos"):
                raise ChaosError(f"another chaos run is using {root}; wait for it or choose another --dir")
            shutil.rmtree(root)
        root.mkdir(parents=True)
    (root / ".cenmesh-chaos").write_text("made by scripts/chaos.py\n")
    held = lock(root / ".cenmesh-chaos")  # kept until this process exits
    chaos = Chaos(opts, root, Out(opts.quiet))
    try:
        return asyncio.run(chaos.run())
    finally:
        assert held
        chaos.kill_all_now()
        chaos.unmount()
        if made and not opts.keep:
            shutil.rmtree(root, ignore_errors=True)
        elif not opts.quiet:
            print(f"folders and logs kept in {root}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    d = Options()
    p.add_argument("--nodes", type=int, default=d.nodes, help=f"real node processes (default {d.nodes})")
    p.add_argument("--kills", type=int, default=d.kills, help=f"SIGKILLs during the run (default {d.kills})")
    p.add_argument("--duration", type=float, default=d.duration, help=f"seconds of traffic and kills (default {d.duration:.0f})")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed: victims, timings, audiences")
    p.add_argument("--rate", type=float, default=d.rate, help=f"shares per second across the federation (default {d.rate})")
    p.add_argument("--settle", type=float, default=d.settle, help=f"seconds healing may take (default {d.settle:.0f})")
    p.add_argument("--full-cap-mb", type=int, default=d.full_cap_mb, help="database cap of the node that fills up")
    p.add_argument("--disk-mb", type=int, default=d.disk_mb,
                   help=f"size of the tmpfs that fills up (default {d.disk_mb}); it must hold what the node catches up on")
    p.add_argument("--real-disk", choices=("auto", "on", "off"), default="auto",
                   help="also put one node's database on a 4 MB tmpfs and fill it (needs root; auto: when mount works)")
    p.add_argument("--dir", help="folder for the nodes (default: a temporary folder, removed afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder and the nodes' logs")
    p.add_argument("-q", "--quiet", action="store_true", help="print the summary only")
    a = p.parse_args(argv)
    if a.kills < 0 or a.duration <= 0 or a.rate <= 0:
        p.error("--kills must be >= 0, --duration and --rate > 0")
    opts = Options(nodes=a.nodes, kills=a.kills, duration=a.duration, seed=a.seed, rate=a.rate, settle=a.settle,
                   full_cap_mb=a.full_cap_mb, disk_mb=a.disk_mb, real_disk=a.real_disk, dir=a.dir, keep=a.keep, quiet=a.quiet)
    try:
        fig = run(opts)
    except ChaosError as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    ok = passed(fig)
    print(("PASS: nothing lost, leaked, duplicated or corrupt" if ok else "FAIL: see above"), flush=True)
    print(json.dumps(fig), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
