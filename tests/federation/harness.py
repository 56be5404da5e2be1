"""A real federation in one test process: real keys, SQLite files, aiohttp servers on 127.0.0.1.

Nodes are created with the same admin functions ``cenmesh init``/``endorse``/
``trust``/``peer add`` use; each runs its full application (federation and
officer API) on its own loopback port. Sync is driven explicitly
(``await fed.sync(...)``) instead of by the scheduler, so tests never sleep.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from node import admin
from node.context import Node
from node.peers import SyncDriver
from node.runtime import DRIVER_APP_KEY, build_app, open_node, server_ssl
from node.server import make_runner
from node.store import directory as dir_store
from node.store import peers as peer_store

sys.path.append(str(Path(__file__).resolve().parents[2] / "scripts"))  # last: nothing there shadows a module
from benchlib import free_port  # shared with the scripts, which start real nodes too

__all__ = ["free_port"]  # tests import it from here


@dataclass
class Member:
    """One node of the test federation."""

    name: str
    home: Path
    node_id: str
    url: str
    token: str
    role: str
    regions: list[str]
    node: Node | None = None
    runner: web.AppRunner | None = None
    app: web.Application | None = None

    @property
    def driver(self) -> SyncDriver:
        assert self.app is not None
        return self.app[DRIVER_APP_KEY]

    def descriptor_file(self) -> str:
        path = self.home.parent / f"{self.home.name}.descriptor.json"
        path.write_text(json.dumps(admin.own_descriptor(str(self.home))))
        return str(path)


@dataclass
class Federation:
    root: Path
    members: dict[str, Member] = field(default_factory=dict)

    def add(self, name: str, country: str, role: str, regions: list[str]) -> Member:
        port = free_port()
        home = self.root / name
        out = admin.init(str(home), name=name, country=country, role=role, regions=regions,
                         listen=f"127.0.0.1:{port}", public_url=None)
        m = Member(name, home, out["node"], f"http://127.0.0.1:{port}", out["token"], role, regions)
        self.members[name] = m
        return m

    def wire(self) -> None:
        """Every node trusts every hub; each hub endorses the nationals of its regions; everyone is
        in everyone's directory by endorsement (what directory gossip would also achieve)."""
        hubs = [m for m in self.members.values() if m.role == "hub"]
        for m in self.members.values():
            for hub in hubs:
                if hub is not m:
                    admin.trust(str(m.home), hub.descriptor_file())
        for m in self.members.values():
            if m.role == "hub":
                continue
            hub = next(h for h in hubs if set(h.regions) & set(m.regions))
            endorsed = self.root / f"{m.name}.endorsed.json"
            endorsed.write_text(json.dumps(admin.endorse_file(str(hub.home), m.descriptor_file())))
            admin.directory_add(str(m.home), str(endorsed))  # our own descriptor, now endorsed
        for m in self.members.values():
            for other in self.members.values():
                if other is not m and other.role != "hub":
                    admin.directory_add(str(m.home), other.descriptor_file())

    def peer(self, a: str, b: str) -> None:
        """a pulls from b, and b from a (peering is set up on both sides)."""
        for x, y in ((a, b), (b, a)):
            mx, my = self.members[x], self.members[y]
            store = open_node(mx.home).store
            try:
                store.write_now(peer_store.add_peer, my.node_id, my.url)
            finally:
                store.close()

    async def start(self, *names: str) -> None:
        for name in names or list(self.members):
            m = self.members[name]
            m.node = open_node(m.home)
            m.app = build_app(m.node, scheduled=False)
            m.runner = make_runner(m.app)
            await m.runner.setup()
            await web.TCPSite(m.runner, "127.0.0.1", int(m.url.rsplit(":", 1)[1]),
                              ssl_context=server_ssl(m.node.settings)).start()

    async def stop(self, *names: str) -> None:
        for name in names or list(self.members):
            m = self.members[name]
            if m.runner is not None:
                await m.runner.cleanup()
                m.runner = m.app = m.node = None

    async def sync(self, *names: str, rounds: int = 1) -> None:
        """Force sync rounds on the named nodes (all running ones by default), in order."""
        for _ in range(rounds):
            for name in names or list(self.members):
                m = self.members[name]
                if m.app is not None:
                    await m.driver.sync_all(force=True)
                    await m.driver.drain()

    async def drain(self) -> None:
        """Wait until no node has a push in flight (a push may start relays on other nodes)."""
        while any(m.app is not None and m.driver.pending_pushes for m in self.members.values()):
            for m in self.members.values():
                if m.app is not None:
                    await m.driver.drain()

    def ids(self, name: str) -> set[str]:
        """Bundle ids stored at a node (works whether it runs or not)."""
        import sqlite3

        conn = sqlite3.connect(self.members[name].home / "node.db")
        try:
            return {r[0] for r in conn.execute("SELECT id FROM bundles")}
        finally:
            conn.close()


async def api(member: Member, session: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Call a member's officer API with its admin token."""
    async with session.request(method, member.url + path, json=body,
                               headers={"Authorization": f"Bearer {member.token}"}) as resp:
        return resp.status, await resp.json()


async def share_new(member: Member, session: Any, kind: str, record: dict[str, Any], audience: str,
                    urgent: bool = False) -> tuple[str, dict[str, Any]]:
    """Create a record through the officer API and share it: (record id, the share answer)."""
    status, made = await api(member, session, "POST", "/api/v1/records", {"kind": kind, "record": record})
    assert status == 201, made
    status, shared = await api(member, session, "POST", f"/api/v1/records/{made['id']}/share",
                               {"audience": audience, "urgent": urgent})
    assert status == 201, shared
    return made["id"], shared


def roster_store(member: Member) -> Any:
    return dir_store


# -- helpers for the audience, reject, fault and crash tests (appended) -------------------------

def build_wca(fed: Federation) -> tuple[Member, Member, Member]:
    """The WCA hub, Nigeria and Ghana, both nationals peered with the hub: (hub, Nigeria, Ghana)."""
    hub = fed.add("WCA hub", "CI", "hub", ["WCA"])
    ng = fed.add("Nigeria", "NG", "national", ["WCA"])
    gh = fed.add("Ghana", "GH", "national", ["WCA"])
    fed.wire()
    fed.peer("Nigeria", "WCA hub")
    fed.peer("Ghana", "WCA hub")
    return hub, ng, gh


def make_seizure(i: int = 0, **overrides: Any) -> dict[str, Any]:
    """A valid seizure record (no personal data, so any audience may receive it)."""
    record = {
        "category": "medicines", "date": "2020-03-24",
        "office": {"name": "Lagos Apapa Port", "locode": "NGAPP"},
        "transport_mode": "sea", "detection_method": "risk-profiling",
        "concealment": "masks inside cartons of T-shirts",
        "commodity": {"description": f"surgical face masks, lot {i}", "hs_code": "630790"},
        "quantity": {"amount": str(1000 + i), "unit": "pieces"},
        "route": {"departure": "CN", "destination": "NG", "transit": []},
        "narrative": f"seizure number {i}",
        "tlp": "AMBER",
    }
    record.update(overrides)
    return record


def db_rows(member: Member, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run a read-only query on a member's database (works whether it runs or not)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{member.home / 'node.db'}?mode=ro", uri=True)
    try:
        return [tuple(r) for r in conn.execute(sql, args)]
    finally:
        conn.close()


def rejection_counts(member: Member) -> dict[tuple[str, str], int]:
    """The ``rejections`` table: (peer, reason) -> count."""
    return {(p, r): n for p, r, n in db_rows(member, "SELECT peer, reason, count FROM rejections")}


def set_setting(member: Member, section: str, key: str, value: Any) -> None:
    """Change one setting in a (stopped) member's node.toml."""
    path = member.home / "node.toml"
    lines = path.read_text().splitlines()
    rendered = f"{key} = {json.dumps(value)}"
    current = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            if current == section:  # leaving the section without finding the key: add it
                lines.insert(i, rendered)
                break
            current = stripped[1:-1]
        elif current == section and stripped.split("=", 1)[0].strip() == key:
            lines[i] = rendered
            break
    else:
        if current != section:
            lines.append(f"[{section}]")
        lines.append(rendered)
    path.write_text("\n".join(lines) + "\n")


def identity_of(member: Member) -> Any:
    from node.keystore import KeyStore

    return KeyStore(member.home).identity()


def enc_key_of(member: Member) -> bytes:
    """A member's current X25519 public key, from its own descriptor."""
    from protocol.descriptor import parse_descriptor

    d = parse_descriptor(admin.own_descriptor(str(member.home)))
    return d.enc_keys[-1].key


def seal_from(origin: Member, recipients: list[Member], record: dict[str, Any] | None = None, *,
              created: int | None = None, expires: int | None = None, urgent: bool = False,
              identity: Any = None, extra_keys: dict[str, bytes] | None = None) -> Any:
    """Seal ``record`` as ``origin`` (or ``identity``) to ``recipients`` (audience: those nodes)."""
    import os
    import time

    from crypto.envelope import seal_bundle
    from protocol.bundle import Audience

    ident = identity or identity_of(origin)
    keys = {m.node_id: enc_key_of(m) for m in recipients}
    keys.update(extra_keys or {})
    if ident.node_id not in keys:
        keys[ident.node_id] = enc_key_of(origin)
    others = sorted(n for n in keys if n != ident.node_id)
    audience = Audience("nodes", tuple(others or [ident.node_id]))
    now = int(time.time() * 1000)
    created = now if created is None else created
    expires = created + 30 * 24 * 3600 * 1000 if expires is None else expires
    from node.outbox import complete

    return seal_bundle(identity=ident, kind="seizure", record=complete(record or make_seizure()), audience=audience,
                       recipient_keys=keys, created=created, expires=expires, urgent=urgent, rng=os.urandom)


def signed_headers(identity: Any, target: Member, method: str, path: str, query: str = "", body: bytes = b"",
                   *, now_s: int | None = None, nonce: str | None = None) -> dict[str, str]:
    """Section 5 headers for a request from ``identity`` to ``target``."""
    import os
    import time

    from crypto.httpsig import sign_request
    from node.transport import authority_of
    from protocol.canonical import b64u_encode

    return sign_request(method=method, authority=authority_of(target.url), path=path, query=query, body=body,
                        key=identity, now_s=int(time.time()) if now_s is None else now_s,
                        nonce=nonce or b64u_encode(os.urandom(16)))


async def raw_call(session: Any, target: Member, method: str, path: str, *, query: str = "", body: bytes = b"",
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """Send exactly these bytes and headers; returns (status, parsed JSON or None)."""
    url = target.url + path + (f"?{query}" if query else "")
    hdrs = {"Content-Type": "application/json", **(headers or {})} if method == "POST" else dict(headers or {})
    async with session.request(method, url, data=body if method == "POST" else None, headers=hdrs) as resp:
        data = await resp.read()
        try:
            return resp.status, json.loads(data) if data else None
        except ValueError:
            return resp.status, data


async def push_as(session: Any, sender: Member | Any, target: Member, bundles: list[Any], *,
                  now_s: int | None = None) -> tuple[int, Any]:
    """A signed POST /federation/v1/push of ``bundles`` (Bundle objects or dicts)."""
    from protocol.canonical import canonical

    identity = identity_of(sender) if isinstance(sender, Member) else sender
    body = canonical({"bundles": [getattr(b, "obj", b) for b in bundles]})
    path = "/federation/v1/push"
    return await raw_call(session, target, "POST", path, body=body,
                          headers=signed_headers(identity, target, "POST", path, body=body, now_s=now_s))
