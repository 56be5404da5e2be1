"""A real federation in one test process: real keys, SQLite files, aiohttp servers on 127.0.0.1.

Nodes are created with the same admin functions ``cenmesh init``/``endorse``/
``trust``/``peer add`` use; each runs its full application (federation and
officer API) on its own loopback port. Sync is driven explicitly
(``await fed.sync(...)``) instead of by the scheduler, so tests never sleep.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from node import admin
from node.context import Node
from node.peers import SyncDriver
from node.runtime import DRIVER_APP_KEY, build_app, open_node
from node.store import directory as dir_store
from node.store import peers as peer_store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
            m.runner = web.AppRunner(m.app, access_log=None)
            await m.runner.setup()
            await web.TCPSite(m.runner, "127.0.0.1", int(m.url.rsplit(":", 1)[1])).start()

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


def roster_store(member: Member) -> Any:
    return dir_store
