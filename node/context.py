"""The running node's state: who it is, whom it trusts, and its store.

One ``Node`` per process (or several in one process for tests and the
simulation). It keeps the accepted directory in memory, because every
ingest and every feed request consults it, and writes every change through
to the store first.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from config.settings import Settings
from crypto.descriptor import check_descriptor, make_descriptor
from crypto.keys import EncryptionKey, IdentityKey
from node.keystore import KeyFileError, KeyStore
from node.store import directory as dir_store
from node.store.db import Store
from node.verify import Snapshot, Verifier, default_processes
from protocol.audience import Roster
from protocol.descriptor import Descriptor, parse_descriptor, supersedes
from protocol.errors import InvalidDescriptor

log = logging.getLogger("cenmesh.node")

Clock = Callable[[], float]


@dataclass
class DirectoryChange:
    """What merging a batch of descriptors did."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: int = 0


class Node:
    """A node's identity, keys, trust and directory, over its store."""

    def __init__(self, settings: Settings, store: Store, keys: KeyStore, *, clock: Clock = time.time) -> None:
        self.settings = settings
        self.store = store
        self.keystore = keys
        self.clock = clock
        self.identity: IdentityKey = keys.identity()
        self.enc_keys: list[EncryptionKey] = keys.encryption_keys()
        self.node_id = self.identity.node_id
        self.descriptor: Descriptor = parse_descriptor(keys.descriptor())
        self.directory: dict[str, Descriptor] = {}
        self.anchors: dict[str, bytes] = {}
        self.pinned: set[str] = set()
        self.rosters: dict[str, Roster] = {}
        # Stored descriptor text -> parsed descriptor: the sync job reloads trust at every tick
        # (an operator may have changed it with the CLI), and re-parsing every descriptor each
        # time cost O(directory) per tick on every node, O(nodes^2) for a federation in one process.
        self._parsed: dict[str, Descriptor] = {}
        self.verifier = Verifier(settings.sync.verify_processes or default_processes())
        self.reload()

    def snapshot(self) -> Snapshot:
        """What bundle checking needs, in a form that can cross to a worker process."""
        return Snapshot(self.node_id, self.is_hub, self.settings.protocol.max_bundle_bytes, dict(self.directory),
                        tuple(k.private for k in self.enc_keys))

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    @property
    def is_hub(self) -> bool:
        return self.settings.node.role == "hub"

    def reload(self) -> None:
        """Read trust and directory from the store (start-up)."""
        self._install(self.store.read_now(_trust_snapshot))

    async def reload_async(self) -> None:
        """The same, from a running node (an operator may have changed trust with the CLI,
        or brought back our own descriptor endorsed)."""
        try:
            own = parse_descriptor(self.keystore.descriptor())
        except (InvalidDescriptor, KeyFileError, ValueError) as exc:
            log.error("descriptor.json cannot be read; keeping the one loaded: %s", exc)
        else:
            if own.node == self.node_id and own.obj != self.descriptor.obj:
                self.descriptor = own
                # A rotated key is advertised by the new descriptor: hold its private half too.
                self.enc_keys = self.keystore.encryption_keys()
        self._install(await self.store.read(_trust_snapshot))

    def _install(self, snapshot: tuple[dict[str, bytes], set[str], dict[str, Roster], list[str]]) -> None:
        self.anchors, self.pinned, self.rosters, texts = snapshot
        directory = {}
        parsed = {}
        for text in texts:
            d = self._parsed.get(text) or parse_descriptor(json.loads(text))
            parsed[text] = d
            directory[d.node] = d
        self._parsed = parsed
        directory[self.node_id] = self.descriptor
        self.directory = directory

    async def refresh_rosters(self) -> None:
        self.rosters = await self.store.read(dir_store.rosters)

    def judge_descriptor(self, obj: Any) -> Descriptor | None:
        """Decide whether ``obj`` should enter or replace our directory entry; None when unchanged.

        Accepted when self-signed and pinned or endorsed by an anchor (PROTOCOL.md
        2.1), or when it is a self-signed update of a node we already accept that
        changes only its keys and endpoints (key rotation must not need a new
        endorsement). A node that changes its role, regions, country or name
        needs an anchor's endorsement again: otherwise it could make itself a hub,
        or join a region, and be served bundles it may not hold.
        Raises InvalidDescriptor otherwise.
        """
        if isinstance(obj, dict):
            known = self.directory.get(str(obj.get("node")))
            if known is not None and known.obj == obj:
                # Exactly what we accepted already: nothing to check again. Directory gossip
                # re-sends every descriptor, and re-verifying each one's signatures cost
                # O(directory) Ed25519 checks per refresh on every node.
                return None
        d = parse_descriptor(obj)
        current = self.directory.get(d.node)
        # What we endorsed ourselves we trust as much as what our anchors endorsed.
        anchors = {**self.anchors, self.node_id: self.identity.public}
        if current is not None and not current.revoked and not d.revoked and same_standing(d, current):
            check_descriptor(d, anchors=anchors, pinned=[*self.pinned, d.node])
        else:
            check_descriptor(d, anchors=anchors, pinned=list(self.pinned))
        if d.node == self.node_id and not d.revoked:
            return None  # our own descriptor comes from our key store, never from peers
        if not supersedes(d, current):
            if current is not None and len(d.endorsements) > len(current.endorsements) and d.content() == current.content():
                return d  # same content, more endorsements: keep the richer copy
            return None
        return d

    async def merge_descriptors(self, objs: Iterable[Any], *, source: str) -> DirectoryChange:
        """Accept every acceptable descriptor from ``source``; log and count the rest."""
        change = DirectoryChange()
        now = self.now_ms()
        for obj in objs:
            try:
                d = self.judge_descriptor(obj)
            except InvalidDescriptor as exc:
                change.refused += 1
                if exc.reason == "conflict":
                    node = obj.get("node") if isinstance(obj, dict) else None
                    log.warning("descriptor conflict from %s: %s", source, exc)
                    if isinstance(node, str):
                        await self.store.write(dir_store.flag, node, str(exc))
                else:
                    log.info("descriptor from %s refused: %s", source, exc)
                continue
            if d is None:
                change.unchanged += 1
                continue
            existed = d.node in self.directory
            await self.store.write(dir_store.save_descriptor, d.obj, now)
            self.directory[d.node] = d
            if existed:
                change.updated += 1
            else:
                change.added += 1
        return change

def same_standing(a: Descriptor, b: Descriptor) -> bool:
    """True when two descriptors of one node give it the same role, regions, country and name."""
    return (a.role, sorted(a.regions), a.country, a.name) == (b.role, sorted(b.regions), b.country, b.name)


def _trust_snapshot(conn: Any) -> tuple[dict[str, bytes], set[str], dict[str, Roster], list[str]]:
    return dir_store.anchors(conn), dir_store.pinned(conn), dir_store.rosters(conn), dir_store.descriptor_texts(conn)


def publish_descriptor(keys: KeyStore, settings: Settings, *, seq: int, issued: int,
                       endorsements: list[dict[str, Any]] | None = None, revoked: bool = False) -> Descriptor:
    """Sign this node's descriptor from its settings and keys and save it to descriptor.json."""
    d = make_descriptor(
        keys.identity(), seq=seq, name=settings.node.name, country=settings.node.country,
        role=settings.node.role, regions=settings.node.regions, endpoints=[settings.node.public_url],
        enc_keys=keys.enc_windows(), issued=issued, revoked=revoked,
    )
    obj = {**d.obj, "endorsements": endorsements or []}
    keys.save_descriptor(obj)
    return parse_descriptor(obj)
