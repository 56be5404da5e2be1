"""Federation at WCO scale, part 1: hundreds of real nodes in one process, only the network simulated.

Every node is a real node folder (``node.admin.init``: keys, node.toml, SQLite),
opened with ``open_node``; bundles are sealed, signed, served, fetched,
verified and ingested by the real code. Requests go through one
``MemoryTransport`` (DESIGN.md principle 8), wrapped per calling node to
count bytes and drop requests (``--loss``). Time is a shared fake clock that
advances like the node scheduler does (a tick every interval/3), so a
simulated day needs no sleeping.

Topology: ``--hubs`` RILO hubs (the first H regions of rilo_regions.json),
``--nationals`` national nodes spread over those regions (one per member
country, round robin over the regions), each endorsed by its region's hub;
every node trusts every hub; nationals peer with their hub, hubs with every
other hub.

Workload: ``--bundles`` bundles created at random nodes and times during the
first ``--rounds`` sync intervals: seizures to ``region:X`` (own region),
urgent alerts to 1-3 named countries, and federation-wide GREEN bulletins.
Then up to ``--settle`` more intervals let delivery finish.

Prints a table per scenario (``no-faults`` and, unless ``--loss 0``,
``loss-P``) and, as the last line, one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REGIONS_FILE = Path(os.environ.get("CENMESH_SIM_REGIONS", "/work/shared/data/rilo_regions.json"))
if not REGIONS_FILE.exists():
    REGIONS_FILE = ROOT / "data" / "rilo_regions.json"


# -- the fake clock and the lossy, counting transport -----------------------------------------


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
    bodies_pushed: int = 0
    bodies_fetched: int = 0
    push_duplicates: int = 0  # pushed bodies the receiver already held
    push_rejected: int = 0
    bytes_by_node: dict[str, int] = field(default_factory=dict)

    def add(self, url: str, n: int) -> None:
        self.bytes_by_node[url] = self.bytes_by_node.get(url, 0) + n


class LinkTransport:
    """One node's view of the shared MemoryTransport: drops requests with probability ``loss``
    (PeerUnavailable, as a dead link looks to the caller) and counts what passes."""

    def __init__(self, shared: Any, own_url: str, traffic: Traffic, rng: random.Random, loss: float) -> None:
        self.shared = shared
        self.own_url = own_url
        self.traffic = traffic
        self.rng = rng
        self.loss = loss
        self.sent = 0
        self.dropped = 0
        self.log: deque[str] = deque(maxlen=12)  # the last requests, for --verbose

    async def send(self, base_url: str, method: str, path: str, query: str, body: bytes,
                   headers: dict[str, str]) -> Any:
        from node.transport import PeerUnavailable

        self.traffic.requests += 1
        self.sent += 1
        if self.loss and self.rng.random() < self.loss:
            self.traffic.lost += 1
            self.dropped += 1
            self.log.append(f"LOST {method} {path}")
            raise PeerUnavailable(f"{base_url}: simulated loss")
        resp = await self.shared.send(base_url, method, path, query, body, headers)
        self.log.append(f"{resp.status} {method} {path} {resp.body[:60]!r}")
        n = len(body) + len(resp.body)
        self.traffic.add(self.own_url, n)
        self.traffic.add(base_url.rstrip("/"), n)
        if path.endswith("/push"):
            self.traffic.bodies_pushed += body.count(b'"ct":')
            if resp.status == 200:
                answer = json.loads(resp.body)
                self.traffic.push_duplicates += len(answer.get("duplicate", []))
                self.traffic.push_rejected += len(answer.get("rejected", []))
        elif path.endswith("/fetch") and resp.status == 200:
            self.traffic.bodies_fetched += resp.body.count(b'"ct":')
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
    held: set[str] = field(default_factory=set)


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


def build(root: Path, nationals: int, hubs: int, clock: FakeClock, transport: Any, traffic: Traffic,
          rng: random.Random, loss: float) -> list[SimNode]:
    from crypto.descriptor import endorse
    from node import admin
    from node.federation import Federation
    from node.keystore import KeyStore
    from node.peers import SyncDriver
    from node.runtime import open_node
    from node.store import directory as dir_store
    from node.store import peers as peer_store
    from node.transport import PeerClient
    from protocol.descriptor import parse_descriptor

    regions = load_regions(hubs)
    nodes: list[SimNode] = []
    for i, r in enumerate(regions):
        nodes.append(SimNode(i, f"RILO {r['code']} hub", r.get("host_country") or r["members"][0], r["code"], "hub",
                             root / f"hub-{r['code']}", f"http://sim-{i}.invalid"))
    for j, (code, country) in enumerate(plan(nationals, regions)):
        i = hubs + j
        nodes.append(SimNode(i, f"{country} customs {j}", country, code, "national", root / f"nat-{j:04d}-{country}",
                             f"http://sim-{i}.invalid"))
    for m in nodes:
        out = admin.init(str(m.home), name=m.name, country=m.country, role=m.role, regions=[m.region],
                         listen=f"127.0.0.1:{10000 + m.index}", public_url=m.url)
        m.node_id = out["node"]
    hub_of = {m.region: m for m in nodes if m.role == "hub"}
    hub_desc = {h.region: parse_descriptor(admin.own_descriptor(str(h.home))) for h in hub_of.values()}
    # Each hub endorses the nationals of its region (what 'cenmesh endorse' does), and the national
    # takes its endorsed descriptor back ('cenmesh directory add' of its own descriptor).
    for m in nodes:
        if m.role == "hub":
            continue
        hub = hub_of[m.region]
        endorsed = endorse(parse_descriptor(admin.own_descriptor(str(m.home))), KeyStore(hub.home).identity())
        path = root / f"{m.home.name}.endorsed.json"
        path.write_text(json.dumps(endorsed.obj))
        admin.directory_add(str(m.home), str(path))
    hubs_list = list(hub_of.values())
    now = int(clock() * 1000)
    for m in nodes:
        node = open_node(m.home)
        # 'cenmesh trust' of every hub (one store opening instead of one per hub).
        for h in hubs_list:
            if h is m:
                continue
            d = hub_desc[h.region]
            node.store.write_now(dir_store.add_anchor, d.node, d.obj["identity_key"], d.name)
            node.store.write_now(dir_store.save_descriptor, d.obj, now)
        # Peering is set up on both sides ('cenmesh peer add' at each end): a hub pulls from the
        # nationals of its region and from every other hub; a national pulls from its hub.
        if m.role == "hub":
            peers = [h for h in hubs_list if h is not m] + [x for x in nodes if x.role == "national" and x.region == m.region]
        else:
            peers = [hub_of[m.region]]
        for p in peers:
            node.store.write_now(peer_store.add_peer, p.node_id, p.url)
        node.reload()
        node.clock = clock
        m.node = node
        m.fed = Federation(node)
        transport.register(m.url, m.fed)
        link = LinkTransport(transport, m.url, traffic, random.Random(rng.random()), loss)
        m.driver = SyncDriver(node, PeerClient(node.identity, link, clock), rng=random.Random(rng.random()))
        m.fed.on_new_urgent.append(m.driver.on_pushed)
    return nodes


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

    @property
    def complete_s(self) -> float | None:
        if len(self.first_hold) < len(self.recipients):
            return None
        return max(self.first_hold.values(), default=self.created_s)


@dataclass
class Job:
    at_s: float
    origin: SimNode
    kind: str
    audience: Any
    record: dict[str, Any]
    urgent: bool


def make_jobs(nodes: list[SimNode], bundles: int, t0: float, period_s: float, rng: random.Random) -> list[Job]:
    from protocol.bundle import Audience

    nationals = [m for m in nodes if m.role == "national"] or nodes
    by_country: dict[str, list[str]] = {}
    for m in nationals:
        by_country.setdefault(m.country, []).append(m.node_id)
    jobs = []
    for i in range(bundles):
        origin = rng.choice(nationals)
        at = t0 + rng.uniform(0, period_s)
        roll = rng.random()
        others = sorted(c for c in by_country if c != origin.country)
        if roll < 0.6 or not others:
            jobs.append(Job(at, origin, "seizure", Audience("group", group=f"region:{origin.region}"),
                            seizure(i, rng, origin.country), False))
        elif roll < 0.85:
            countries = rng.sample(others, min(len(others), rng.randint(1, 3)))
            ids = tuple(sorted({n for c in countries for n in by_country[c]}))
            jobs.append(Job(at, origin, "alert", Audience("nodes", ids), alert(i), True))
        else:
            jobs.append(Job(at, origin, "message", Audience("federation"), bulletin(i), False))
    jobs.sort(key=lambda j: j.at_s)
    return jobs


# -- running a scenario ------------------------------------------------------------------------


async def held_ids(m: SimNode) -> set[str]:
    ids: set[str] = await m.node.store.read(lambda conn: {r[0] for r in conn.execute("SELECT id FROM bundles")})
    return ids


async def drain_all(nodes: list[SimNode]) -> None:
    while any(m.driver.pending_pushes for m in nodes):
        await asyncio.gather(*(m.driver.drain() for m in nodes if m.driver.pending_pushes))


def has_due_peer(m: SimNode) -> bool:
    """Whether a scheduler tick would do anything on this node: some peer's round is due (or the
    peers were never loaded). Skipping the other nodes only skips SyncDriver.sync_all's reload of
    trust and directory from the store, which re-parses every descriptor: O(nodes) per node per
    tick, O(nodes^2) per tick for the whole simulation."""
    if not m.driver.peers:
        return True
    now = m.node.now_ms()
    return any(p.machine.in_round or now >= p.machine.due_ms for p in m.driver.peers.values())


async def sync_everyone(nodes: list[SimNode], concurrency: int, *, only_due: bool = False, **kw: Any) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(m: SimNode) -> None:
        async with sem:
            await m.driver.sync_all(**kw)

    await asyncio.gather(*(one(m) for m in nodes if not only_due or has_due_peer(m)))
    await drain_all(nodes)


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None when empty or when it falls on an undelivered bundle."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, math.ceil(p / 100 * len(v)) - 1))
    return None if math.isinf(v[k]) else v[k]


def finite_max(values: list[float]) -> float | None:
    return None if not values or math.isinf(max(values)) else max(values)


async def run_scenario(name: str, args: argparse.Namespace, loss: float) -> dict[str, Any]:
    from node.outbox import create_local, share
    from node.transport import MemoryTransport

    rng = random.Random(f"{args.seed}")
    wall0 = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix=f"cenmesh-sim-{name}-"))
    clock = FakeClock(float(int(time.time())))
    shared = MemoryTransport()
    traffic = Traffic()
    try:
        nodes = build(root, args.nationals, args.hubs, clock, shared, traffic, rng, 0.0)
        by_id = {m.node_id: m for m in nodes}
        setup_s = time.monotonic() - wall0
        interval = float(args.interval_s)

        # Warm-up: directories spread by gossip (hubs learn their nationals, then each other's, then
        # the nationals learn everyone) -- no faults, forced rounds, not measured.
        want = len(nodes)
        warm = 0
        while warm < 12:
            warm += 1
            clock.t += interval
            order = [m for m in nodes if m.role == "national"] + [m for m in nodes if m.role == "hub"]
            await sync_everyone(order, args.concurrency, force=True, directory=True)
            if all(len(m.node.directory) >= want for m in nodes):
                break
        short = [m.name for m in nodes if len(m.node.directory) < want]
        if short:
            print(f"[{name}] warning: after {warm} warm-up rounds {len(short)} nodes lack descriptors", file=sys.stderr)
        for m in nodes:
            link = m.driver.client.transport
            link.loss = loss
            for p in m.driver.peers.values():
                p.machine.stats = {k: 0 for k in p.machine.stats}
        traffic.requests = traffic.lost = traffic.bodies_pushed = traffic.bodies_fetched = 0
        traffic.push_duplicates = traffic.push_rejected = 0
        traffic.bytes_by_node.clear()
        for m in nodes:
            m.held = await held_ids(m)

        t0 = clock.t
        jobs = make_jobs(nodes, args.bundles, t0, args.rounds * interval, rng)
        tracked: dict[str, Tracked] = {}
        tick = max(1.0, float(int(interval) // 3))  # the scheduler's tick (node/scheduler.py)
        max_steps = math.ceil((args.rounds + args.settle) * interval / tick)
        step = 0
        ji = 0
        refused = 0
        while step < max_steps:
            t_end = t0 + (step + 1) * tick
            while ji < len(jobs) and jobs[ji].at_s <= t_end:
                job = jobs[ji]
                ji += 1
                clock.t = max(clock.t, job.at_s)
                node = job.origin.node
                try:
                    rec = await create_local(node, job.kind, job.record)
                    bundle = await share(node, rec["id"], job.audience, urgent=job.urgent)
                except Exception as exc:  # a refused share is a finding, not a crash
                    refused += 1
                    print(f"[{name}] share refused at {job.origin.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
                    continue
                t = Tracked(bundle.id, job.kind, job.origin.node_id, clock.t, job.urgent,
                            set(bundle.recipient_ids) - {job.origin.node_id})
                tracked[bundle.id] = t
                job.origin.held.add(bundle.id)
                if job.urgent:
                    job.origin.driver.push_soon([bundle])
                    await drain_all(nodes)
                    for rid in t.recipients:
                        holder = by_id.get(rid)
                        if holder is not None and rid not in t.first_hold and bundle.id in await held_ids(holder):
                            t.first_hold[rid] = clock.t
            clock.t = t_end
            await sync_everyone(nodes, args.concurrency, only_due=not args.every_tick)
            step += 1
            for m in nodes:
                now_held = await held_ids(m)
                for bid in now_held - m.held:
                    got_t = tracked.get(bid)
                    if got_t is not None and m.node_id in got_t.recipients and m.node_id not in got_t.first_hold:
                        got_t.first_hold[m.node_id] = clock.t
                m.held = now_held
            if ji >= len(jobs) and step * tick >= args.rounds * interval and \
                    all(t.complete_s is not None for t in tracked.values()):
                break

        # -- measures --------------------------------------------------------------------
        name_of = {m.node_id: m.name for m in nodes}
        for t in tracked.values():
            if t.complete_s is None and args.verbose:
                holders = [name_of[m.node_id] for m in nodes if t.id in m.held]
                missing = [name_of.get(r, r) for r in t.recipients - set(t.first_hold)]
                print(f"[{name}] undelivered {t.kind}{' urgent' if t.urgent else ''} {t.id} from {name_of[t.origin]} "
                      f"at +{t.created_s - t0:.0f}s: missing {missing}; held by {holders}", file=sys.stderr)
        if args.verbose:
            lagging = {r for t in tracked.values() for r in t.recipients - set(t.first_hold)}
            for m in nodes:
                if m.node_id in lagging:
                    for p in m.driver.peers.values():
                        mc = p.machine
                        print(f"[{name}]   {m.name} <- {name_of.get(p.node)}: state={mc._state} failures={mc.failures} "
                              f"due=+{mc.due_ms / 1000 - clock.t:.0f}s cursor={mc.cursor} stats={mc.stats}", file=sys.stderr)
                    rows = await m.node.store.read(lambda conn: [dict(r) for r in conn.execute("SELECT * FROM peers")])
                    print(f"[{name}]   peers table: {rows}", file=sys.stderr)
                    link = m.driver.client.transport
                    print(f"[{name}]   link: {link.sent} sent, {link.dropped} dropped; last: {list(link.log)}", file=sys.stderr)
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
        # Over every bundle: one never fully delivered counts as infinitely late (JSON: null).
        def late(t: Tracked) -> float:
            return math.inf if t.complete_s is None else t.complete_s - t.created_s

        routine = [late(t) / interval for t in tracked.values() if not t.urgent]
        urgent = [late(t) for t in tracked.values() if t.urgent]
        all_iv = [late(t) / interval for t in tracked.values()]
        # Bodies moved vs bodies that had to move: every copy held by a node other than the origin
        # arrived once by push or fetch; anything beyond that was a duplicate transfer.
        needed = sum(len(m.held & set(tracked)) for m in nodes) - len(tracked)
        moved = traffic.bodies_pushed + traffic.bodies_fetched
        polls = sum(p.machine.stats["polls"] for m in nodes for p in m.driver.peers.values())
        fails = sum(p.machine.stats["failures"] for m in nodes for p in m.driver.peers.values())
        fetched_stat = sum(p.machine.stats["fetched"] for m in nodes for p in m.driver.peers.values())
        per_node = [traffic.bytes_by_node.get(m.url, 0) for m in nodes]
        hub_bytes = [traffic.bytes_by_node.get(m.url, 0) for m in nodes if m.role == "hub"]
        nat_bytes = [traffic.bytes_by_node.get(m.url, 0) for m in nodes if m.role == "national"]
        sim_s = clock.t - t0
        return {
            "scenario": name, "loss": loss, "nodes": len(nodes), "hubs": args.hubs, "nationals": args.nationals,
            "bundles": len(tracked), "refused": refused, "warmup_rounds": warm,
            "recipient_pairs": pairs, "delivered_pairs": got,
            "delivered_ratio": round(got / pairs, 6) if pairs else 1.0,
            "bundles_complete": sum(t.complete_s is not None for t in tracked.values()),
            "p50_intervals": pct(all_iv, 50), "p95_intervals": pct(all_iv, 95), "max_intervals": finite_max(all_iv),
            "routine_p95_intervals": pct(routine, 95), "routine_max_intervals": finite_max(routine),
            "urgent_p95_s": pct(urgent, 95), "urgent_max_s": finite_max(urgent),
            "out_of_audience": out_of_audience,
            "bodies_moved": moved, "bodies_pushed": traffic.bodies_pushed, "bodies_fetched": traffic.bodies_fetched,
            "bodies_needed": needed,
            "push_duplicates": traffic.push_duplicates,
            "push_rejected": traffic.push_rejected, "duplicate_bodies": moved - needed, "peersync_fetched": fetched_stat,
            "peer_polls": polls, "peer_failures": fails,
            "requests": traffic.requests, "requests_lost": traffic.lost,
            "bytes_per_node_mean": int(sum(per_node) / len(per_node)) if per_node else 0,
            "bytes_per_hub_mean": int(sum(hub_bytes) / len(hub_bytes)) if hub_bytes else 0,
            "bytes_per_national_mean": int(sum(nat_bytes) / len(nat_bytes)) if nat_bytes else 0,
            "bytes_max_node": max(per_node, default=0),
            "simulated_s": round(sim_s, 1), "wall_setup_s": round(setup_s, 1),
            "wall_s": round(time.monotonic() - wall0, 1),
        }
    finally:
        for m in locals().get("nodes", []) or []:
            try:
                if m.node is not None:
                    m.node.verifier.close()
                    m.node.store.close()
            except Exception:
                pass
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"[{name}] node folders kept in {root}", file=sys.stderr)


def fmt(v: Any) -> str:
    if v is None:
        return "-/undeliv."
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def print_table(results: list[dict[str, Any]]) -> None:
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("nodes (hubs + nationals)", lambda r: f"{r['nodes']} ({r['hubs']}+{r['nationals']})"),
        ("bundles (refused)", lambda r: f"{r['bundles']} ({r['refused']})"),
        ("delivered ratio (pairs)", lambda r: f"{r['delivered_ratio']:.4f} ({r['delivered_pairs']}/{r['recipient_pairs']})"),
        ("bundles fully delivered", lambda r: f"{r['bundles_complete']}/{r['bundles']}"),
        ("intervals to all, p50", lambda r: fmt(r["p50_intervals"])),
        ("intervals to all, p95", lambda r: fmt(r["p95_intervals"])),
        ("intervals to all, max", lambda r: fmt(r["max_intervals"])),
        ("routine p95 / max (intervals)", lambda r: f"{fmt(r['routine_p95_intervals'])} / {fmt(r['routine_max_intervals'])}"),
        ("urgent p95 / max (sim s)", lambda r: f"{fmt(r['urgent_p95_s'])} / {fmt(r['urgent_max_s'])}"),
        ("out of audience", lambda r: str(r["out_of_audience"])),
        ("bodies moved (push+fetch)", lambda r: f"{r['bodies_moved']} ({r['bodies_pushed']}+{r['bodies_fetched']})"),
        ("bodies needed / duplicates", lambda r: f"{r['bodies_needed']} / {r['duplicate_bodies']}"),
        ("duplicates by push / rejected", lambda r: f"{r['push_duplicates']} / {r['push_rejected']}"),
        ("requests (lost)", lambda r: f"{r['requests']} ({r['requests_lost']})"),
        ("peer polls / failed rounds", lambda r: f"{r['peer_polls']} / {r['peer_failures']}"),
        ("bytes/node mean (hub, nat.)", lambda r: f"{r['bytes_per_node_mean']} ({r['bytes_per_hub_mean']}, {r['bytes_per_national_mean']})"),
        ("bytes max node", lambda r: str(r["bytes_max_node"])),
        ("simulated s / wall s (setup)", lambda r: f"{r['simulated_s']} / {r['wall_s']} ({r['wall_setup_s']})"),
    ]
    w0 = max(len(r[0]) for r in rows)
    cols = [[f(res) for _, f in rows] for res in results]
    widths = [max(len(res["scenario"]), *(len(c) for c in col)) for res, col in zip(results, cols, strict=True)]
    print(" " * w0 + "  " + "  ".join(res["scenario"].ljust(w) for res, w in zip(results, widths, strict=True)))
    for i, (label, _) in enumerate(rows):
        print(label.ljust(w0) + "  " + "  ".join(col[i].ljust(w) for col, w in zip(cols, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nationals", type=int, default=20)
    p.add_argument("--hubs", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--bundles", type=int, default=100)
    p.add_argument("--loss", type=float, default=0.2, help="request loss of the faulty scenario (0: skip it)")
    p.add_argument("--rounds", type=int, default=20, help="sync intervals over which bundles are created")
    p.add_argument("--settle", type=int, default=None, help="extra intervals allowed to finish delivery (default: max(60, 2x rounds); "
                   "back-off after failures reaches 20 intervals)")
    p.add_argument("--interval-s", type=int, default=30)
    p.add_argument("--concurrency", type=int, default=16, help="nodes syncing at once")
    p.add_argument("--keep", action="store_true", help="keep the node folders")
    p.add_argument("--every-tick", action="store_true",
                   help="call sync_all on every node at every tick, even with no peer due (slower)")
    p.add_argument("--verbose", action="store_true", help="list undelivered bundles and peer states")
    args = p.parse_args(argv)
    if args.settle is None:
        args.settle = max(60, 2 * args.rounds)
    os.environ["CENMESH_SYNC__VERIFY_PROCESSES"] = "1"
    os.environ["CENMESH_SYNC__INTERVAL_S"] = str(args.interval_s)
    logging.basicConfig(level=logging.ERROR)
    scenarios = [("no-faults", 0.0)]
    if args.loss > 0:
        scenarios.append((f"loss-{args.loss:g}", args.loss))
    results = [asyncio.run(run_scenario(name, args, loss)) for name, loss in scenarios]
    print_table(results)
    nofault = results[0]
    faulty = results[-1] if len(results) > 1 else None
    summary = {
        "nodes": nofault["nodes"], "hubs": args.hubs, "nationals": args.nationals, "bundles": nofault["bundles"],
        "seed": args.seed, "interval_s": args.interval_s,
        "delivered_ratio": min(r["delivered_ratio"] for r in results),
        "out_of_audience": sum(r["out_of_audience"] for r in results),
        "routine_p95_intervals": nofault["routine_p95_intervals"],
        "urgent_p95_s": nofault["urgent_p95_s"],
        "faulty_p95_intervals": faulty["p95_intervals"] if faulty else None,
        "faulty_urgent_p95_s": faulty["urgent_p95_s"] if faulty else None,
        "duplicate_bodies": {r["scenario"]: r["duplicate_bodies"] for r in results},
        "bytes_per_node_mean": {r["scenario"]: r["bytes_per_node_mean"] for r in results},
        "refused": sum(r["refused"] for r in results),
        "scenarios": {r["scenario"]: {k: r[k] for k in ("delivered_ratio", "p50_intervals", "p95_intervals",
                                                        "max_intervals", "urgent_p95_s", "out_of_audience",
                                                        "wall_s")} for r in results},
    }
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
