"""Load test: one real node serving many syncing peers and searching officers at once, then a flood.

Run it as ``scripts/load [--peers 50] [--officers 20] [--duration 60] [--flood-duration 20] ...``.

Set-up (in a temporary folder): the node under test is a RILO hub made by
``cenmesh init``'s admin function, run as a real ``cenmesh run`` process on
127.0.0.1. ``--peers`` national administrations of its region (real Ed25519
and X25519 keys, self-signed descriptors endorsed by the hub, so the hub
accepts them) plus one more, the flooder, are put in its directory. Its store
holds ``--bundles`` realistic seizure bundles sealed by those peers (most to a
few named peers and the hub, one in ten to the whole region), ingested with
``node.ingest.ingest`` before it starts, so the hub can read, search and relay
them. ``--officers`` users (officers and analysts) get bearer tokens.

Load (all from this process, with asyncio, at the same time):

- each peer runs the real pull conversation with its own connection:
  ``protocol.sync.PeerSync`` driven as node/peers.py drives it, with
  ``node.transport.PeerClient`` signing every request (PROTOCOL.md section 5):
  ``GET /feed`` with its cursor every ``--interval`` seconds (plus jitter),
  ``POST /fetch`` of the ids it lacks (every fetched bundle is parsed and must
  be one it asked for), ``GET /directory`` with ``If-None-Match`` every tenth
  round, and every ``--push-every`` seconds a ``POST /push`` of a new bundle of
  its own (sealed beforehand; one in ten urgent) to the hub and a few other
  peers, which those then find in their feeds. ``--fresh`` of the peers start
  from cursor 0 (a node joining, or back after an outage) and catch up on the
  whole store; the others start at the top of the feed.
- each officer, with a think time of ``--think`` seconds on average, runs one
  of: a search (free text, category, HS prefix, route, origin, date range, in
  varied combinations), the records list at a random offset, one record,
  the inbox, or the node's status, all through ``/api/v1`` with a bearer token.

After ``--duration`` seconds the flood phase starts while the load goes on
for ``--flood-duration`` seconds more: the flooder (an accepted peer) and an
unauthenticated client send ``--flood-requests`` bad requests, at most
``--flood-concurrency`` at a time: bodies over ``server.max_body_bytes``
(expect 413), gzip bodies inflating beyond it (413), wrong and missing
signatures (401), malformed and deeply nested JSON (400), bodies of millions of
tiny JSON values just under the cap (400), pushes of 1,000 broken bundles
(200, each rejected), an over-long header line and thousands of headers
(400/431). The flooder is an accepted peer, so its own 429s are expected.

Measured: per class (sync peers, officers) and phase (main, flood), request
count, p50/p95/max latency (client wall time, connections kept alive) and
errors by status. An error is any answer other than 200 (304 for the
directory) to a well-behaved peer or officer, a transport failure, a fetch
answer missing an id the feed offered, or a push answer that rejects a valid
bundle; a 429 to a well-behaved peer is an error (and is listed either way).
The node's resident memory (main process plus its verifier workers) is
sampled every 0.2 s from /proc; its peak (VmHWM) and CPU time come from /proc
too. The flood phase reports RSS at its start, its peak and at the end, and
how the flood requests were answered; an answer outside the expected ones
(a 500, say) is an error too.

The last line printed is one JSON object. Exit status: 0 when there were no
errors, 1 otherwise (or when the run itself failed).
"""

# ruff: noqa: E402  (the imports below follow the sys.path set-up)

from __future__ import annotations

import argparse
import asyncio
import datetime
import gzip
import json
import math
import os
import platform
import random
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import contextlib

import aiohttp
from bench_sync import GOODS, make_record  # realistic seizure records
from benchlib import NodeProcess, cpu_model, cpu_seconds, free_port

from crypto.descriptor import endorse, make_descriptor
from crypto.envelope import seal_bundle
from crypto.httpsig import sign_request
from crypto.keys import EncryptionKey, IdentityKey, generate_encryption_key, generate_identity
from node import admin, auth
from node.ingest import ingest
from node.runtime import open_node
from node.store import bundles as bundle_store
from node.store import directory as dir_store
from node.transport import HttpTransport, PeerClient, PeerUnavailable, Response, authority_of
from protocol.audience import resolve_recipients
from protocol.bundle import Audience, Bundle, parse_bundle
from protocol.canonical import b64u_encode, canonical
from protocol.descriptor import EncKey
from protocol.errors import CenmeshError
from protocol.sync import Cursor, Fetch, PeerSync, PollFeed, Wait

DAY_MS = 24 * 3600 * 1000
REGION = "WCA"
# Members of RILO West and Central Africa (data/rilo_regions.json); peers cycle through them.
COUNTRIES = ["NG", "GH", "SN", "CM", "BJ", "TG", "BF", "ML", "NE", "GN", "GA", "CG", "CD", "TD", "GM",
             "GW", "LR", "SL", "MR", "CV", "CF", "ST", "GQ"]
DIRECTORY_EVERY = 10  # rounds between directory checks, as sync.directory_every's default
SAMPLE_EVERY_S = 0.2


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))]




# --- Set-up --------------------------------------------------------------------------------------

@dataclass
class Peer:
    """A national administration the hub accepts: its keys and, for pushing, its sealed new bundles."""

    index: int
    identity: IdentityKey
    enc: EncryptionKey
    fresh: bool
    to_push: list[Bundle] = field(default_factory=list)

    @property
    def node_id(self) -> str:
        return self.identity.node_id


@dataclass
class Setup:
    home: Path
    hub_id: str
    url: str
    peers: list[Peer]
    flooder: Peer
    tokens: list[str]
    record_ids: list[str]
    epoch: str
    top_seq: int
    bundles: int
    max_body_bytes: int


def _peer_descriptor(hub: Any, ident: IdentityKey, enc: EncryptionKey, i: int, now: int) -> dict[str, Any]:
    country = COUNTRIES[i % len(COUNTRIES)]
    d = make_descriptor(ident, seq=1, name=f"{country} Customs ({i})", country=country, role="national",
                        regions=[REGION], endpoints=[f"https://cenmesh-{i}.customs.{country.lower()}.example"],
                        enc_keys=[EncKey(enc.public, now - DAY_MS, now + 365 * DAY_MS)], issued=now)
    return endorse(d, hub.identity).obj


def _seal(peer: Peer, audience: Audience, hub: Any, rnd: random.Random, today: datetime.date, now: int,
          urgent: bool = False) -> Bundle:
    keys = resolve_recipients(audience, peer.node_id, hub.directory, hub.rosters, now_ms=now)
    return seal_bundle(identity=peer.identity, kind="seizure", record=make_record(rnd, today), audience=audience,
                       recipient_keys=keys, created=now, expires=now + 30 * DAY_MS, urgent=urgent,
                       rng=os.urandom)


def _named(rnd: random.Random, peer: Peer, peers: list[Peer], hub_id: str) -> Audience:
    """The hub and 2 to 5 other peers."""
    others = rnd.sample([p.node_id for p in peers if p is not peer], min(len(peers) - 1, rnd.randint(2, 5)))
    return Audience("nodes", tuple(sorted({hub_id, *others})))


async def build(root: Path, n_peers: int, n_bundles: int, n_officers: int, fresh: float, pushes_per_peer: int,
          seed: int) -> Setup:
    """The hub's folder with its peers, store and users; nothing runs yet."""
    t0 = time.perf_counter()
    rnd = random.Random(seed)
    port = free_port()
    home = root / "hub"
    admin.init(str(home), name="RILO WCA hub", country="CI", role="hub", regions=[REGION],
               listen=f"127.0.0.1:{port}", public_url=None)
    hub = open_node(home)
    try:
        now = hub.now_ms()
        today = datetime.datetime.fromtimestamp(now / 1000, tz=datetime.UTC).date()
        n_fresh = round(fresh * n_peers)
        peers = []
        for i in range(n_peers + 1):
            ident, enc = generate_identity(rnd.randbytes), generate_encryption_key(rnd.randbytes)
            obj = _peer_descriptor(hub, ident, enc, i, now)
            accepted = hub.judge_descriptor(obj)  # the same check `cenmesh directory add` makes
            assert accepted is not None
            hub.store.write_now(dir_store.save_descriptor, accepted.obj, now)
            peers.append(Peer(i, ident, enc, fresh=i < n_fresh))
        hub.reload()
        flooder, peers = peers[-1], peers[:-1]
        say(f"  {n_peers} peers and the flooder endorsed and accepted ({time.perf_counter() - t0:.1f} s)")

        region = Audience("group", group=f"region:{REGION}")
        by_origin: dict[str, list[Bundle]] = defaultdict(list)
        for _ in range(n_bundles):
            peer = rnd.choice(peers)
            audience = region if rnd.random() < 0.1 else _named(rnd, peer, peers, hub.node_id)
            by_origin[peer.node_id].append(_seal(peer, audience, hub, rnd, today, now))
        say(f"  {n_bundles} bundles sealed ({time.perf_counter() - t0:.1f} s)")
        for origin, bundles in by_origin.items():
            result = await (ingest(hub, [b.obj for b in bundles], via=origin))
            if result.rejected or len(result.accepted) != len(bundles):
                raise RuntimeError(f"seeding the hub: {result.rejected[:3]}")
        say(f"  stored at the hub ({time.perf_counter() - t0:.1f} s)")
        for peer in peers:
            peer.to_push = [_seal(peer, _named(rnd, peer, peers, hub.node_id), hub, rnd, today, now,
                                  urgent=rnd.random() < 0.1) for _ in range(pushes_per_peer)]
        tokens = [hub.store.write_now(auth.create_token, f"officer{i:02d}", "officer" if i % 3 else "analyst", now)
                  for i in range(n_officers)]
        record_ids = [r["id"] for r in hub.store.read_now(
            lambda c: [dict(x) for x in c.execute("SELECT id FROM records ORDER BY random() LIMIT 500")])]
        epoch = hub.store.epoch
        top = hub.store.read_now(bundle_store.max_seq)
        max_body = hub.settings.server.max_body_bytes
        hub_id = hub.node_id
    finally:
        hub.store.close()
        hub.verifier.close()
    say(f"  set up in {time.perf_counter() - t0:.1f} s: feed top {top}, {len(record_ids)} record ids sampled")
    return Setup(home, hub_id, f"http://127.0.0.1:{port}", peers, flooder, tokens, record_ids, epoch, top,
                 n_bundles, max_body)


# --- The node process and /proc ------------------------------------------------------------------

def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []




class HubProcess(NodeProcess):
    """The hub's ``cenmesh run``, with its memory and CPU (and its verifier workers') read from /proc."""

    def tree(self) -> list[int]:
        return [self.pid, *_children(self.pid)]

    def rss_kb(self) -> tuple[int, int]:
        """(main process RSS, main + children RSS) in kB."""
        main = _status_kb(self.pid, "VmRSS")
        return main, main + sum(_status_kb(c, "VmRSS") for c in _children(self.pid))

    def hwm_kb(self) -> int:
        return _status_kb(self.pid, "VmHWM")

    def cpu_s(self) -> float:
        return sum(cpu_seconds(p) for p in self.tree())


# --- Recording -----------------------------------------------------------------------------------

@dataclass
class Sample:
    cls: str  # "sync" or "officer"
    what: str  # route or request kind
    status: str  # HTTP status, or "conn" / "protocol" / "incomplete" / "rejected"
    ms: float
    phase: str
    ok: bool


class Recorder:
    """Every well-behaved request's outcome, tagged with the phase it started in."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.phase = "main"

    def add(self, cls: str, what: str, status: int | str, ms: float, ok: bool, phase: str | None = None) -> None:
        self.samples.append(Sample(cls, what, str(status), ms, phase or self.phase, ok))


class TimedTransport:
    """The real HTTP transport, with each request's status and latency recorded."""

    def __init__(self, inner: HttpTransport, rec: Recorder) -> None:
        self.inner = inner
        self.rec = rec

    async def send(self, base_url: str, method: str, path: str, query: str, body: bytes,
                   headers: dict[str, str]) -> Response:
        route = path.rsplit("/", 1)[-1]
        phase = self.rec.phase
        t0 = time.perf_counter()
        try:
            resp = await self.inner.send(base_url, method, path, query, body, headers)
        except PeerUnavailable:
            self.rec.add("sync", route, "conn", (time.perf_counter() - t0) * 1000, False, phase)
            raise
        ok = resp.status == 200 or (route == "directory" and resp.status == 304)
        self.rec.add("sync", route, resp.status, (time.perf_counter() - t0) * 1000, ok, phase)
        return resp


# --- Well-behaved peers --------------------------------------------------------------------------

async def run_peer(peer: Peer, setup: Setup, rec: Recorder, end: float, interval_s: float, push_every_s: float,
                   rnd: random.Random, counts: Counter[str]) -> None:
    """One peer's sync with the hub until ``end``, as node/peers.py drives PeerSync."""
    transport = HttpTransport(timeout_s=30, keepalive_s=interval_s + 60)
    client = PeerClient(peer.identity, TimedTransport(transport, rec), time.time)
    interval_ms = int(interval_s * 1000)
    jitter = max(1, interval_ms // 5)
    now_ms = int(time.time() * 1000)
    cursor = Cursor.start() if peer.fresh else Cursor(setup.epoch, setup.top_seq)
    # The first round at a random moment of the first interval, so the peers do not poll in step.
    machine = PeerSync(setup.hub_id, cursor, interval_ms=interval_ms, now_ms=now_ms + rnd.randrange(interval_ms))
    known: set[str] = set()
    etag: str | None = None
    rounds_since_directory = DIRECTORY_EVERY  # the first round checks the directory, as the driver does
    idle = True
    next_push = time.time() + rnd.uniform(0.2, 1.0) * push_every_s
    try:
        while time.time() < end:
            if peer.to_push and time.time() >= next_push:
                bundle = peer.to_push.pop()
                known.add(bundle.id)
                try:
                    answer = await client.push(setup.url, [bundle.obj])
                    if list(answer.accepted) != [bundle.id]:
                        rec.add("sync", "push-answer", "rejected", 0, False)
                    counts["pushed"] += 1
                except (PeerUnavailable, CenmeshError):
                    pass  # recorded by the transport
                next_push = time.time() + rnd.uniform(0.5, 1.5) * push_every_s
                continue
            action = machine.next_action(int(time.time() * 1000))
            if isinstance(action, Wait):
                idle = True
                until = min(action.until_ms / 1000, next_push if peer.to_push else end, end)
                await asyncio.sleep(max(0.0, until - time.time()))
                continue
            try:
                if isinstance(action, PollFeed):
                    if idle:
                        idle = False
                        counts["rounds"] += 1
                        rounds_since_directory += 1
                        if rounds_since_directory >= DIRECTORY_EVERY:
                            rounds_since_directory = 0
                            _, etag = await client.directory(setup.url, etag)
                    page = await client.feed(setup.url, action.after, action.limit)
                    counts["feed_items"] += len(page.items)
                    machine.feed_received(page, [i.id for i in page.items if i.id not in known],
                                          int(time.time() * 1000), jitter_ms=rnd.randrange(jitter))
                elif isinstance(action, Fetch):
                    objs = await client.fetch(setup.url, list(action.ids))
                    got = {parse_bundle(o).id for o in objs}  # a real peer parses (and verifies) each
                    if got != set(action.ids):
                        rec.add("sync", "fetch-answer", "incomplete", 0, False)
                    known |= got
                    counts["fetched"] += len(got)
                    machine.fetched(got, int(time.time() * 1000), jitter_ms=rnd.randrange(jitter))
            except (PeerUnavailable, CenmeshError) as exc:
                if not isinstance(exc, PeerUnavailable):
                    rec.add("sync", type(action).__name__, "protocol", 0, False)
                counts["failed_rounds"] += 1
                machine.failed(int(time.time() * 1000), jitter_ms=rnd.randrange(jitter))
                idle = True
    finally:
        await transport.close()


# --- Officers ------------------------------------------------------------------------------------

WORDS = sorted({w.strip("(),").lower() for goods in GOODS.values() for d, _, b in goods
                for w in (d + " " + (b or "")).split() if len(w) > 3 and w.isalpha()})


def officer_request(rnd: random.Random, setup: Setup, today: datetime.date) -> tuple[str, str, dict[str, str]]:
    """(kind, path, query) of one officer action, in the mix a working desk makes."""
    roll = rnd.random()
    if roll < 0.6:
        params: dict[str, str] = {}
        category = rnd.choice(list(GOODS))
        description, hs, _ = rnd.choice(GOODS[category])
        shape = rnd.randrange(6)
        if shape == 0:
            params["q"] = rnd.choice(WORDS)
        elif shape == 1:
            params.update(q=rnd.choice(description.split()), category=category)
        elif shape == 2:
            params.update(hs=hs[: rnd.choice([2, 4, 6])], since=(today - datetime.timedelta(days=rnd.choice([30, 90, 365]))).isoformat())
        elif shape == 3:
            params["route"] = f"{rnd.choice(['CN', 'IN', 'BR', 'CO', 'TR', 'AE'])}-{rnd.choice(COUNTRIES[:8])}"
        elif shape == 4:
            params.update(origin=rnd.choice(COUNTRIES[:10]), category=category)
        else:
            params.update(category=category, kind="seizure", transport_mode=rnd.choice(["sea", "air", "road"]))
        if rnd.random() < 0.2:
            params["offset"] = str(rnd.choice([50, 100, 200]))
        return "search", "/api/v1/search", params
    if roll < 0.75:
        return "records", "/api/v1/records", {"limit": "50", "offset": str(rnd.randrange(0, setup.bundles, 50))}
    if roll < 0.87:
        return "record", f"/api/v1/records/{rnd.choice(setup.record_ids)}", {}
    if roll < 0.95:
        return "inbox", "/api/v1/inbox", {}
    return "status", "/api/v1/status", {}


async def run_officer(token: str, setup: Setup, rec: Recorder, end: float, think_s: float,
                      rnd: random.Random) -> None:
    today = datetime.date.today()
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=30)
    await asyncio.sleep(rnd.uniform(0, think_s))
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.time() < end:
            kind, path, params = officer_request(rnd, setup, today)
            phase = rec.phase
            t0 = time.perf_counter()
            try:
                async with session.get(setup.url + path, params=params, headers=headers) as resp:
                    body = await resp.read()
                    status: int | str = resp.status
                ok = status == 200 and isinstance(json.loads(body), dict)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                status, ok = "conn", False
            rec.add("officer", kind, status, (time.perf_counter() - t0) * 1000, ok, phase)
            if not ok:
                say(f"officer {kind} {params}: {status} {body[:200]!r}" if status != "conn" else f"officer {kind}: {status}")
            await asyncio.sleep(rnd.uniform(0.5, 1.5) * think_s)


# --- The flood -----------------------------------------------------------------------------------

@dataclass
class FloodKind:
    name: str
    expect: frozenset[str]  # answers that are right for this abuse
    make: Callable[[], tuple[str, str, str, bytes, dict[str, str]]]  # (method, path, query, body, headers)
    weight: int


def flood_kinds(url: str, cap: int, flooder: IdentityKey, rnd: random.Random) -> list[FloodKind]:
    """The abuse, each kind built so that it would be accepted but for the one thing wrong with it."""
    authority = authority_of(url)
    stranger = generate_identity(rnd.randbytes)  # not in the hub's directory
    push, feed, fetch = "/federation/v1/push", "/federation/v1/feed", "/federation/v1/fetch"
    # Distinct bodies built once; signing them is done per request (fresh nonce and time).
    oversized = b'{"bundles":[' + b'"' + b"A" * (cap + 64 * 1024) + b'"]}'
    bomb = gzip.compress(b'{"bundles":[' + b" " * (cap * 4) + b"]}", compresslevel=9)
    tiny_values = b'{"bundles":[' + b"{}," * ((cap - 64) // 3) + b"{}]}"
    deep = b"[" * (cap // 2) + b"]" * (cap // 2)
    # Bundles of the right shape and size from an origin the node does not know: each is refused (200).
    now_ms = int(time.time() * 1000)
    broken = canonical({"bundles": [
        {"v": 1, "origin": stranger.node_id, "created": now_ms, "expires": now_ms + DAY_MS,
         "audience": {"scope": "federation"}, "urgent": False,
         "recipients": [{"node": stranger.node_id, "wrap": b64u_encode(rnd.randbytes(80))}],
         "nonce": b64u_encode(rnd.randbytes(24)), "ct": b64u_encode(rnd.randbytes(600)),
         "sig": b64u_encode(rnd.randbytes(64))} for _ in range(1000)]})

    def signed(method: str, path: str, body: bytes, key: IdentityKey = flooder, query: str = "",
               extra: dict[str, str] | None = None) -> tuple[str, str, str, bytes, dict[str, str]]:
        h = sign_request(method=method, authority=authority, path=path, query=query, body=body, key=key,
                         now_s=int(time.time()), nonce=b64u_encode(os.urandom(16)))
        return method, path, query, body, {"Content-Type": "application/json", **h, **(extra or {})}

    def oversized_signed() -> tuple[str, str, str, bytes, dict[str, str]]:
        return "POST", push, "", oversized, {"Content-Type": "application/json", **oversized_headers}

    oversized_headers = sign_request(method="POST", authority=authority, path=push, query="", body=oversized,
                                     key=flooder, now_s=int(time.time()), nonce=b64u_encode(os.urandom(16)))

    def tampered() -> tuple[str, str, str, bytes, dict[str, str]]:
        m, p, q, _, h = signed("POST", fetch, canonical({"ids": ["A" * 43]}))
        return m, p, q, canonical({"ids": ["B" * 43]}), h

    def bad_sig() -> tuple[str, str, str, bytes, dict[str, str]]:
        m, p, q, b, h = signed("GET", feed, b"", query="after=0")
        h["Signature"] = "sig1=:" + b64u_encode(os.urandom(64)).replace("-", "+").replace("_", "/") + "==:"
        return m, p, q, b, h

    many_headers = {f"X-Filler-{i}": "v" * 4000 for i in range(2000)}
    gzip_extra = {"Content-Encoding": "gzip"}
    rate_limited = frozenset({"429"})  # the flooder is one accepted peer: past its quota, 429 is right
    return [
        FloodKind("oversized-signed", frozenset({"413"}), oversized_signed, 3),
        FloodKind("oversized-unsigned", frozenset({"413"}),
                  lambda: ("POST", push, "", oversized, {"Content-Type": "application/json"}), 3),
        FloodKind("gzip-bomb", frozenset({"413"}) | rate_limited, lambda: signed("POST", push, bomb, extra=gzip_extra), 3),
        FloodKind("tiny-values-under-cap", frozenset({"400"}) | rate_limited, lambda: signed("POST", push, tiny_values), 3),
        FloodKind("deep-nesting", frozenset({"400"}) | rate_limited, lambda: signed("POST", push, deep), 3),
        FloodKind("broken-bundles", frozenset({"200"}) | rate_limited, lambda: signed("POST", push, broken), 5),
        FloodKind("malformed-json", frozenset({"400"}) | rate_limited,
                  lambda: signed("POST", push, b'{"bundles": [{"v": 1,'), 15),
        FloodKind("bad-fetch", frozenset({"400"}) | rate_limited,
                  lambda: signed("POST", fetch, canonical({"ids": ["not an id"]})), 10),
        FloodKind("unknown-key", frozenset({"401"}), lambda: signed("GET", feed, b"", key=stranger, query="after=0"), 15),
        FloodKind("wrong-signature", frozenset({"401"}), bad_sig, 15),
        FloodKind("tampered-body", frozenset({"401"}), tampered, 10),
        FloodKind("no-signature", frozenset({"401"}), lambda: ("GET", feed, "after=0", b"", {}), 10),
        FloodKind("huge-header-line", frozenset({"400", "431"}),
                  lambda: ("GET", feed, "after=0", b"", {"X-Huge": "h" * 64 * 1024}), 3),
        FloodKind("many-headers", frozenset({"400", "431"}), lambda: ("GET", feed, "after=0", b"", many_headers), 3),
    ]


@dataclass
class FloodResult:
    answers: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    unexpected: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    sent: int = 0
    bytes_sent: int = 0


async def run_flood(url: str, kinds: list[FloodKind], total: int, concurrency: int, end: float,
                    rnd: random.Random) -> FloodResult:
    """``total`` bad requests, at most ``concurrency`` at a time, stopping early at ``end``."""
    plan = rnd.choices(kinds, weights=[k.weight for k in kinds], k=total)
    result = FloodResult()
    queue: asyncio.Queue[FloodKind] = asyncio.Queue()
    for k in plan:
        queue.put_nowait(k)
    timeout = aiohttp.ClientTimeout(total=60)

    async def worker() -> None:
        # Its own connections; aiohttp's client would refuse to send the oversized headers itself.
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector, skip_auto_headers=["User-Agent"],
                                         max_field_size=1 << 20, max_line_size=1 << 20) as session:
            while not queue.empty() and time.time() < end:
                kind = queue.get_nowait()
                # Signing hashes up to 8 MB: off this loop, so the well-behaved clients' timings stay true.
                method, path, query, body, headers = await asyncio.to_thread(kind.make)
                target = url + path + (f"?{query}" if query else "")
                try:
                    async with session.request(method, target, data=body if method == "POST" else None,
                                               headers=headers) as resp:
                        await resp.read()
                        status = str(resp.status)
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    status = f"conn:{type(exc).__name__}"
                result.sent += 1
                result.bytes_sent += len(body) + sum(len(k) + len(v) for k, v in headers.items())
                result.answers[kind.name][status] += 1
                if status not in kind.expect:
                    result.unexpected[kind.name][status] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return result


def flood_child(params: dict[str, Any]) -> int:
    """The flood, in its own process (``--flood-child``): builds its bodies, says "ready", waits for
    its start time, floods, and prints the answers as one JSON line.

    Apart from the load generator, so that sending hundreds of MB does not slow the
    well-behaved clients' event loop and their timings measure the node alone.
    """
    rnd = random.Random(params["seed"])
    kinds = [k for k in flood_kinds(params["url"], params["max_body"], IdentityKey(bytes.fromhex(params["key"])), rnd)
             if not params["only"] or k.name in params["only"]]
    print("ready", flush=True)
    params.update(json.loads(sys.stdin.readline()))  # start_at and end, once the parent is ready too
    time.sleep(max(0.0, params["start_at"] - time.time()))
    t0 = time.time()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    result = asyncio.run(run_flood(params["url"], kinds, params["total"], params["concurrency"], params["end"], rnd))
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"answers": result.answers, "unexpected": result.unexpected, "sent": result.sent,
                      "bytes_sent": result.bytes_sent, "seconds": time.time() - t0,
                      "cpu_s": r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime}), flush=True)
    return 0


FLOOD_KINDS = ("oversized-signed", "oversized-unsigned", "gzip-bomb", "tiny-values-under-cap", "deep-nesting",
               "broken-bundles", "malformed-json", "bad-fetch", "unknown-key", "wrong-signature", "tampered-body",
               "no-signature", "huge-header-line", "many-headers")


# --- The run -------------------------------------------------------------------------------------

@dataclass
class MemorySample:
    t: float
    main_kb: int
    tree_kb: int


async def sample_memory(node: HubProcess, out: list[MemorySample], stop: asyncio.Event) -> None:
    while not stop.is_set() and node.alive():
        main, tree = node.rss_kb()
        out.append(MemorySample(time.time(), main, tree))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)


def summarize(samples: list[Sample]) -> dict[str, Any]:
    ms = [s.ms for s in samples if s.status not in ("rejected", "incomplete", "protocol")]
    errors = Counter(s.status for s in samples if not s.ok)
    return {
        "requests": len(ms), "p50_ms": round(percentile(ms, 50), 1), "p95_ms": round(percentile(ms, 95), 1),
        "max_ms": round(max(ms, default=0.0), 1), "errors": sum(errors.values()), "errors_by_status": dict(errors),
        "by_route": {r: len([s for s in samples if s.what == r]) for r in sorted({s.what for s in samples})},
    }


def mb(kb: float) -> float:
    return round(kb / 1024, 1)


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    total_s = args.duration + args.flood_duration
    pushes = max(1, math.ceil(total_s / args.push_every) + 1)
    say(f"setting up in {root} ...")
    setup = await build(root, args.peers, args.bundles, args.officers, args.fresh, pushes, args.seed)
    node = HubProcess("hub", setup.home, setup.url, root / "node.log")
    rec = Recorder()
    memory: list[MemorySample] = []
    counts: Counter[str] = Counter()
    rnd = random.Random(args.seed + 1)
    async with aiohttp.ClientSession() as session:
        await node.start(session)
    say(f"node {setup.hub_id} up at {setup.url} (pid {node.pid}); rss {mb(node.rss_kb()[1])} MB")
    stop_sampling = asyncio.Event()
    sampler = asyncio.create_task(sample_memory(node, memory, stop_sampling))
    flooder = None
    try:
        # The flood's process makes its bodies now, and starts by the clock when the main phase ends.
        params = {"url": setup.url, "max_body": setup.max_body_bytes, "key": setup.flooder.identity.seed.hex(),
                  "seed": args.seed + 2, "only": [k for k in args.flood_kinds.split(",") if k],
                  "total": args.flood_requests, "concurrency": args.flood_concurrency}
        flooder = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).resolve()), "--flood-child", json.dumps(params),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT)
        assert flooder.stdout is not None and flooder.stdin is not None
        ready = await asyncio.wait_for(flooder.stdout.readline(), 120)
        if ready.strip() != b"ready":
            raise RuntimeError("the flood process did not start")
        t_start = time.time()
        times = {"start_at": t_start + args.duration, "end": t_start + args.duration + args.flood_duration}
        flooder.stdin.write(json.dumps(times).encode() + b"\n")
        await flooder.stdin.drain()
        me0 = resource.getrusage(resource.RUSAGE_SELF)
        cpu_start = node.cpu_s()
        rss_start = node.rss_kb()
        end = t_start + total_s
        flood_at = t_start + args.duration
        tasks = [asyncio.create_task(run_peer(p, setup, rec, end, args.interval, args.push_every,
                                              random.Random(rnd.random()), counts)) for p in setup.peers]
        tasks += [asyncio.create_task(run_officer(t, setup, rec, end, args.think, random.Random(rnd.random())))
                  for t in setup.tokens]
        say(f"load: {args.peers} peers ({round(args.fresh * args.peers)} from cursor 0), {args.officers} officers,"
            f" {args.duration:.0f} s, then {args.flood_duration:.0f} s with the flood")
        await asyncio.sleep(max(0.0, flood_at - time.time()))
        cpu_main = node.cpu_s() - cpu_start
        main_wall = time.time() - t_start
        hwm_main = node.hwm_kb()
        rec.phase = "flood"
        flood_rss_start = node.rss_kb()
        flood_t0 = time.time()
        say(f"flood: {args.flood_requests} requests, {args.flood_concurrency} at a time, from another process")
        out = await asyncio.wait_for(flooder.stdout.read(), args.flood_duration + 120)
        await flooder.wait()
        if flooder.returncode != 0 or not out.strip():
            raise RuntimeError(f"the flood process failed ({flooder.returncode})")
        flood = json.loads(out.strip().splitlines()[-1])
        flood_s = flood["seconds"]
        say(f"flood sent {flood['sent']} in {flood_s:.1f} s; well-behaved load continues to the end")
        await asyncio.gather(*tasks)
        me1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu_total = node.cpu_s() - cpu_start
        wall = time.time() - t_start
        await asyncio.sleep(1.0)  # one more second of samples after the flood: where memory settles
        rss_end = node.rss_kb()
        hwm = node.hwm_kb()
        alive = node.alive()
    finally:
        stop_sampling.set()
        await sampler
        if flooder is not None and flooder.returncode is None:
            flooder.kill()
            await flooder.wait()
        await node.stop()

    main = [s for s in rec.samples if s.phase == "main"]
    during = [s for s in rec.samples if s.phase == "flood"]
    in_flood = [m for m in memory if m.t >= flood_t0]
    flood_peak_tree = max((m.tree_kb for m in in_flood), default=flood_rss_start[1])
    flood_peak_main = max((m.main_kb for m in in_flood), default=flood_rss_start[0])
    peak_tree = max((m.tree_kb for m in memory), default=0)
    unexpected = sum(sum(c.values()) for c in flood["unexpected"].values())
    classes = {}
    for cls in ("sync", "officer"):
        classes[cls] = {"main": summarize([s for s in main if s.cls == cls]),
                        "flood": summarize([s for s in during if s.cls == cls])}
    errors = sum(1 for s in rec.samples if not s.ok) + unexpected + (0 if alive else 1)
    throttled = sum(1 for s in rec.samples if s.status == "429")
    sync_all = summarize([s for s in rec.samples if s.cls == "sync"])
    officer_all = summarize([s for s in rec.samples if s.cls == "officer"])

    print(f"load test: 1 node (RILO hub, `cenmesh run`, pid {node.pid}), {args.peers} syncing peers, "
          f"{args.officers} officers; {args.duration:.0f} s + {args.flood_duration:.0f} s with a flood")
    print(f"store: {setup.bundles} bundles at start ({round(args.fresh * args.peers)} peers from cursor 0),"
          f" sync interval {args.interval:g} s, a push every ~{args.push_every:g} s per peer,"
          f" officer think time ~{args.think:g} s")
    header = f"{'class':<8} {'phase':<6} {'requests':>8} {'req/s':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'errors':>7}"
    print(header)
    print("-" * len(header))
    for cls, phases in classes.items():
        for phase, s in phases.items():
            span = main_wall if phase == "main" else max(1e-9, wall - main_wall)
            print(f"{cls:<8} {phase:<6} {s['requests']:>8} {s['requests'] / span:>6.1f} {s['p50_ms']:>8.1f}"
                  f" {s['p95_ms']:>8.1f} {s['max_ms']:>8.1f} {s['errors']:>7}"
                  + (f"  {s['errors_by_status']}" if s["errors"] else ""))
    for cls, label in (("sync", "sync route"), ("officer", "officer kind")):
        parts = []
        for what in sorted({s.what for s in rec.samples if s.cls == cls}):
            ms = [s.ms for s in rec.samples if s.cls == cls and s.what == what and s.status.isdigit()]
            if ms:
                parts.append(f"{what} {len(ms)} p50 {percentile(ms, 50):.0f} p95 {percentile(ms, 95):.0f}")
        print(f"by {label} (whole run, ms): " + "; ".join(parts))
    print(f"peers: {counts['rounds']} rounds, {counts['feed_items']} feed items, {counts['fetched']} bundles fetched,"
          f" {counts['pushed']} pushed, {counts['failed_rounds']} failed rounds; 429s to well-behaved peers: {throttled}")
    print(f"node memory: rss at start {mb(rss_start[1])} MB, peak {mb(peak_tree)} MB (main process + verifier"
          f" workers, sampled every {SAMPLE_EVERY_S} s); main process VmHWM {mb(hwm_main)} MB before the flood,"
          f" {mb(hwm)} MB at the end")
    if memory:
        marks = [memory[min(len(memory) - 1, round(i * (len(memory) - 1) / 8))] for i in range(9)]
        print("node rss over the run (MB): " + ", ".join(f"{m.t - t_start:.0f} s {mb(m.tree_kb):.0f}" for m in marks))
    main_requests = len(main)
    print(f"node cpu: {cpu_main:.1f} s in the {main_wall:.0f} s main phase ({cpu_main / main_wall:.0%} of one core,"
          f" {1000 * cpu_main / max(1, main_requests):.1f} ms per well-behaved request),"
          f" {cpu_total:.1f} s in all; load generator (this process): "
          f"{me1.ru_utime + me1.ru_stime - me0.ru_utime - me0.ru_stime:.1f} s, flood process {flood['cpu_s']:.1f} s;"
          f" {os.cpu_count()} cores, shared")
    print(f"flood: {flood['sent']} requests ({flood['bytes_sent'] / 1e6:.0f} MB) in {flood_s:.1f} s;"
          f" rss at its start {mb(flood_rss_start[1])} MB (main process {mb(flood_rss_start[0])} MB),"
          f" peak {mb(flood_peak_tree)} MB (main {mb(flood_peak_main)} MB),"
          f" end {mb(rss_end[1])} MB (main {mb(rss_end[0])} MB);"
          f" growth {mb(flood_peak_tree - flood_rss_start[1])} MB")
    for name in sorted(flood["answers"]):
        flag = f"  UNEXPECTED {flood['unexpected'][name]}" if flood["unexpected"].get(name) else ""
        print(f"  {name:<22} {flood['answers'][name]}{flag}")
    print(f"errors: {errors} (target 0){'' if alive else '; the node died'}")
    return {
        "peers": args.peers, "officers": args.officers, "duration_s": args.duration,
        "flood_duration_s": args.flood_duration, "bundles": setup.bundles,
        "sync_requests": sync_all["requests"], "sync_p50_ms": classes["sync"]["main"]["p50_ms"],
        "sync_p95_ms": classes["sync"]["main"]["p95_ms"], "sync_max_ms": classes["sync"]["main"]["max_ms"],
        "officer_requests": officer_all["requests"], "officer_p50_ms": classes["officer"]["main"]["p50_ms"],
        "officer_p95_ms": classes["officer"]["main"]["p95_ms"], "officer_max_ms": classes["officer"]["main"]["max_ms"],
        "sync_p95_flood_ms": classes["sync"]["flood"]["p95_ms"],
        "officer_p95_flood_ms": classes["officer"]["flood"]["p95_ms"],
        "errors": errors, "errors_by_status": dict(Counter(s.status for s in rec.samples if not s.ok)),
        "throttled_peers_429": throttled, "flood_unexpected": unexpected,
        "peak_rss_mb": mb(peak_tree), "peak_main_hwm_mb": mb(hwm), "start_rss_mb": mb(rss_start[1]),
        "node_cpu_s": round(cpu_total, 1), "node_cpu_share_main": round(cpu_main / main_wall, 2),
        "node_cpu_ms_per_request_main": round(1000 * cpu_main / max(1, len(main)), 2),
        "flood_requests": flood["sent"], "flood_mb_sent": round(flood["bytes_sent"] / 1e6),
        "flood_answers": flood["answers"],
        "flood_rss_start_mb": mb(flood_rss_start[1]), "flood_rss_peak_mb": mb(flood_peak_tree),
        "flood_rss_end_mb": mb(rss_end[1]), "flood_rss_growth_mb": mb(flood_peak_tree - flood_rss_start[1]),
        "flood_main_rss_growth_mb": mb(flood_peak_main - flood_rss_start[0]),
        "pushed": counts["pushed"], "fetched": counts["fetched"], "rounds": counts["rounds"],
        "node_alive": alive,
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
                    "sqlite": sqlite3.sqlite_version, "loadavg_1m": round(os.getloadavg()[0], 2)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", type=int, default=50, help="syncing peers (default 50)")
    parser.add_argument("--officers", type=int, default=20, help="officers searching (default 20)")
    parser.add_argument("--duration", type=float, default=60, help="seconds of load before the flood (default 60)")
    parser.add_argument("--flood-duration", type=float, default=20,
                        help="seconds of load with the flood (default 20; the flood stops early when done)")
    parser.add_argument("--flood-requests", type=int, default=1000, help="bad requests in the flood (default 1000)")
    parser.add_argument("--flood-concurrency", type=int, default=8, help="flood requests at a time (default 8)")
    parser.add_argument("--flood-kinds", default="", help="only these kinds of abuse, comma-separated (default all)")
    parser.add_argument("--bundles", type=int, default=4000, help="bundles in the node's store at start (default 4000)")
    parser.add_argument("--fresh", type=float, default=0.2,
                        help="share of peers that start from cursor 0 and catch up (default 0.2)")
    parser.add_argument("--interval", type=float, default=2.0, help="each peer's sync interval, seconds (default 2)")
    parser.add_argument("--push-every", type=float, default=10.0, help="seconds between a peer's pushes (default 10)")
    parser.add_argument("--think", type=float, default=1.0, help="officer think time, seconds on average (default 1)")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (node log, database)")
    parser.add_argument("--flood-child", help=argparse.SUPPRESS)  # internal: the flood's own process
    args = parser.parse_args(argv)
    if args.flood_child:
        return flood_child(json.loads(args.flood_child))
    unknown = {k for k in args.flood_kinds.split(",") if k} - set(FLOOD_KINDS)
    if unknown:
        parser.error(f"--flood-kinds: no kind {', '.join(sorted(unknown))}; the kinds are {', '.join(FLOOD_KINDS)}")
    if args.peers < 2 or args.officers < 1 or args.bundles < 1 or args.duration <= 0 or args.interval <= 0:
        parser.error("need at least 2 peers, 1 officer, 1 bundle, and positive durations")
    root = Path(tempfile.mkdtemp(prefix="cenmesh-load-"))
    try:
        summary = asyncio.run(run(args, root))
    except (RuntimeError, OSError, aiohttp.ClientError, sqlite3.Error) as exc:
        say(f"load test failed: {type(exc).__name__}: {exc}")
        log = root / "node.log"
        if log.exists():
            say(log.read_text(errors="replace")[-3000:])
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:2000]}))
        return 1
    finally:
        if args.keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(summary, separators=(", ", ": ")))
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
