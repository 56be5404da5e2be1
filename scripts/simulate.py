"""Federation at WCO scale: hundreds of real nodes in one process, only the network simulated.

Every node is a real node folder (``node.admin.init``: keys, node.toml, SQLite),
opened with ``open_node``; bundles are sealed, signed, served, fetched,
verified and ingested by the real code, and each node's own ``SyncDriver``
decides what to pull and push. Requests go through one ``MemoryTransport``
(DESIGN.md principle 8), wrapped per calling node (``LinkTransport``) to add
latency, drop requests, cut links and count bytes. Time is a shared fake
clock that advances the way the node scheduler does (a tick every
``tick_seconds(interval)``), jumping over ticks where no peer's round is due,
so a simulated hour needs no sleeping.

Latency is kept in simulated time: each request adds a one-way delay
(15-50 ms inside a region, 80-200 ms between regions, plus the body at
10 Mbit/s, plus any ``--latency-ms`` of the ``latency`` scenario) and, for
pushes, the real time the receiving node took to verify and store it. A
relay started by a push inherits the time its trigger arrived (a context
variable), so an urgent alert's delivery time is the sum of its hops.

Topology: ``--hubs`` RILO hubs (the first H regions of rilo_regions.json),
``--nationals`` national nodes spread over those regions (one per member
country, round robin), each endorsed by its region's hub; every node trusts
every hub. Hubs peer with every other hub and with the nationals of their
region; each national also peers with the next region's hub as a backup
(so one hub down does not cut its region off), and ``--bilateral`` pairs
of nationals in different regions peer directly.

Workload: ``--bundles`` bundles (a day's volume, created within the first
``--rounds`` sync intervals: a compressed, peak-load day): seizures to
``region:X`` (own region), urgent alerts to 1-3 named countries (pushed),
operation-group traffic to ``op:SIM-n`` (``--groups`` groups, rosters issued
by their owners before the day starts) and federation-wide bulletins.

Scenarios (``--scenarios``; all by default): no-faults, latency, loss-P,
partition (one region cut off for ``--partition-intervals``, then healed),
hub-down+loss (one hub stopped for ``--hub-down-s``, with loss P), restarts
(nationals stopped for 5 intervals, half restarted with their store, half
with an empty store and the same keys, which must catch up).

Measures, per scenario: the share of (bundle, recipient) pairs delivered by
the end; the time (and sync intervals, one round per peer per interval) until
every recipient holds each bundle, p50/p95/max, both over all recipients and
over those outside the scenario's fault zone (the stopped hub, the cut-off
region, the restarted nodes: they cannot receive while the fault lasts); the
same for routine and for urgent bundles; how long an empty store took to
catch up; bodies transferred beyond the one copy each holder needed; bytes
per node-hour (requests and answers with their headers) while busy and, after
the no-faults day, while idle; and any bundle held by a national outside its
audience (must be 0).

Prints a table per scenario, the idle-traffic figures (bytes per node-hour
by number of peers and by store size), writes a PNG of the delivery-time
distribution per scenario (``--plot``), and prints as its last line one
JSON object with the summary and whether each target was met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import logging
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The RILO regions and their members, as PROTOCOL.md's shared data gives them (copied into data/).
REGIONS_FILE = Path(os.environ.get("CENMESH_SIM_REGIONS", ROOT / "data" / "rilo_regions.json"))

# Simulated seconds by which the current task's requests run ahead of the shared clock.
VT: contextvars.ContextVar[float] = contextvars.ContextVar("sim_virtual_time", default=0.0)
# perf_counter() when the push that started this task's relay reached its receiver: the relay's
# first request adds the real time the receiver spent (verifying, storing) before passing it on.
WALL: contextvars.ContextVar[float | None] = contextvars.ContextVar("sim_wall_mark", default=None)
BANDWIDTH_BPS = 10e6 / 8

# -- the fake clock and the simulated network -------------------------------------------------


class FakeClock:
    """A mutable time shared by every node (seconds, like time.time)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class Traffic:
    requests: int = 0
    lost: int = 0
    unreachable: int = 0
    bodies_pushed: int = 0
    bodies_fetched: int = 0
    push_duplicates: int = 0  # pushed bodies the receiver already held
    push_rejected: int = 0
    bytes_by_node: dict[str, int] = field(default_factory=dict)

    def add(self, url: str, n: int) -> None:
        self.bytes_by_node[url] = self.bytes_by_node.get(url, 0) + n

    def reset(self) -> None:
        self.requests = self.lost = self.unreachable = self.bodies_pushed = self.bodies_fetched = 0
        self.push_duplicates = self.push_rejected = 0
        self.bytes_by_node.clear()


class Net:
    """Faults and latency shared by every link, and when each body reached each node."""

    def __init__(self, clock: FakeClock, rng: random.Random) -> None:
        self.clock = clock
        self.rng = rng
        self.loss = 0.0
        self.extra_latency_s = 0.0
        self.down: set[str] = set()
        self.island: set[str] = set()  # a partitioned region: no link crosses its border
        self.region_of: dict[str, str] = {}
        self.arrivals: dict[tuple[str, str], float] = {}
        self.touched: set[str] = set()

    def blocked(self, a: str, b: str) -> bool:
        return a in self.down or b in self.down or ((a in self.island) != (b in self.island))

    def one_way(self, a: str, b: str, nbytes: int) -> float:
        same = self.region_of.get(a) == self.region_of.get(b)
        base = self.rng.uniform(0.015, 0.05) if same else self.rng.uniform(0.08, 0.2)
        extra = self.rng.uniform(0.5, 1.5) * self.extra_latency_s if self.extra_latency_s else 0.0
        return base + extra + nbytes / BANDWIDTH_BPS


class LinkTransport:
    """One node's view of the shared MemoryTransport: cut links and dropped requests raise
    PeerUnavailable (as a dead link looks to the caller); latency and bytes are accounted."""

    def __init__(self, shared: Any, own_url: str, traffic: Traffic, net: Net, rng: random.Random) -> None:
        self.shared = shared
        self.own_url = own_url
        self.traffic = traffic
        self.net = net
        self.rng = rng

    async def send(self, base_url: str, method: str, path: str, query: str, body: bytes,
                   headers: dict[str, str]) -> Any:
        from node.transport import PeerUnavailable

        dst = base_url.rstrip("/")
        net, traffic = self.net, self.traffic
        traffic.requests += 1
        if net.blocked(self.own_url, dst):
            traffic.unreachable += 1
            raise PeerUnavailable(f"{base_url}: unreachable (simulated)")
        if net.loss and self.rng.random() < net.loss:
            traffic.lost += 1
            raise PeerUnavailable(f"{base_url}: simulated loss")
        pushed = path.endswith("/push")
        mark = WALL.get()
        if pushed and mark is not None:
            VT.set(VT.get() + time.perf_counter() - mark)
        VT.set(VT.get() + net.one_way(self.own_url, dst, len(body)))
        w0 = time.perf_counter()
        token = WALL.set(w0) if pushed else None
        try:
            resp = await self.shared.send(base_url, method, path, query, body, headers)
        finally:
            if token is not None:
                WALL.reset(token)
        if pushed:  # the receiver's real work before it answers (verify, store)
            VT.set(VT.get() + time.perf_counter() - w0)
        at_dst = net.clock.t + VT.get()
        VT.set(VT.get() + net.one_way(dst, self.own_url, len(resp.body)))
        # Bytes on the wire, roughly as HTTP/1.1 carries them: request line, headers (the
        # signature headers are most of an idle poll), bodies.
        n = len(method) + len(path) + len(query) + len(body) + len(resp.body) + 30 + \
            sum(len(k) + len(v) + 4 for k, v in headers.items()) + sum(len(k) + len(v) + 4 for k, v in resp.headers.items())
        traffic.add(self.own_url, n)
        traffic.add(dst, n)
        if pushed:
            traffic.bodies_pushed += body.count(b'"ct":')
            if resp.status == 200:
                answer = json.loads(resp.body)
                traffic.push_duplicates += len(answer.get("duplicate", []))
                traffic.push_rejected += len(answer.get("rejected", []))
                for bid in answer.get("accepted", []):
                    net.arrivals[(dst, bid)] = at_dst
                net.touched.add(dst)
        elif path.endswith("/fetch") and resp.status == 200:
            traffic.bodies_fetched += resp.body.count(b'"ct":')
            at_me = net.clock.t + VT.get()
            for bid in json.loads(body)["ids"]:
                net.arrivals[(self.own_url, bid)] = at_me
            net.touched.add(self.own_url)
        return resp


# -- building the federation ------------------------------------------------------------------


@dataclass
class SimNode:
    index: int
    name: str
    country: str
    region: str
    role: str
    home: Path
    url: str
    node_id: str = ""
    node: Any = None
    fed: Any = None
    driver: Any = None
    running: bool = True
    peer_ids: list[str] = field(default_factory=list)
    last_seq: int = 0
    held: set[str] = field(default_factory=set)


@dataclass
class World:
    root: Path
    clock: FakeClock
    shared: Any
    traffic: Traffic
    net: Net
    rng: random.Random
    nodes: list[SimNode]
    hub_desc: dict[str, Any]

    def by_id(self) -> dict[str, SimNode]:
        return {m.node_id: m for m in self.nodes}


def load_regions(hubs: int) -> list[dict[str, Any]]:
    data = json.loads(REGIONS_FILE.read_text())
    rilos = data["rilos"]
    if hubs < 1 or hubs > len(rilos):
        raise SystemExit(f"--hubs must be between 1 and {len(rilos)}")
    return list(rilos[:hubs])


def plan(nationals: int, regions: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(region code, country) for each national: round robin over the regions, each region's
    member countries in order; wraps around (a country then has two nodes) past the member count."""
    pools = [[(r["code"], c) for c in r["members"]] for r in regions]
    out: list[tuple[str, str]] = []
    cursor = [0] * len(pools)
    k = 0
    while len(out) < nationals:
        i = k % len(pools)
        pool = pools[i]
        out.append(pool[cursor[i] % len(pool)])
        cursor[i] += 1
        k += 1
    return out


def build(root: Path, args: argparse.Namespace, clock: FakeClock, rng: random.Random) -> World:
    from crypto.descriptor import endorse
    from node import admin
    from node.keystore import KeyStore
    from node.transport import MemoryTransport
    from protocol.descriptor import parse_descriptor

    regions = load_regions(args.hubs)
    nodes: list[SimNode] = []
    for i, r in enumerate(regions):
        nodes.append(SimNode(i, f"RILO {r['code']} hub", r.get("host_country") or r["members"][0], r["code"], "hub",
                             root / f"hub-{r['code']}", f"http://sim-{i}.invalid"))
    for j, (code, country) in enumerate(plan(args.nationals, regions)):
        i = args.hubs + j
        nodes.append(SimNode(i, f"{country} customs {j}", country, code, "national", root / f"nat-{j:04d}-{country}",
                             f"http://sim-{i}.invalid"))
    for m in nodes:
        out = admin.init(str(m.home), name=m.name, country=m.country, role=m.role, regions=[m.region],
                         listen=f"127.0.0.1:{10000 + m.index}", public_url=m.url)
        m.node_id = out["node"]
    hubs = [m for m in nodes if m.role == "hub"]
    hub_of = {m.region: m for m in hubs}
    hub_desc = {h.node_id: parse_descriptor(admin.own_descriptor(str(h.home))) for h in hubs}
    # Each hub endorses the nationals of its region (what 'cenmesh endorse' does), and the national
    # takes its endorsed descriptor back ('cenmesh directory add' of its own descriptor).
    for m in nodes:
        if m.role == "hub":
            continue
        endorsed = endorse(parse_descriptor(admin.own_descriptor(str(m.home))), KeyStore(hub_of[m.region].home).identity())
        path = root / f"{m.home.name}.endorsed.json"
        path.write_text(json.dumps(endorsed.obj))
        admin.directory_add(str(m.home), str(path))
    # Peerings, set up on both sides ('cenmesh peer add' at each end).
    links: set[tuple[int, int]] = set()

    def peer(a: SimNode, b: SimNode) -> None:
        links.add((min(a.index, b.index), max(a.index, b.index)))

    for i, a in enumerate(hubs):
        for b in hubs[i + 1:]:
            peer(a, b)
    codes = [r["code"] for r in regions]
    nationals = [m for m in nodes if m.role == "national"]
    for m in nationals:
        peer(m, hub_of[m.region])
        if args.backup_hub and len(hubs) > 1:
            peer(m, hub_of[codes[(codes.index(m.region) + 1) % len(codes)]])
    pairs = 0
    tries = 0
    while pairs < args.bilateral and tries < 100 * (args.bilateral + 1):
        tries += 1
        a, b = rng.sample(nationals, 2)
        key = (min(a.index, b.index), max(a.index, b.index))
        if a.region != b.region and key not in links:
            links.add(key)
            pairs += 1
    for x, y in links:
        nodes[x].peer_ids.append(nodes[y].node_id)
        nodes[y].peer_ids.append(nodes[x].node_id)
    net = Net(clock, random.Random(rng.random()))
    for m in nodes:
        net.region_of[m.url] = m.region
    world = World(root, clock, MemoryTransport(), Traffic(), net, rng, nodes, hub_desc)
    for m in nodes:
        open_sim_node(world, m, fresh_store=True)
    return world


def open_sim_node(world: World, m: SimNode, *, fresh_store: bool) -> None:
    """Open (or reopen) a node from its folder and attach it to the simulated network. A fresh
    store is set up as an operator would: trust every hub, add the peers ('cenmesh trust', 'peer add')."""
    from node.federation import Federation
    from node.peers import SyncDriver
    from node.runtime import open_node
    from node.store import directory as dir_store
    from node.store import peers as peer_store
    from node.transport import PeerClient

    node = open_node(m.home)
    if fresh_store:
        now = int(world.clock() * 1000)
        for hub_id, d in world.hub_desc.items():
            if hub_id != m.node_id:
                node.store.write_now(dir_store.add_anchor, d.node, d.obj["identity_key"], d.name)
                node.store.write_now(dir_store.save_descriptor, d.obj, now)
        url_of = {x.node_id: x.url for x in world.nodes}
        for pid in m.peer_ids:
            node.store.write_now(peer_store.add_peer, pid, url_of[pid])
        node.reload()
    node.clock = world.clock
    m.node = node
    m.fed = Federation(node)
    world.shared.register(m.url, m.fed)
    link = LinkTransport(world.shared, m.url, world.traffic, world.net, random.Random(world.rng.random()))
    m.driver = SyncDriver(node, PeerClient(node.identity, link, world.clock), rng=random.Random(world.rng.random()))
    m.fed.on_new_urgent.append(m.driver.on_pushed)
    m.running = True


async def stop_sim_node(world: World, m: SimNode) -> None:
    world.net.down.add(m.url)
    m.running = False
    await m.driver.drain()
    m.node.verifier.close()
    m.node.store.close()


async def restart_sim_node(world: World, m: SimNode, *, replace_store: bool) -> None:
    """Bring a stopped node back: with its store, or with an empty one (same keys and settings)."""
    if replace_store:
        db = m.node.settings.path(m.node.settings.store.path)
        for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            p.unlink(missing_ok=True)
        m.last_seq = 0
        m.held = set()
    open_sim_node(world, m, fresh_store=replace_store)
    await m.driver.load()
    world.net.down.discard(m.url)


def close_all(world: World | None) -> None:
    for m in world.nodes if world else []:
        try:
            if m.running and m.node is not None:
                m.node.verifier.close()
                m.node.store.close()
        except Exception:
            pass


# -- workload ----------------------------------------------------------------------------------


def seizure(i: int, rng: random.Random, country: str) -> dict[str, Any]:
    return {
        "category": "medicines",
        "date": "2026-03-24",
        "office": {"name": f"Port office {i}", "locode": "NGAPP"},
        "transport_mode": rng.choice(["sea", "air", "road"]), "detection_method": "risk-profiling",
        "concealment": "inside cartons of T-shirts",
        "commodity": {"description": f"surgical face masks, lot {i}", "hs_code": "630790"},
        "quantity": {"amount": str(1000 + i), "unit": "pieces"},
        "route": {"departure": "CN", "destination": country, "transit": []},
        "narrative": f"simulated seizure number {i}",
        "tlp": "AMBER",
    }


def alert(i: int) -> dict[str, Any]:
    return {
        "title": f"Suspect consignment {i}", "urgency": "immediate",
        "requested_action": "examine", "respond_by": "2030-01-01",
        "consignment": {"container": "CSQU3054383"},
        "suspected": {"category": "medicines", "commodity": {"description": "face masks"}},
        "tlp": "AMBER",
    }


def bulletin(i: int) -> dict[str, Any]:
    return {"subject": f"Bulletin {i}", "body": f"Federation-wide bulletin number {i}.", "tlp": "GREEN"}


@dataclass
class Tracked:
    id: str
    kind: str
    origin: str
    created_s: float
    urgent: bool
    recipients: set[str]
    first_hold: dict[str, float] = field(default_factory=dict)

    def complete_s(self, among: set[str] | None = None) -> float | None:
        """When the last of the recipients (or of those in ``among``) first held it."""
        want = self.recipients if among is None else self.recipients & among
        if any(r not in self.first_hold for r in want):
            return None
        return max((self.first_hold[r] for r in want), default=self.created_s)


@dataclass
class Job:
    at_s: float
    origin: SimNode
    kind: str
    audience: Any
    record: dict[str, Any]
    urgent: bool


def make_jobs(world: World, groups: dict[str, list[str]], bundles: int, t0: float, period_s: float) -> list[Job]:
    from protocol.bundle import Audience

    rng = world.rng
    nationals = [m for m in world.nodes if m.role == "national"] or world.nodes
    by_id = world.by_id()
    by_country: dict[str, list[str]] = {}
    for m in nationals:
        by_country.setdefault(m.country, []).append(m.node_id)
    jobs = []
    for i in range(bundles):
        origin = rng.choice(nationals)
        at = t0 + rng.uniform(0, period_s)
        roll = rng.random()
        others = sorted(c for c in by_country if c != origin.country)
        if roll < 0.5 or not others:
            jobs.append(Job(at, origin, "seizure", Audience("group", group=f"region:{origin.region}"),
                            seizure(i, rng, origin.country), False))
        elif roll < 0.7:
            countries = rng.sample(others, min(len(others), rng.randint(1, 3)))
            ids = tuple(sorted({n for c in countries for n in by_country[c]}))
            jobs.append(Job(at, origin, "alert", Audience("nodes", ids), alert(i), True))
        elif roll < 0.85 and groups:
            name = rng.choice(sorted(groups))
            member = by_id[rng.choice(groups[name])]
            jobs.append(Job(at, member, "seizure", Audience("group", group=name), seizure(i, rng, member.country), False))
        else:
            jobs.append(Job(at, origin, "message", Audience("federation"), bulletin(i), False))
    jobs.sort(key=lambda j: j.at_s)
    return jobs


# -- scenarios ---------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    loss: float = 0.0
    latency_ms: float = 0.0
    partition_s: float = 0.0  # one region cut off from t0 for this long
    hub_down_s: float = 0.0  # one hub stopped from t0 for this long
    restarts: int = 0  # nationals stopped at t0 + rounds/4 for 5 intervals (half get an empty store)


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    iv = args.interval_s
    all_ = {
        "no-faults": Scenario("no-faults"),
        "latency": Scenario("latency", latency_ms=args.latency_ms),
        "loss": Scenario(f"loss-{args.loss:g}", loss=args.loss),
        "partition": Scenario("partition", partition_s=args.partition_intervals * iv),
        "hub-down+loss": Scenario(f"hub-down+loss-{args.loss:g}", loss=args.loss, hub_down_s=args.hub_down_s),
        "restarts": Scenario("restarts", restarts=max(2, args.nationals // 40)),
    }
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()] if args.scenarios else list(all_)
    unknown = [n for n in names if n not in all_]
    if unknown:
        raise SystemExit(f"--scenarios: unknown {', '.join(unknown)} (known: {', '.join(all_)})")
    return [all_[n] for n in names]


# -- running a scenario ------------------------------------------------------------------------


async def drain_all(nodes: list[SimNode]) -> None:
    while any(m.running and m.driver.pending_pushes for m in nodes):
        await asyncio.gather(*(m.driver.drain() for m in nodes if m.running and m.driver.pending_pushes))


def next_due_ms(m: SimNode) -> float:
    """When a scheduler tick on this node would next do anything (inf: nothing known yet)."""
    if not m.driver.peers:
        return 0
    return min((0 if p.machine.in_round else p.machine.due_ms) for p in m.driver.peers.values())


async def sync_due(world: World, concurrency: int, *, force: bool = False, directory: bool = False) -> None:
    """One scheduler tick on every running node that has a round due (every one with ``force``).
    Skipping the others skips only sync_all's trust reload, which finds nothing new."""
    sem = asyncio.Semaphore(concurrency)
    now_ms = world.clock() * 1000

    async def one(m: SimNode) -> None:
        async with sem:
            await m.driver.sync_all(force=force, directory=directory)

    due = [m for m in world.nodes if m.running and (force or next_due_ms(m) <= now_ms)]
    await asyncio.gather(*(one(m) for m in due))
    await drain_all(world.nodes)
    world.net.touched.update(m.url for m in due)


async def observe(world: World, tracked: dict[str, Tracked], catchup: dict[str, tuple[float, set[str], list[float]]]) -> None:
    """Note which bundles each touched node newly holds, and when they arrived."""
    touched = world.net.touched
    world.net.touched = set()
    for m in world.nodes:
        if not m.running or m.url not in touched:
            continue
        last = m.last_seq
        rows = await m.node.store.read(lambda conn, last=last: conn.execute(
            "SELECT seq, id FROM bundles WHERE seq > ? ORDER BY seq", (last,)).fetchall())
        for seq, bid in rows:
            m.last_seq = seq
            m.held.add(bid)
            at = world.net.arrivals.pop((m.url, bid), world.clock.t)
            t = tracked.get(bid)
            if t is not None and m.node_id in t.recipients and m.node_id not in t.first_hold:
                t.first_hold[m.node_id] = max(at, t.created_s)
            c = catchup.get(m.node_id)
            if c is not None:
                c[1].discard(bid)
                if not c[1] and not c[2]:
                    c[2].append(world.clock.t - c[0])


async def setup_groups(world: World, args: argparse.Namespace) -> dict[str, list[str]]:
    """Operation groups: an owner issues each roster; members hold it before the day starts."""
    from node.outbox import issue_roster

    nationals = [m for m in world.nodes if m.role == "national"]
    groups: dict[str, list[str]] = {}
    for g in range(args.groups if len(nationals) > 2 else 0):
        owner = world.rng.choice(nationals)
        others = [m for m in nationals if m is not owner]
        members = world.rng.sample(others, min(len(others), world.rng.randint(5, 15)))
        name = f"op:SIM-{g + 1}"
        _, bundle = await issue_roster(owner.node, name, [m.node_id for m in members], "2030-12-31")
        owner.driver.push_soon([bundle])
        groups[name] = [owner.node_id] + [m.node_id for m in members]
    await drain_all(world.nodes)
    by_id = world.by_id()
    for _ in range(8):
        if all(name in by_id[n].node.rosters for name, ids in groups.items() for n in ids):
            break
        world.clock.t += args.interval_s
        await sync_due(world, args.concurrency, force=True)
    return groups


@dataclass
class Template:
    """A warmed-up federation on disk (stores closed), copied for each scenario."""

    root: Path
    nodes: list[SimNode]
    hub_desc: dict[str, Any]
    groups: dict[str, list[str]]
    clock_t: float
    warm_rounds: int
    setup_s: float


async def prepare(args: argparse.Namespace) -> Template:
    """Build the federation once; directories spread by gossip (hubs learn their nationals, then
    each other's, then the nationals learn everyone) and the operation groups' rosters arrive.
    No faults, not measured."""
    wall0 = time.monotonic()
    rng = random.Random(f"{args.seed}-build")
    root = Path(tempfile.mkdtemp(prefix="cenmesh-sim-template-"))
    clock = FakeClock(float(int(time.time())))
    world = build(root, args, clock, rng)
    try:
        want = len(world.nodes)
        warm = 0
        while warm < 12:
            warm += 1
            clock.t += args.interval_s
            await sync_due(world, args.concurrency, force=True, directory=True)
            if all(len(m.node.directory) >= want for m in world.nodes):
                break
        short = [m.name for m in world.nodes if len(m.node.directory) < want]
        if short:
            print(f"warning: after {warm} warm-up rounds {len(short)} nodes lack descriptors", file=sys.stderr)
        groups = await setup_groups(world, args)
        await drain_all(world.nodes)
    finally:
        close_all(world)
    for m in world.nodes:
        m.node = m.fed = m.driver = None
    return Template(root, world.nodes, world.hub_desc, groups, clock.t, warm, time.monotonic() - wall0)


def world_from(template: Template, root: Path, rng: random.Random) -> World:
    """A copy of the template's node folders, opened: same keys, stores, peers and cursors."""
    from node.transport import MemoryTransport

    shutil.copytree(template.root, root, dirs_exist_ok=True)
    clock = FakeClock(template.clock_t)
    nodes = [SimNode(m.index, m.name, m.country, m.region, m.role, root / m.home.name, m.url, m.node_id,
                     peer_ids=list(m.peer_ids)) for m in template.nodes]
    net = Net(clock, random.Random(rng.random()))
    for m in nodes:
        net.region_of[m.url] = m.region
    world = World(root, clock, MemoryTransport(), Traffic(), net, rng, nodes, template.hub_desc)
    for m in nodes:
        open_sim_node(world, m, fresh_store=False)
    return world


async def run_scenario(sc: Scenario, args: argparse.Namespace, template: Template) -> dict[str, Any]:
    from node.outbox import create_local, share
    from node.scheduler import tick_seconds

    rng = random.Random(f"{args.seed}")
    wall0 = time.monotonic()
    cpu0 = time.process_time()
    root = Path(tempfile.mkdtemp(prefix=f"cenmesh-sim-{sc.name}-"))
    world: World | None = None
    try:
        world = world_from(template, root, rng)
        clock = world.clock
        nodes = world.nodes
        net, traffic = world.net, world.traffic
        setup_s = time.monotonic() - wall0
        interval = float(args.interval_s)
        warm, groups = template.warm_rounds, template.groups
        # The nodes come up at random moments over one interval, as a real federation's would,
        # so their rounds are not in step.
        t_up = clock.t + interval
        for m in sorted(nodes, key=lambda _: rng.random()):
            clock.t = t_up + rng.uniform(0, interval)
            await m.driver.load()
        clock.t = t_up + interval
        net.touched = {m.url for m in nodes}
        await observe(world, {}, {})

        # -- the measured day --------------------------------------------------------------
        tick = float(tick_seconds(args.interval_s))
        t0 = clock.t = math.ceil(clock.t / tick) * tick
        jobs = make_jobs(world, groups, args.bundles, t0, args.rounds * interval)
        busy_end = t0 + args.rounds * interval
        end = t0 + (args.rounds + args.settle) * interval
        net.loss = sc.loss
        net.extra_latency_s = sc.latency_ms / 1000
        hubs = [m for m in nodes if m.role == "hub"]
        nationals = [m for m in nodes if m.role == "national"]
        fault_zone: set[str] = set()  # recipients a fault keeps away for a while
        events: list[tuple[float, str, Any]] = []
        if sc.partition_s:
            region = hubs[1 % len(hubs)].region
            island = {m.url for m in nodes if m.region == region}
            net.island = island
            fault_zone |= {m.node_id for m in nodes if m.url in island}
            events.append((t0 + sc.partition_s, "heal", None))
        if sc.hub_down_s:
            hub = hubs[1 % len(hubs)]
            await stop_sim_node(world, hub)
            fault_zone.add(hub.node_id)
            events.append((t0 + sc.hub_down_s, "start", (hub, False)))
        if sc.restarts:
            chosen = rng.sample(nationals, min(sc.restarts, len(nationals)))
            at = t0 + max(1, args.rounds // 4) * interval
            for k, m in enumerate(chosen):
                events.append((at, "stop", m))
                events.append((at + 5 * interval, "start", (m, k % 2 == 1)))
                fault_zone.add(m.node_id)
        events.sort(key=lambda e: e[0])
        replaced: list[str] = []
        lost_copies = 0
        catchup: dict[str, tuple[float, set[str], list[float]]] = {}
        tracked: dict[str, Tracked] = {}
        refused = 0
        busy_bytes: dict[str, int] | None = None
        ji = ei = 0
        ticks = 0
        while clock.t < end:
            # Faults that start or end now.
            while ei < len(events) and events[ei][0] <= clock.t:
                _, what, obj = events[ei]
                ei += 1
                if what == "heal":
                    net.island = set()
                elif what == "stop":
                    await stop_sim_node(world, obj)
                elif what == "start":
                    m, replace = obj
                    if replace:  # the copies it held are gone: fetching them again is needed work
                        lost_copies += len(m.held & set(tracked))
                    await restart_sim_node(world, m, replace_store=replace)
                    net.touched.add(m.url)
                    if replace:
                        replaced.append(m.node_id)
                        need = {t.id for t in tracked.values() if m.node_id in t.recipients}
                        catchup[m.node_id] = (clock.t, need, [] if need else [0.0])
            # The next tick at which some running node has a round due (or a fault changes).
            due_s = min((next_due_ms(m) / 1000 for m in nodes if m.running), default=end)
            nxt = max(clock.t + tick, math.ceil(due_s / tick) * tick) if due_s > clock.t else clock.t + tick
            if ei < len(events):
                nxt = min(nxt, math.ceil(events[ei][0] / tick) * tick)
            nxt = min(nxt, math.ceil(end / tick) * tick)
            # Officers share between ticks: sealed, stored and pushed at once (as the officer API does).
            while ji < len(jobs) and jobs[ji].at_s < nxt:
                job = jobs[ji]
                ji += 1
                if not job.origin.running:
                    continue  # a stopped node's officers wait; not part of the day's traffic
                clock.t = max(clock.t, job.at_s)
                node = job.origin.node
                try:
                    rec = await create_local(node, job.kind, job.record)
                    bundle = await share(node, rec["id"], job.audience, urgent=job.urgent)
                except Exception as exc:  # a refused share is a finding, not a crash
                    refused += 1
                    print(f"[{sc.name}] share refused at {job.origin.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
                    continue
                tracked[bundle.id] = Tracked(bundle.id, job.kind, job.origin.node_id, clock.t, job.urgent,
                                             set(bundle.recipient_ids) - {job.origin.node_id})
                job.origin.driver.push_soon([bundle])
                await drain_all(nodes)
                await observe(world, tracked, catchup)
            clock.t = nxt
            await sync_due(world, args.concurrency)
            ticks += 1
            await observe(world, tracked, catchup)
            if busy_bytes is None and clock.t >= busy_end:
                busy_bytes = dict(traffic.bytes_by_node)
            if ji >= len(jobs) and clock.t >= busy_end and ei >= len(events) and \
                    all(t.complete_s() is not None for t in tracked.values()) and all(c[2] for c in catchup.values()):
                break
        done_s = clock.t
        busy_bytes = busy_bytes if busy_bytes is not None else dict(traffic.bytes_by_node)
        busy_span = max(interval, min(clock.t, busy_end) - t0)

        # Idle: no new bundles for --idle intervals; every node keeps polling its peers.
        idle: dict[str, Any] = {}
        if args.idle and sc.name == "no-faults":
            before = dict(traffic.bytes_by_node)
            idle_end = clock.t + args.idle * interval
            while clock.t < idle_end:
                due_s = min(next_due_ms(m) / 1000 for m in nodes)
                clock.t = max(clock.t + tick, math.ceil(due_s / tick) * tick)
                await sync_due(world, args.concurrency)
            idle = await idle_figures(world, before, args.idle * interval)

        # -- measures --------------------------------------------------------------------
        name_of = {m.node_id: m.name for m in nodes}
        if args.verbose:
            for t in tracked.values():
                if t.complete_s() is None:
                    missing = [name_of.get(r, r) for r in t.recipients - set(t.first_hold)]
                    print(f"[{sc.name}] undelivered {t.kind}{' urgent' if t.urgent else ''} {t.id} from "
                          f"{name_of[t.origin]} at +{t.created_s - t0:.0f}s: missing {missing}", file=sys.stderr)
        out_of_audience = 0
        for m in nodes:
            if m.role == "hub":
                continue
            for bid in m.held:
                held_t = tracked.get(bid)
                if held_t is not None and m.node_id not in held_t.recipients and m.node_id != held_t.origin:
                    out_of_audience += 1
        pairs = sum(len(t.recipients) for t in tracked.values())
        got = sum(len(t.first_hold) for t in tracked.values())
        reachable = {m.node_id for m in nodes} - fault_zone

        def late(t: Tracked, among: set[str] | None = None) -> float:
            c = t.complete_s(among)
            return math.inf if c is None else c - t.created_s  # never delivered: infinitely late

        all_s = [late(t) for t in tracked.values()]
        routine = [late(t) / interval for t in tracked.values() if not t.urgent]
        urgent = [late(t) for t in tracked.values() if t.urgent]
        reach_iv = [late(t, reachable) / interval for t in tracked.values()]
        # Bodies moved vs bodies that had to move: every copy held by a node other than the origin
        # arrived once by push or fetch (a replaced store's second copy counts as needed too).
        needed = sum(len(m.held & set(tracked)) for m in nodes) - len(tracked) + lost_copies
        moved = traffic.bodies_pushed + traffic.bodies_fetched
        polls = sum(p.machine.stats["polls"] for m in nodes if m.running for p in m.driver.peers.values())
        fails = sum(p.machine.stats["failures"] for m in nodes if m.running for p in m.driver.peers.values())
        hours = busy_span / 3600
        hub_urls = {m.url for m in hubs}
        nat_urls = {m.url for m in nationals}
        per_hour = {u: busy_bytes.get(u, 0) / hours for u in (hub_urls | nat_urls)}
        return {
            "scenario": sc.name, "loss": sc.loss, "nodes": len(nodes), "hubs": args.hubs, "nationals": args.nationals,
            "bundles": len(tracked), "refused": refused, "warmup_rounds": warm, "groups": len(groups),
            "recipient_pairs": pairs, "delivered_pairs": got,
            "delivered_ratio": round(got / pairs, 6) if pairs else 1.0,
            "bundles_complete": sum(t.complete_s() is not None for t in tracked.values()),
            "p50_s": pct(all_s, 50), "p95_s": pct(all_s, 95), "max_s": finite_max(all_s),
            "p50_intervals": iv(pct(all_s, 50), interval), "p95_intervals": iv(pct(all_s, 95), interval),
            "max_intervals": iv(finite_max(all_s), interval),
            "reachable_p95_intervals": pct(reach_iv, 95), "fault_zone": len(fault_zone),
            "routine_p95_intervals": pct(routine, 95), "routine_max_intervals": finite_max(routine),
            "urgent_p95_s": pct(urgent, 95), "urgent_max_s": finite_max(urgent),
            "catchup_intervals": max((c[2][0] / interval for c in catchup.values() if c[2]), default=None),
            "replaced_caught_up": f"{sum(bool(c[2]) for c in catchup.values())}/{len(catchup)}",
            "out_of_audience": out_of_audience,
            "bodies_moved": moved, "bodies_pushed": traffic.bodies_pushed, "bodies_fetched": traffic.bodies_fetched,
            "bodies_needed": needed, "duplicate_bodies": moved - needed,
            "duplicate_body_ratio": round((moved - needed) / moved, 4) if moved else 0.0,
            "push_duplicates": traffic.push_duplicates, "push_rejected": traffic.push_rejected,
            "peer_polls": polls, "peer_failures": fails,
            "requests": traffic.requests, "requests_lost": traffic.lost, "requests_unreachable": traffic.unreachable,
            "busy_bytes_per_hour_hub": int(statistics.mean(per_hour[u] for u in hub_urls)) if hub_urls else 0,
            "busy_bytes_per_hour_national": int(statistics.mean(per_hour[u] for u in nat_urls)) if nat_urls else 0,
            "idle": idle,
            "simulated_s": round(done_s - t0, 1), "ticks": ticks, "wall_setup_s": round(setup_s, 1),
            "wall_s": round(time.monotonic() - wall0, 1), "cpu_s": round(time.process_time() - cpu0, 1),
            "delivery_s": [x for x in all_s if not math.isinf(x)],
            "delivery_outside_zone_s": [x * interval for x in reach_iv if not math.isinf(x)] if fault_zone else [],
        }
    finally:
        close_all(world)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"[{sc.name}] node folders kept in {root}", file=sys.stderr)


async def idle_figures(world: World, before: dict[str, int], span_s: float) -> dict[str, Any]:
    """Idle sync bytes per node-hour, by number of peers and by store size."""
    rows = []
    for m in world.nodes:
        n = await m.node.store.read(lambda conn: conn.execute("SELECT count(*) FROM bundles").fetchone()[0])
        sent = world.traffic.bytes_by_node.get(m.url, 0) - before.get(m.url, 0)
        rows.append((m.role, len(m.driver.peers), n, sent * 3600 / span_s))
    by_peers: dict[str, list[float]] = {}
    for role, peers, _, b in rows:
        by_peers.setdefault(f"{role} {peers} peers", []).append(b)
    # Within the nationals of the most common peer count: the smallest vs the largest stores.
    nat = [r for r in rows if r[0] == "national"]
    common = statistics.mode([r[1] for r in nat]) if nat else 0
    same = sorted((r for r in nat if r[1] == common), key=lambda r: r[2])
    q = max(1, len(same) // 4)
    small, large = same[:q], same[-q:]
    return {
        "bytes_per_hour_by_peers": {k: int(statistics.mean(v)) for k, v in sorted(by_peers.items(), key=lambda kv: kv[0])},
        "nodes_by_peers": {k: len(v) for k, v in by_peers.items()},
        "store_size_compare": {
            "peers": common,
            "small_stores": [min(r[2] for r in small), max(r[2] for r in small)] if small else None,
            "small_bytes_per_hour": int(statistics.mean(r[3] for r in small)) if small else None,
            "large_stores": [min(r[2] for r in large), max(r[2] for r in large)] if large else None,
            "large_bytes_per_hour": int(statistics.mean(r[3] for r in large)) if large else None,
        },
    }


def iv(seconds: float | None, interval: float) -> float | None:
    return None if seconds is None else seconds / interval


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None when empty or when it falls on an undelivered bundle."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, math.ceil(p / 100 * len(v)) - 1))
    return None if math.isinf(v[k]) else v[k]


def finite_max(values: list[float]) -> float | None:
    return None if not values or math.isinf(max(values)) else max(values)


# -- report ------------------------------------------------------------------------------------


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def print_table(results: list[dict[str, Any]]) -> None:
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("nodes (hubs + nationals)", lambda r: f"{r['nodes']} ({r['hubs']}+{r['nationals']})"),
        ("bundles (refused), op groups", lambda r: f"{r['bundles']} ({r['refused']}), {r['groups']}"),
        ("delivered ratio (pairs)", lambda r: f"{r['delivered_ratio']:.4f} ({r['delivered_pairs']}/{r['recipient_pairs']})"),
        ("bundles fully delivered", lambda r: f"{r['bundles_complete']}/{r['bundles']}"),
        ("to every recipient p50/p95/max s", lambda r: f"{fmt(r['p50_s'])} / {fmt(r['p95_s'])} / {fmt(r['max_s'])}"),
        ("  in intervals (sync rounds)", lambda r: f"{fmt(r['p50_intervals'])} / {fmt(r['p95_intervals'])} / {fmt(r['max_intervals'])}"),
        ("p95 outside fault zone (iv.)", lambda r: f"{fmt(r['reachable_p95_intervals'])} (zone {r['fault_zone']})"),
        ("routine p95 / max (intervals)", lambda r: f"{fmt(r['routine_p95_intervals'])} / {fmt(r['routine_max_intervals'])}"),
        ("urgent p95 / max (sim s)", lambda r: f"{fmt(r['urgent_p95_s'])} / {fmt(r['urgent_max_s'])}"),
        ("empty-store catch-up (iv.)", lambda r: f"{fmt(r['catchup_intervals'])} ({r['replaced_caught_up']})"),
        ("out of audience", lambda r: str(r["out_of_audience"])),
        ("bodies moved (push+fetch)", lambda r: f"{r['bodies_moved']} ({r['bodies_pushed']}+{r['bodies_fetched']})"),
        ("needed / duplicates (ratio)", lambda r: f"{r['bodies_needed']} / {r['duplicate_bodies']} ({r['duplicate_body_ratio']:.3f})"),
        ("of which pushed to a holder", lambda r: str(r["push_duplicates"])),
        ("requests (lost, unreachable)", lambda r: f"{r['requests']} ({r['requests_lost']}, {r['requests_unreachable']})"),
        ("peer polls / failed rounds", lambda r: f"{r['peer_polls']} / {r['peer_failures']}"),
        ("busy bytes/h: hub, national", lambda r: f"{r['busy_bytes_per_hour_hub']}, {r['busy_bytes_per_hour_national']}"),
        ("simulated s / ticks", lambda r: f"{r['simulated_s']} / {r['ticks']}"),
        ("wall s (setup) / cpu s", lambda r: f"{r['wall_s']} ({r['wall_setup_s']}) / {r['cpu_s']}"),
    ]
    w0 = max(len(r[0]) for r in rows)
    cols = [[f(res) for _, f in rows] for res in results]
    widths = [max(len(res["scenario"]), *(len(c) for c in col)) for res, col in zip(results, cols, strict=True)]
    print(" " * w0 + "  " + "  ".join(res["scenario"].ljust(w) for res, w in zip(results, widths, strict=True)))
    for i, (label, _) in enumerate(rows):
        print(label.ljust(w0) + "  " + "  ".join(col[i].ljust(w) for col, w in zip(cols, widths, strict=True)))


def print_idle(idle: dict[str, Any]) -> None:
    if not idle:
        return
    print("idle sync traffic (no new bundles), bytes per node-hour:")
    for k, v in idle["bytes_per_hour_by_peers"].items():
        print(f"  {k:<22} {v:>10}  ({idle['nodes_by_peers'][k]} nodes)")
    s = idle["store_size_compare"]
    if s["small_stores"]:
        print(f"  nationals with {s['peers']} peers: stores of {s['small_stores'][0]}-{s['small_stores'][1]} bundles "
              f"{s['small_bytes_per_hour']} B/h, stores of {s['large_stores'][0]}-{s['large_stores'][1]} bundles "
              f"{s['large_bytes_per_hour']} B/h")


def plot(results: list[dict[str, Any]], interval: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for r in results:
        xs = sorted(x / interval for x in r["delivery_s"])
        if not xs:
            continue
        n = r["bundles"] or len(xs)
        line = ax.step(xs, [(i + 1) / n for i in range(len(xs))], where="post",
                       label=f"{r['scenario']} (p95 {fmt(r['p95_intervals'])})")[0]
        zs = sorted(x / interval for x in r["delivery_outside_zone_s"])
        if zs:  # the same bundles, counting only the recipients outside the fault zone
            ax.step(zs, [(i + 1) / n for i in range(len(zs))], where="post", ls="--", color=line.get_color(),
                    label=f"  outside its fault zone (p95 {fmt(r['reachable_p95_intervals'])})")
    ax.axvline(3, color="grey", ls="--", lw=0.8)
    ax.axvline(10, color="grey", ls=":", lw=0.8)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)
    ax.set_xlabel(f"time until every recipient holds the bundle (sync intervals of {interval:g} s)")
    ax.set_ylabel("share of bundles")
    ax.set_title(f"cenmesh simulation: {results[0]['nodes']} nodes, {results[0]['bundles']} bundles per scenario")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _one(sc: Scenario, args: argparse.Namespace, template: Template) -> dict[str, Any]:
    r = asyncio.run(run_scenario(sc, args, template))
    print(f"[{sc.name}] done in {r['wall_s']} s wall, {r['cpu_s']} s cpu", file=sys.stderr, flush=True)
    return r


def run_all(chosen: list[Scenario], args: argparse.Namespace, template: Template) -> list[dict[str, Any]]:
    """Each scenario on its own copy of the template; with --jobs > 1 in worker processes (the
    scenarios share nothing but the template folder, which they only copy). Longest first."""
    if args.jobs <= 1 or len(chosen) == 1:
        return [_one(sc, args, template) for sc in chosen]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    order = sorted(chosen, key=lambda sc: -(sc.hub_down_s + sc.partition_s))
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
        futures = {sc.name: pool.submit(_one, sc, args, template) for sc in order}
        return [futures[sc.name].result() for sc in chosen]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nationals", type=int, default=20)
    p.add_argument("--hubs", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--bundles", type=int, default=100, help="the day's bundles, per scenario")
    p.add_argument("--rounds", type=int, default=20, help="sync intervals over which the bundles are created")
    p.add_argument("--settle", type=int, default=None, help="extra intervals allowed to finish delivery "
                   "(default: enough for the hub outage plus 60)")
    p.add_argument("--interval-s", type=int, default=30)
    p.add_argument("--scenarios", default="", help="comma-separated: no-faults,latency,loss,partition,hub-down+loss,restarts")
    p.add_argument("--loss", type=float, default=0.2, help="request loss of the lossy scenarios")
    p.add_argument("--latency-ms", type=float, default=200.0, help="one-way latency the latency scenario adds (+-50%%)")
    p.add_argument("--partition-intervals", type=int, default=20)
    p.add_argument("--hub-down-s", type=float, default=3600.0)
    p.add_argument("--groups", type=int, default=3, help="operation groups")
    p.add_argument("--bilateral", type=int, default=None, help="bilateral national pairs (default nationals/10)")
    p.add_argument("--no-backup-hub", dest="backup_hub", action="store_false", help="nationals peer with their own hub only")
    p.add_argument("--idle", type=int, default=20, help="idle intervals measured after the no-faults day (0: skip)")
    p.add_argument("--concurrency", type=int, default=16, help="nodes syncing at once")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="scenarios run at once, "
                   "each in its own process (default: up to 2)")
    p.add_argument("--plot", default="docs/img/simulate-delivery.png", help="PNG of the delivery-time distribution, the README's figure by default ('' to skip)")
    p.add_argument("--keep", action="store_true", help="keep the node folders")
    p.add_argument("--verbose", action="store_true", help="list undelivered bundles")
    args = p.parse_args(argv)
    if args.bilateral is None:
        args.bilateral = args.nationals // 10
    if args.settle is None:
        args.settle = 60 + math.ceil(args.hub_down_s / args.interval_s)
    os.environ["CENMESH_SYNC__VERIFY_PROCESSES"] = "1"
    os.environ["CENMESH_SYNC__INTERVAL_S"] = str(args.interval_s)
    logging.basicConfig(level=logging.ERROR)
    wall0 = time.monotonic()
    chosen = scenarios(args)
    template = asyncio.run(prepare(args))
    print(f"federation built and warmed up in {template.setup_s:.1f} s wall", file=sys.stderr, flush=True)
    results = run_all(chosen, args, template)
    if not args.keep:
        shutil.rmtree(template.root, ignore_errors=True)
    print_table(results)
    by = {r["scenario"]: r for r in results}
    print_idle(by.get("no-faults", {}).get("idle", {}))
    if args.plot:
        path = Path(args.plot).resolve()
        plot(results, float(args.interval_s), path)
        print(f"plot: {path}")
    nofault = by.get("no-faults")
    urgent_in = [r["urgent_p95_s"] for r in results if r["scenario"] in ("no-faults", "latency")]
    faulty = next((r for r in results if r["scenario"].startswith("hub-down+loss")), None)
    summary = {
        "nodes": results[0]["nodes"], "hubs": args.hubs, "nationals": args.nationals, "bundles": args.bundles,
        "seed": args.seed, "interval_s": args.interval_s,
        "delivered_ratio": min(r["delivered_ratio"] for r in results),
        "out_of_audience": sum(r["out_of_audience"] for r in results),
        "routine_p95_intervals": nofault["routine_p95_intervals"] if nofault else None,
        "urgent_p95_s": None if not urgent_in or None in urgent_in else max(urgent_in),
        "faulty_p95_intervals": faulty["reachable_p95_intervals"] if faulty else None,
        "faulty_p95_intervals_all_recipients": faulty["p95_intervals"] if faulty else None,
        "duplicate_body_ratio": max(r["duplicate_body_ratio"] for r in results),
        "idle": nofault["idle"] if nofault else {},
        "refused": sum(r["refused"] for r in results),
        "wall_s": round(time.monotonic() - wall0, 1),
        "scenarios": {r["scenario"]: {k: r[k] for k in (
            "delivered_ratio", "p50_intervals", "p95_intervals", "max_intervals", "reachable_p95_intervals",
            "routine_p95_intervals", "urgent_p95_s", "catchup_intervals", "out_of_audience", "duplicate_body_ratio",
            "busy_bytes_per_hour_hub", "busy_bytes_per_hour_national", "wall_s")} for r in results},
    }
    summary["targets"] = targets(summary)
    print(json.dumps(summary, sort_keys=True))
    return 0


def targets(s: dict[str, Any]) -> dict[str, bool | None]:
    """The issue's targets, judged on this run's figures (None: the scenario was not run)."""
    def le(v: Any, limit: float) -> bool | None:
        return None if v is None else v <= limit

    return {
        "all_delivered": s["delivered_ratio"] == 1.0,
        "none_out_of_audience": s["out_of_audience"] == 0,
        "routine_p95_within_3_intervals": le(s["routine_p95_intervals"], 3),
        "urgent_p95_within_2_s": le(s["urgent_p95_s"], 2),
        "faulty_p95_within_10_intervals": le(s["faulty_p95_intervals"], 10),
        "duplicate_bodies_under_5_percent": s["duplicate_body_ratio"] < 0.05,
    }


if __name__ == "__main__":
    sys.exit(main())
