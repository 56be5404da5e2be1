#!/usr/bin/env python3
"""A six-node cenmesh federation on 127.0.0.1, set up and driven with the real ``cenmesh`` command.

Two RILO hubs and four customs administrations, each its own ``cenmesh run``
process with its own folder, keys and database::

    RILO West and Central Africa (hub, CI; regions WA + CAF)  <->  RILO Asia Pacific (hub, KR; AP)
       |             |              |                                    |
    Nigeria (WA)  Ghana (WA)   Belgium (WE)                          China (AP)

The demo endorses, trusts and peers the nodes, shares COVID-19 themed
seizures, sends an urgent alert from Nigeria to China through both hubs,
answers it with feedback, and checks that Ghana and Belgium never see the
alert. Then it keeps the federation running until Ctrl-C (or SIGTERM), so you
can try the command line and the API on it.

    scripts/demo                          # ./demo-run, ports 8700-8705
    scripts/demo --dir /tmp/fed --base-port 9100
    scripts/demo --exit-after-checks      # CI: exit 0 when every check passed, 1 otherwise
                                          # (same as CENMESH_DEMO_EXIT=1)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from crypto.httpsig import sign_request  # noqa: E402
from node.keystore import KeyStore  # noqa: E402
from protocol.canonical import b64u_encode, canonical  # noqa: E402

SYNC_INTERVAL_S = 5
SYNC_JITTER_S = 1
POLL_LIMIT_S = 30.0
CLI_TIMEOUT_S = 60
MARKER = ".cenmesh-demo"


# --- the cast ------------------------------------------------------------------------------------
# Region codes are the RILO codes of data/rilo_regions.json: WA = RILO West Africa (BRLR-AO, Dakar)
# and CAF = RILO Central Africa (BRLR-AC, Douala) are the two halves of what is often called "West
# and Central Africa"; the demo's one African hub serves both. AP = RILO Asia/Pacific (Seoul, KR).
# WE = RILO Western Europe (Cologne), which has no hub in this demo.


@dataclass
class Member:
    key: str  # folder name
    short: str  # for narration
    name: str
    country: str
    role: str
    regions: list[str]
    hub: str | None  # the hub that endorses it and that it peers with
    port: int = 0
    node_id: str = ""
    token: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_hub(self) -> bool:
        return self.role == "hub"


def cast(base_port: int) -> dict[str, Member]:
    members = [
        Member("wca-hub", "WCA hub", "RILO West and Central Africa", "CI", "hub", ["WA", "CAF"], None),
        Member("ap-hub", "AP hub", "RILO Asia Pacific", "KR", "hub", ["AP"], None),
        Member("nigeria", "Nigeria", "Nigeria Customs Service", "NG", "national", ["WA"], "wca-hub"),
        Member("ghana", "Ghana", "Ghana Customs Division (GRA)", "GH", "national", ["WA"], "wca-hub"),
        Member("china", "China", "General Administration of Customs of China", "CN", "national", ["AP"], "ap-hub"),
        Member("belgium", "Belgium", "Belgian Customs and Excise", "BE", "national", ["WE"], "wca-hub"),
    ]
    for i, m in enumerate(members):
        m.port = base_port + i
    return {m.key: m for m in members}


# --- realistic record contents ---------------------------------------------------------------------

_ISO6346 = {c: v for c, v in zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                                 [v for v in range(10, 39) if v % 11], strict=False)}


def container(owner: str, serial: str) -> str:
    """An ISO 6346 container number (owner code + 'U' + 6 digits) with its check digit."""
    body = owner + "U" + serial
    total = sum((_ISO6346[c] if c.isalpha() else int(c)) << i for i, c in enumerate(body))
    return body + str(total % 11 % 10)


def awb(prefix: str, serial: str) -> str:
    """An 11-digit air waybill number: airline prefix, 7-digit serial, serial mod 7."""
    return prefix + serial + str(int(serial) % 7)


def imo(six: str) -> str:
    """An IMO ship number whose 7th digit is the weighted check digit."""
    return "IMO" + six + str(sum(int(d) * w for d, w in zip(six, (7, 6, 5, 4, 3, 2), strict=True)) % 10)


def day(offset: int) -> str:
    return (datetime.datetime.now(datetime.UTC).date() + datetime.timedelta(days=offset)).isoformat()


def seizures() -> dict[str, dict[str, Any]]:
    """Four seizures of COVID-19 counterfeits. LOCODEs: CNYTN Yantian and BELGG Liege are in
    data/rilo_regions.json; that list has no West African port, so NGAPP (Apapa, Lagos) and GHTEM
    (Tema) are their real UN/LOCODEs."""
    return {
        "nigeria": {
            "category": "medicines", "date": day(-6),
            "office": {"name": "Apapa Customs Command, Lagos", "locode": "NGAPP"},
            "transport_mode": "sea", "detection_method": "risk-profiling",
            "concealment": "cartons of masks declared as cotton T-shirts, behind a front row of genuine goods",
            "commodity": {"description": "surgical face masks (type IIR) with counterfeit CE marking",
                          "hs_code": "630790", "brand": "3M (counterfeit)", "rights_holder": "3M Company"},
            "quantity": {"amount": "120000", "unit": "pieces"},
            "value": {"amount": "36000.00", "currency": "USD"},
            "route": {"departure": "CN", "destination": "NG", "transit": ["TG"], "origin": "CN"},
            "conveyance": {"container": container("MSC", "482931"), "bill_of_lading": "MEDUYT482931"},
            "narrative": "Second consignment this quarter from the same Shenzhen forwarder.",
            "tlp": "AMBER",
        },
        "ghana": {
            "category": "medicines", "date": day(-4),
            "office": {"name": "Tema Port Collection", "locode": "GHTEM"},
            "transport_mode": "sea", "detection_method": "x-ray",
            "concealment": "blister packs hidden in bags of rice",
            "commodity": {"description": "falsified hydroxychloroquine 200 mg tablets sold as COVID-19 cure",
                          "hs_code": "300490"},
            "quantity": {"amount": "250", "unit": "cartons"},
            "route": {"departure": "IN", "destination": "GH", "transit": []},
            "conveyance": {"container": container("MAE", "771204"), "vessel_imo": imo("945444")},
            "tlp": "AMBER",
        },
        "china": {
            "category": "medicines", "date": day(-3),
            "office": {"name": "Shenzhen Customs, Yantian port", "locode": "CNYTN"},
            "transport_mode": "sea", "detection_method": "intelligence",
            "concealment": "declared as plastic household articles",
            "commodity": {"description": "unauthorised COVID-19 rapid antigen test kits", "hs_code": "382200"},
            "quantity": {"amount": "48000", "unit": "pieces"},
            "route": {"departure": "CN", "destination": "NG", "transit": ["TG"]},
            "conveyance": {"container": container("CMA", "305518")},
            "tlp": "GREEN",
        },
        "belgium": {
            "category": "ipr", "date": day(-2),
            "office": {"name": "Liege Airport customs (express hub)", "locode": "BELGG"},
            "transport_mode": "express", "detection_method": "risk-profiling",
            "concealment": "none: declared as 'protective equipment, samples'",
            "commodity": {"description": "FFP2 respirators with forged EU certificates of conformity",
                          "hs_code": "630790"},
            "quantity": {"amount": "8400", "unit": "pieces"},
            "route": {"departure": "CN", "destination": "BE", "transit": []},
            "conveyance": {"awb": awb("176", "4821097"), "flight": "EK9802"},
            "parties": [{"role": "consignor", "name": "Shenzhen Huaxin Medical Supply Co. (fictional)",
                         "country": "CN"}],
            "tlp": "AMBER",
        },
    }


def alert(related: str) -> dict[str, Any]:
    box = container("MSC", "482950")
    return {
        "title": f"Counterfeit masks and test kits expected in container {box} (same forwarder as Apapa seizure)",
        "urgency": "immediate", "requested_action": "examine", "respond_by": day(2),
        "consignment": {"container": box, "eta": day(18), "destination_locode": "NGAPP"},
        "suspected": {"category": "medicines",
                      "commodity": {"description": "face masks and COVID-19 test kits", "hs_code": "630790"}},
        "tlp": "AMBER", "related": [related],
        "narrative": "Booked by the Shenzhen forwarder of our seizure; loading at Yantian this week. "
                     "Please examine before export.",
    }


# --- output ------------------------------------------------------------------------------------------


class DemoError(Exception):
    """A step could not be carried out; the message says which and why."""


class Interrupted(Exception):
    """SIGINT or SIGTERM."""


class Out:
    def __init__(self, verbose: bool) -> None:
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        self.verbose = verbose
        self.g, self.r, self.b, self.d, self.z = (
            ("\033[32m", "\033[31m", "\033[1m", "\033[2m", "\033[0m") if color else ("",) * 5)
        self.checks: list[tuple[bool, str]] = []
        self._shown: set[str] = set()
        self.started = time.monotonic()

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.started:.0f} s"

    def step(self, n: int, title: str) -> None:
        print(f"\n{self.b}[{n}/8] {title}{self.z}  {self.d}(at {self.elapsed()}){self.z}", flush=True)

    def ok(self, msg: str) -> None:
        print(f"  {self.g}✓{self.z} {msg}", flush=True)

    def bad(self, msg: str) -> None:
        print(f"  {self.r}✗{self.z} {msg}", flush=True)

    def info(self, msg: str) -> None:
        print(f"    {msg}", flush=True)

    def check(self, passed: bool, ok: str, bad: str | None = None) -> bool:
        self.checks.append((passed, ok if passed else (bad or ok)))
        (self.ok if passed else self.bad)(ok if passed else (bad or ok))
        return passed

    def command(self, words: list[str]) -> None:
        """Show a command line: every one with --verbose, else the first of each kind."""
        kind = " ".join(w for w in words[:2] if not w.startswith("-"))
        if self.verbose or kind not in self._shown:
            self._shown.add(kind)
            print(f"    {self.d}$ cenmesh {shlex.join(words)}{self.z}", flush=True)

    def block(self, text: str) -> None:
        for line in text.rstrip().splitlines():
            print(f"    {self.d}{line}{self.z}")


def shown(path: Path | str) -> str:
    """A path as the reader would type it from where they ran the demo."""
    p = Path(path)
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


# --- the demo ------------------------------------------------------------------------------------------


class Demo:
    def __init__(self, root: Path, base_port: int, out: Out) -> None:
        self.root = root
        self.out = out
        self.m = cast(base_port)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CENMESH_")}
        self.env.update({"CENMESH_SYNC__INTERVAL_S": str(SYNC_INTERVAL_S),
                         "CENMESH_SYNC__JITTER_S": str(SYNC_JITTER_S), "PYTHONUNBUFFERED": "1"})
        self.logs: dict[str, Any] = {}
        self.t_alert = 0.0  # when the alert was shared (monotonic)
        self.ids: dict[str, str] = {}  # record ids by name
        self.bundles: dict[str, str] = {}  # bundle ids by record name

    # helpers --------------------------------------------------------------------------------------

    def home(self, key: str) -> Path:
        return self.root / key

    def cenmesh(self, *args: str, ok_codes: tuple[int, ...] = (0,), quiet: bool = False) -> subprocess.CompletedProcess[str]:
        words = [shown(a) if a.startswith(str(self.root)) else a for a in args]
        if not quiet:
            self.out.command(words)
        try:
            r = subprocess.run([sys.executable, "-m", "node.cli", *args], cwd=ROOT, env=self.env,
                               capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise DemoError(f"`cenmesh {' '.join(words)}` did not finish in {CLI_TIMEOUT_S} s") from None
        if r.returncode not in ok_codes:
            raise DemoError(f"`cenmesh {' '.join(words)}` exited {r.returncode}: {(r.stderr or r.stdout).strip()}")
        return r

    def cenmesh_json(self, *args: str, quiet: bool = False) -> Any:
        r = self.cenmesh(*args, quiet=quiet)
        try:
            return json.loads(r.stdout)
        except ValueError:
            raise DemoError(f"`cenmesh {args[0]}` printed no JSON: {r.stdout[:300]!r}") from None

    def each(self, fn: Callable[[Any], Any], items: list[Any] | None = None) -> list[Any]:
        """Run ``fn`` for several nodes (or pairs) at once; each one's own commands stay in order."""
        items = items if items is not None else list(self.m.values())
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(fn, items))

    def http(self, method: str, url: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, raw.decode("utf-8", "replace")
        except (urllib.error.URLError, OSError) as exc:
            return 0, str(getattr(exc, "reason", exc))

    def api(self, m: Member, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        return self.http(method, m.url + path, data,
                         {"Authorization": f"Bearer {m.token}", "Content-Type": "application/json"})

    def signed(self, caller: Member, target: Member, method: str, path: str, body: bytes = b"",
               query: str = "") -> tuple[int, Any]:
        """A federation request signed with ``caller``'s identity key, as its node would send it."""
        identity = KeyStore(self.home(caller.key)).identity()
        headers = sign_request(method=method, authority=f"127.0.0.1:{target.port}", path=path, query=query,
                               body=body, key=identity, now_s=int(time.time()), nonce=b64u_encode(os.urandom(16)))
        headers["Content-Type"] = "application/json"
        url = target.url + path + (f"?{query}" if query else "")
        return self.http(method, url, body if method == "POST" else None, headers)

    def bundle_row(self, m: Member, bundle_id: str) -> dict[str, Any] | None:
        """The bundle as stored in the node's database (read directly, as an auditor would)."""
        conn = sqlite3.connect(self.home(m.key) / "node.db", timeout=10)
        try:
            conn.row_factory = sqlite3.Row
            row = conn.execute("SELECT id, state, received, via, scope FROM bundles WHERE id = ?",
                               (bundle_id,)).fetchone()
            return dict(row) if row else None
        finally:
            conn.close()

    def has_record(self, m: Member, rid: str) -> bool:
        status, _ = self.api(m, "GET", f"/api/v1/records/{rid}")
        return status == 200

    def tails(self, lines: int = 12) -> str:
        out = []
        for m in self.m.values():
            log = self.home(m.key) / "node.log"
            if log.exists():
                # APScheduler logs every tick at INFO; leave those out so the node's own lines show.
                text = [ln for ln in log.read_text(errors="replace").splitlines()
                        if " apscheduler." not in ln][-lines:]
                out.append(f"--- {shown(log)} (last {len(text)} lines)")
                out += text
        return "\n".join(out)

    def wait_for(self, what: str, probe: Callable[[], Any], limit: float = POLL_LIMIT_S, every: float = 0.05) -> tuple[Any, float]:
        """Poll ``probe`` until it returns something truthy; (value, seconds). Fails loudly after ``limit``."""
        start = time.monotonic()
        while True:
            value = probe()
            if value:
                return value, time.monotonic() - start
            if time.monotonic() - start > limit:
                raise DemoError(f"gave up after {limit:.0f} s waiting for {what}\n{self.tails()}")
            self.check_alive()
            time.sleep(every)

    def check_alive(self) -> None:
        for m in self.m.values():
            if m.proc is not None and m.proc.poll() is not None:
                raise DemoError(f"{m.name} stopped unexpectedly (exit {m.proc.returncode})\n{self.tails()}")

    # steps ----------------------------------------------------------------------------------------------

    def step1_init(self) -> None:
        self.out.step(1, f"Create six nodes in {shown(self.root)} with `cenmesh init`")
        (self.root / "descriptors").mkdir()

        def init(m: Member) -> None:
            args = ["init", "--home", str(self.home(m.key)), "--name", m.name, "--country", m.country,
                    "--role", m.role, "--listen", f"127.0.0.1:{m.port}"]
            for r in m.regions:
                args += ["--region", r]
            made = self.cenmesh_json(*args)
            m.node_id, m.token = made["node"], made["token"]
            (self.root / "descriptors" / f"{m.key}.json").write_text(json.dumps(made["descriptor"], indent=2))

        self.each(init)
        for m in self.m.values():
            self.out.ok(f"{m.name:<44} {m.role:<8} {'+'.join(m.regions):<7} {m.url}  {m.node_id}")
        self.out.info("WA and CAF are RILO West Africa (Dakar) and RILO Central Africa (Douala); the demo's one")
        self.out.info("African hub, in Côte d'Ivoire, serves both. Belgium is in WE (RILO Western Europe), which")
        self.out.info("has no hub here, so the West and Central Africa hub endorses Belgium and peers with it:")
        self.out.info("a hub may endorse and relay for nodes outside its own regions.")

    def step2_trust(self) -> None:
        self.out.step(2, "Endorse each administration by its hub; everyone trusts both hubs")
        hubs = [m for m in self.m.values() if m.is_hub]
        nationals = [m for m in self.m.values() if not m.is_hub]
        desc = self.root / "descriptors"

        run = lambda args: self.cenmesh(*args)  # noqa: E731
        # Two waves of independent commands: trust and endorse, then the directory adds that need both.
        trusts = [("trust", "--home", str(self.home(m.key)), str(desc / f"{h.key}.json"))
                  for m in self.m.values() for h in hubs if h is not m]
        endorse = [("endorse", "--home", str(self.home(m.hub or "")), str(desc / f"{m.key}.json")) for m in nationals]
        done = self.each(run, [*endorse, *trusts])
        for m, r in zip(nationals, done, strict=False):
            (desc / f"{m.key}.endorsed.json").write_text(r.stdout)
        self.out.ok("every node pinned both hubs as trust anchors (`cenmesh trust`)")
        own = [("directory", "add", "--home", str(self.home(m.key)), str(desc / f"{m.key}.endorsed.json"))
               for m in nationals]
        at_hubs = [("directory", "add", "--home", str(self.home(h.key)), str(desc / f"{m.key}.endorsed.json"))
                   for h in hubs for m in nationals]
        self.each(run, [*own, *at_hubs])
        for m in nationals:
            note = "  (outside the hub's regions)" if not set(m.regions) & set(self.m[m.hub or ""].regions) else ""
            self.out.ok(f"{m.short} endorsed by the {self.m[m.hub or ''].short}{note}")
        self.out.ok("both hubs accept every administration's endorsed descriptor (`cenmesh directory add`)")
        self.out.info("The administrations are not told about each other: they learn the directory by gossip")
        self.out.info("from their hub once they sync (checked in step 4).")

    def step3_start(self) -> None:
        self.out.step(3, f"Start the six nodes (`cenmesh run`; sync every {SYNC_INTERVAL_S} s ± {SYNC_JITTER_S} s for the demo)")
        for m in self.m.values():
            log = open(self.home(m.key) / "node.log", "ab")  # noqa: SIM115 - closed in stop()
            self.logs[m.key] = log
            self.out.command(["run", "--home", shown(self.home(m.key))])
            m.proc = subprocess.Popen([sys.executable, "-m", "node.cli", "run", "--home", str(self.home(m.key))],
                                      cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        for m in self.m.values():
            def up(m: Member = m) -> bool:
                status, body = self.http("GET", m.url + "/federation/v1/descriptor")
                return status == 200 and isinstance(body, dict) and body.get("node") == m.node_id
            self.wait_for(f"{m.name} to answer on {m.url}", up)
            assert m.proc is not None
            self.out.ok(f"{m.name:<44} pid {m.proc.pid:<7} {m.url}  log {shown(self.home(m.key) / 'node.log')}")

    def step4_peer(self) -> None:
        self.out.step(4, "Peer each administration with its hub, and the hubs with each other")
        pairs = [(m, self.m[m.hub]) for m in self.m.values() if m.hub] + [(self.m["wca-hub"], self.m["ap-hub"])]
        def peer(pair: tuple[Member, Member]) -> None:
            a, b = pair
            self.cenmesh("peer", "add", "--home", str(self.home(a.key)), b.url)
            self.cenmesh("peer", "add", "--home", str(self.home(b.key)), a.url)

        self.each(peer, pairs)
        for a, b in pairs:
            self.out.ok(f"{a.short} <-> {b.short}")
        every = {m.node_id for m in self.m.values()}
        nationals = [m for m in self.m.values() if not m.is_hub]
        start = time.monotonic()
        for m in nationals:
            def knows_all(m: Member = m) -> bool:
                status, body = self.api(m, "GET", "/api/v1/directory")
                return status == 200 and every <= {n["node"] for n in body["nodes"]}
            try:
                self.wait_for(f"{m.short} to learn the directory", knows_all)
            except DemoError as exc:
                self.out.check(False, "", f"{m.short} did not learn the directory by gossip: {exc}")
                raise
        self.out.check(True, f"directory gossip: all four administrations know all six nodes "
                             f"{time.monotonic() - start:.1f} s after peering (merged from their hub's /directory)")

    def step5_seizures(self) -> None:
        self.out.step(5, "Record and share COVID-19 counterfeit seizures")
        records = seizures()
        files = self.root / "records"
        files.mkdir()
        audiences = {"nigeria": "region:WA", "ghana": "region:WA", "china": "federation",
                     "belgium": f"nodes:{self.m['china'].node_id}"}
        def record_and_share(m: Member) -> tuple[dict[str, Any], subprocess.CompletedProcess[str] | None]:
            path = files / f"{m.key}-seizure.json"
            path.write_text(json.dumps(records[m.key], indent=2, ensure_ascii=False))
            made = self.cenmesh_json("record", "add", "--home", str(self.home(m.key)), "--kind", "seizure",
                                     "--file", str(path), "--json")
            self.ids[m.key] = made["id"]
            refused = None
            if m.key == "belgium":  # personal data: the node itself must refuse to send it to everyone
                refused = self.cenmesh("share", "--home", str(self.home(m.key)), made["id"], "--to", "federation",
                                       ok_codes=(0, 1))
            shared = self.cenmesh_json("share", "--home", str(self.home(m.key)), made["id"], "--to",
                                       audiences[m.key], "--json")
            self.bundles[m.key] = shared["bundle"]
            return shared, refused

        results = self.each(record_and_share, [self.m[k] for k in records])
        for (key, rec), (shared, refused) in zip(records.items(), results, strict=True):
            if refused is not None:
                self.out.check(refused.returncode == 1 and "parties" in refused.stderr,
                               f"Belgium's seizure names a consignor (personal data): sharing it with the whole "
                               f"federation is refused: {refused.stderr.strip().removeprefix('cenmesh share: ')}",
                               f"sharing a seizure with parties to the federation was not refused: "
                               f"{refused.stderr or refused.stdout}")
            to = "China only" if key == "belgium" else audiences[key]
            c = rec["commodity"]
            self.out.ok(f"{self.m[key].short}: {c['description'][:58]} (HS {c['hs_code']}) at "
                        f"{rec['office']['locode']} -> {to}, {len(shared['recipients'])} recipients")
        ng, gh, cn, be = (self.m[k] for k in ("nigeria", "ghana", "china", "belgium"))
        wca, ap = self.m["wca-hub"], self.m["ap-hub"]
        expect = [
            (gh, "nigeria", "Ghana reads Nigeria's region:WA seizure (pulled via the WCA hub)"),
            (ng, "ghana", "Nigeria reads Ghana's region:WA seizure"),
            (wca, "nigeria", "the WCA hub reads its region's seizures (it lists WA)"),
            (ng, "china", "Nigeria reads China's federation-wide seizure (AP hub -> WCA hub -> Nigeria)"),
            (be, "china", "Belgium reads China's federation-wide seizure"),
            (cn, "belgium", "China reads Belgium's seizure with the consignor's name"),
        ]
        start = time.monotonic()
        for m, key, text in expect:
            def arrived(m: Member = m, key: str = key) -> bool:
                return self.has_record(m, self.ids[key])
            try:
                self.wait_for(text, arrived)
                self.out.check(True, f"{text}  [{time.monotonic() - start:.1f} s]")
            except DemoError as exc:
                self.out.check(False, "", f"{text}: {exc}")
        relay, _ = self.wait_for("the AP hub to relay Nigeria's seizure",
                                 lambda: self.bundle_row(ap, self.bundles["nigeria"]))
        self.out.check(relay["state"] == "relay" and not self.has_record(ap, self.ids["nigeria"]),
                       "the AP hub holds Nigeria's WA seizure for relaying but cannot read it (state 'relay')",
                       f"the AP hub's copy of Nigeria's seizure is in state {relay['state']!r}")
        self.out.check(not self.has_record(cn, self.ids["nigeria"]) and not self.bundle_row(cn, self.bundles["nigeria"]),
                       "China, outside region WA, never received Nigeria's seizure",
                       "China received Nigeria's region:WA seizure")
        self.out.check(not self.has_record(ng, self.ids["belgium"]),
                       "Nigeria cannot read Belgium's seizure addressed to China",
                       "Nigeria can read Belgium's seizure addressed to China")
        self.out.info(f"`cenmesh records --home {shown(self.home('ghana'))}`:")
        self.out.block(self.cenmesh("records", "--home", str(self.home("ghana")), quiet=True).stdout)

    def step6_alert(self) -> None:
        self.out.step(6, "URGENT alert from Nigeria to China, through both hubs, and China's feedback")
        ng, cn = self.m["nigeria"], self.m["china"]
        path = self.root / "records" / "nigeria-alert.json"
        path.write_text(json.dumps(alert(self.ids["nigeria"]), indent=2))
        made = self.cenmesh_json("record", "add", "--home", str(self.home("nigeria")), "--kind", "alert",
                                 "--file", str(path), "--json")
        aid = self.ids["alert"] = made["id"]
        t0 = time.monotonic()
        shared = self.cenmesh_json("share", "--home", str(self.home("nigeria")), aid, "--to",
                                   f"nodes:{cn.node_id}", "--urgent", "--json")
        self.t_alert = time.monotonic()
        bid = self.bundles["alert"] = shared["bundle"]
        self.out.ok(f"Nigeria sealed alert {aid[:8]} to China only (bundle {bid[:12]}…; recipients Nigeria and China)")

        def in_inbox() -> bool:  # what `cenmesh inbox --json` prints, polled without its start-up time
            status, body = self.api(cn, "GET", "/api/v1/inbox")
            return status == 200 and any(a["id"] == aid for a in body["alerts"])

        _, after = self.wait_for("the alert in China's inbox", in_inbox, every=0.02)
        hops = self.path(bid, ("nigeria", "wca-hub", "ap-hub", "china"))
        latency = self.latency(hops)
        self.out.check(latency is not None and latency < 2000,
                       f"in China's inbox {self.span(latency, after, time.monotonic() - t0)}",
                       f"the alert reached China too late or not at all ({latency} ms)")
        self.show_path(hops)
        self.out.check(all(r is not None and r["state"] == "relay" for _, r in hops[1:3]),
                       "both hubs relayed it without being able to read it (state 'relay')",
                       "a hub could read the alert, or did not relay it")
        self.out.info(f"`cenmesh inbox --home {shown(self.home('china'))}`:")
        self.out.block(self.cenmesh("inbox", "--home", str(self.home("china")), quiet=True).stdout)

        t1 = time.monotonic()
        answered = self.cenmesh_json("feedback", "--home", str(self.home("china")), aid, "--outcome", "examined-seized",
                                     "--note", "Examined at Yantian before loading: 40,000 counterfeit masks and "
                                     "6,000 test kits held", "--json")

        def feedback_back() -> list[Any]:
            status, body = self.api(ng, "GET", f"/api/v1/records/{aid}")
            return body.get("feedback", []) if status == 200 else []

        fb, after = self.wait_for("China's feedback at Nigeria", feedback_back, every=0.02)
        hops = self.path(answered["bundle"], ("china", "ap-hub", "wca-hub", "nigeria"))
        latency = self.latency(hops)
        self.out.check(fb[0]["record"]["outcome"] == "examined-seized" and latency is not None and latency < 2000,
                       f"Nigeria sees China's feedback '{fb[0]['record']['outcome']}' "
                       f"{self.span(latency, after, time.monotonic() - t1)}",
                       f"feedback: outcome {fb[0]['record']['outcome']!r}, {latency} ms")
        self.show_path(hops)

    def path(self, bundle_id: str, keys: tuple[str, ...]) -> list[tuple[Member, dict[str, Any] | None]]:
        return [(self.m[k], self.bundle_row(self.m[k], bundle_id)) for k in keys]

    @staticmethod
    def latency(hops: list[tuple[Member, dict[str, Any] | None]]) -> int | None:
        """Milliseconds from storing at the origin to storing at the last node of the path."""
        first, last = hops[0][1], hops[-1][1]
        return None if first is None or last is None else int(last["received"] - first["received"])

    @staticmethod
    def span(latency: int | None, after: float, total: float) -> str:
        seen = "already there when the command returned" if after < 0.05 else f"seen {after:.2f} s after the command returned"
        return f"{latency} ms after it was sealed ({seen}; {total:.2f} s including the command's own start-up)"

    def show_path(self, hops: list[tuple[Member, dict[str, Any] | None]]) -> None:
        start = hops[0][1]["received"] if hops[0][1] else 0
        self.out.info("path: " + "  ->  ".join(
            f"{m.short} " + (f"+{r['received'] - start} ms [{r['state']}]" if r else "[missing]")
            for m, r in hops))

    def step7_privacy(self) -> None:
        self.out.step(7, "Ghana and Belgium, not recipients, cannot see the alert")
        wait = self.t_alert + 2 * (SYNC_INTERVAL_S + SYNC_JITTER_S) - time.monotonic()
        if wait > 0:
            self.out.info(f"waiting {wait:.0f} s so two sync rounds pass, then forcing one more with `cenmesh sync` ...")
            time.sleep(wait)
        aid, bid = self.ids["alert"], self.bundles["alert"]
        gh, be = self.m["ghana"], self.m["belgium"]
        for m in (gh, be):
            self.cenmesh("sync", "--home", str(self.home(m.key)))
        for m in (gh, be):
            listed = self.cenmesh_json("records", "--home", str(self.home(m.key)), "--json", "--limit", "500")
            ids = {r["id"] for r in listed["records"]}
            self.out.check(aid not in ids, f"{m.short}: `cenmesh records --json` lists {len(ids)} records, not the alert",
                           f"{m.short} lists the alert")
            self.out.check(self.bundle_row(m, bid) is None, f"{m.short}: no bundle {bid[:12]}… in its database",
                           f"{m.short} stores the alert's bundle")
        body = canonical({"ids": [bid]})
        for target in (self.m["wca-hub"], self.m["nigeria"], self.m["ap-hub"], self.m["china"]):
            status, answer = self.signed(gh, target, "POST", "/federation/v1/fetch", body)
            self.out.check(status == 200 and answer == {"bundles": []},
                           f"signed POST /federation/v1/fetch as Ghana to {target.short} for the alert: {json.dumps(answer)}",
                           f"fetch as Ghana from {target.short} answered {status} {answer}")
        status, feed = self.signed(gh, self.m["wca-hub"], "GET", "/federation/v1/feed", query="after=0&limit=1000")
        listed = {i["id"] for i in feed.get("items", [])} if status == 200 else set()
        self.out.check(status == 200 and bid not in listed and self.bundles["nigeria"] in listed,
                       f"the WCA hub's feed for Ghana lists {len(listed)} bundles, Nigeria's seizure but not the alert",
                       f"feed as Ghana: {status} {feed}")
        status, answer = self.signed(gh, self.m["wca-hub"], "POST", "/federation/v1/fetch",
                                     canonical({"ids": [self.bundles["nigeria"]]}))
        self.out.check(status == 200 and len(answer.get("bundles", [])) == 1,
                       "control: the same signed fetch for Nigeria's region:WA seizure returns it (1 bundle)",
                       f"control fetch failed: {status} {answer}")

    def step8_summary(self) -> None:
        self.out.step(8, "The federation is running")
        for m in self.m.values():
            print(f"  {m.name}")
            print(f"      url    {m.url}   ({m.role}, {'+'.join(m.regions)})")
            print(f"      node   {m.node_id}")
            print(f"      token  {m.token}   ({shown(self.home(m.key) / 'admin.token')})")
        ng, cn = shown(self.home("nigeria")), shown(self.home("china"))
        cli = shown(ROOT / ".venv" / "bin" / "cenmesh")
        print(f"""
  Try it:
      {cli} status --home {ng}
      {cli} records --home {ng}
      {cli} inbox --home {cn}
      {cli} directory list --home {ng}
      curl -s -H "Authorization: Bearer $(cat {ng}/admin.token)" {self.m['nigeria'].url}/api/v1/records
      curl -s {self.m['wca-hub'].url}/federation/v1/descriptor
      tail -f {shown(self.home('wca-hub'))}/node.log

  Press Ctrl-C to stop all six nodes.""", flush=True)

    def stop(self) -> None:
        running = [m for m in self.m.values() if m.proc is not None and m.proc.poll() is None]
        for m in running:
            assert m.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(m.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for m in running:
            assert m.proc is not None
            try:
                m.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(m.proc.pid, signal.SIGKILL)
                m.proc.wait(timeout=5)
                print(f"  {m.name} did not stop within 10 s: killed")
        for log in self.logs.values():
            log.close()
        if running:
            print(f"stopped {len(running)} nodes", flush=True)


def ports_free(base: int, n: int) -> list[int]:
    busy = []
    for port in range(base, base + n):
        with socket.socket() as s:
            # As the node's server does: TIME_WAIT leftovers of a previous run do not block a new one.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


def fresh_dir(path: Path) -> None:
    """Remove and recreate the demo folder, refusing to delete a folder the demo did not make."""
    if path.exists():
        if not path.is_dir() or (any(path.iterdir()) and not (path / MARKER).exists()):
            raise DemoError(f"{path} exists and was not made by the demo; refusing to delete it (choose --dir)")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / MARKER).write_text("made by scripts/demo.py; removed and recreated on every run\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Stop with Ctrl-C or SIGTERM: every node is stopped and the demo exits 0.")
    parser.add_argument("--dir", default="demo-run", help="folder for the six nodes (removed and recreated; default ./demo-run)")
    parser.add_argument("--base-port", type=int, default=8700, help="first of six consecutive ports (default 8700)")
    parser.add_argument("--exit-after-checks", action="store_true",
                        help="stop after the checks: exit 0 if all passed, else 1 (also CENMESH_DEMO_EXIT=1)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every cenmesh command, not one of each kind")
    args = parser.parse_args(argv)
    exit_after = args.exit_after_checks or os.environ.get("CENMESH_DEMO_EXIT") == "1"
    with_replace = getattr(sys.stdout, "reconfigure", None)
    if with_replace:
        with_replace(errors="replace")
    out = Out(args.verbose)
    root = Path(args.dir).resolve()

    def interrupt(signum: int, frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)

    print(f"cenmesh demo: six nodes on 127.0.0.1:{args.base_port}-{args.base_port + 5}, folder {shown(root)}")
    demo = Demo(root, args.base_port, out)
    checks_done = False
    try:
        busy = ports_free(args.base_port, 6)
        if busy:
            raise DemoError(f"port(s) {', '.join(map(str, busy))} in use (another demo still running?); "
                            "stop it or choose --base-port")
        fresh_dir(root)
        demo.step1_init()
        demo.step2_trust()
        demo.step3_start()
        demo.step4_peer()
        demo.step5_seizures()
        demo.step6_alert()
        demo.step7_privacy()
        checks_done = True
        failed = [text for passed, text in out.checks if not passed]
        print()
        if failed:
            out.bad(f"{len(failed)} of {len(out.checks)} checks failed:")
            for text in failed:
                out.info(text)
        else:
            out.ok(f"all {len(out.checks)} checks passed in {out.elapsed()}")
        if exit_after:
            return 1 if failed else 0
        demo.step8_summary()
        while True:
            time.sleep(1)
            for m in demo.m.values():
                if m.proc is not None and m.proc.poll() is not None and not getattr(m, "reported", False):
                    m.reported = True  # type: ignore[attr-defined]
                    out.bad(f"{m.name} stopped (exit {m.proc.returncode}); see {shown(demo.home(m.key) / 'node.log')}")
    except Interrupted as exc:
        print(f"\n{exc}: stopping ...", flush=True)
        return 0 if checks_done else 130
    except DemoError as exc:
        out.bad(str(exc))
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        demo.stop()


if __name__ == "__main__":
    sys.exit(main())
