"""Setting up a node from the command line: init, descriptors, endorsement, trust, peers, keys, revocation.

These run while the node is stopped or running alike: they write the node's
folder and database directly, and a running node picks up trust and
directory changes at its next sync round.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from config.settings import SettingsError, load_settings, parse_settings, render_settings
from crypto.descriptor import anchor_revocation, check_descriptor, endorse, self_signed
from node import auth
from node.context import publish_descriptor
from node.keystore import KeyStore, write_secret
from node.runtime import client_ssl, open_node
from node.store import directory as dir_store
from node.store import peers as peer_store
from node.store.db import Store, init_store
from node.transport import HttpTransport, PeerClient, PeerUnavailable
from protocol.canonical import parse_json
from protocol.descriptor import Descriptor, parse_descriptor
from protocol.errors import InvalidDescriptor, MalformedJSON


class AdminError(Exception):
    """An operator's request that cannot be carried out; the message says why and what to do."""


def now_ms() -> int:
    return int(time.time() * 1000)


def read_descriptor_file(path: str) -> Descriptor:
    try:
        obj = parse_json(Path(path).read_bytes())
        return parse_descriptor(obj)
    except OSError as exc:
        raise AdminError(f"{path}: {exc.strerror}") from None
    except (MalformedJSON, InvalidDescriptor) as exc:
        raise AdminError(f"{path}: not a valid descriptor: {exc}") from None


def init(home: str, *, name: str, country: str, role: str, regions: list[str], listen: str,
         public_url: str | None) -> dict[str, Any]:
    """Create a node's folder: node.toml, keys (0600), descriptor, database and an admin token."""
    folder = Path(home)
    if (folder / "node.toml").exists():
        raise AdminError(f"{folder / 'node.toml'} exists already; this folder holds a node")
    data = {"node": {"name": name, "country": country, "role": role, "regions": regions,
                     "public_url": public_url or f"http://{listen}"},
            "server": {"listen": listen}}
    try:
        settings = parse_settings(data, folder, env={})
    except SettingsError as exc:
        raise AdminError(str(exc).replace("node.toml: ", "")) from None
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    keys = KeyStore(folder)
    identity = keys.create_identity()
    keys.add_encryption_key(not_before=now_ms())
    descriptor = publish_descriptor(keys, settings, seq=1, issued=now_ms())
    (folder / "node.toml").write_text("# cenmesh node settings; see docs/operating.md\n" + render_settings(settings))
    init_store(settings.path(settings.store.path))
    store = Store(settings.path(settings.store.path))
    try:
        token = store.write_now(auth.create_token, "admin", "admin", now_ms())
    finally:
        store.close()
    write_secret(folder / "admin.token", token + "\n")
    return {"node": identity.node_id, "name": name, "home": str(folder), "token": token,
            "descriptor": descriptor.obj}


def own_descriptor(home: str) -> dict[str, Any]:
    return KeyStore(Path(home)).descriptor()


def endorse_file(anchor_home: str, path: str) -> dict[str, Any]:
    """The anchor's endorsement added to the descriptor in ``path``."""
    d = read_descriptor_file(path)
    if not self_signed(d):
        raise AdminError(f"{path}: the descriptor's own signature does not verify; refusing to endorse it")
    return endorse(d, KeyStore(Path(anchor_home)).identity()).obj


def trust(home: str, path: str) -> dict[str, Any]:
    """Pin the node in ``path`` as a trust anchor (and accept its descriptor)."""
    d = read_descriptor_file(path)
    if not self_signed(d):
        raise AdminError(f"{path}: the descriptor's own signature does not verify")
    node = open_node(home)
    try:
        node.store.write_now(dir_store.add_anchor, d.node, d.obj["identity_key"], d.name)
        node.store.write_now(dir_store.save_descriptor, d.obj, now_ms())
    finally:
        node.store.close()
    return {"anchor": d.node, "name": d.name}


def directory_add(home: str, path: str) -> dict[str, Any]:
    """Accept an endorsed descriptor by hand; our own one comes back endorsed this way too."""
    d = read_descriptor_file(path)
    keys = KeyStore(Path(home))
    mine = parse_descriptor(keys.descriptor())
    if d.node == mine.node:
        if d.content() != mine.content():
            raise AdminError(f"{path}: this is our node but not our current descriptor (seq {d.seq} vs {mine.seq})")
        merged = {e["by"]: e for e in [*mine.obj["endorsements"], *d.obj["endorsements"]]}
        keys.save_descriptor({**mine.obj, "endorsements": [merged[k] for k in sorted(merged)]})
        return {"node": d.node, "endorsements": sorted(merged), "own": True}
    node = open_node(home)
    try:
        try:
            accepted = node.judge_descriptor(d.obj)
        except InvalidDescriptor as exc:
            raise AdminError(f"{path}: not accepted: {exc}. Trust an anchor that endorsed it, "
                             "or have it endorsed first") from None
        if accepted is not None:
            node.store.write_now(dir_store.save_descriptor, accepted.obj, now_ms())
    finally:
        node.store.close()
    return {"node": d.node, "name": d.name, "changed": accepted is not None}


def pin(home: str, path: str) -> dict[str, Any]:
    """Accept a descriptor by pinning its node (no endorsement needed)."""
    d = read_descriptor_file(path)
    node = open_node(home)
    try:
        check_descriptor(d, anchors=node.anchors, pinned=[d.node])
        node.store.write_now(dir_store.pin, d.node)
        node.store.write_now(dir_store.save_descriptor, d.obj, now_ms())
    except InvalidDescriptor as exc:
        raise AdminError(f"{path}: {exc}") from None
    finally:
        node.store.close()
    return {"pinned": d.node, "name": d.name}


def peer_add(home: str, url: str) -> dict[str, Any]:
    """Fetch the descriptor at ``url``, check that it is accepted, and sync with it from now on."""
    node = open_node(home)

    async def fetch() -> Any:
        transport = HttpTransport(timeout_s=15, ssl=client_ssl(node.settings))
        try:
            return await PeerClient(node.identity, transport, time.time).descriptor(url)
        finally:
            await transport.close()

    try:
        try:
            obj = asyncio.run(fetch())
        except (PeerUnavailable, MalformedJSON) as exc:
            raise AdminError(f"cannot read {url}/federation/v1/descriptor: {exc}") from None
        try:
            judged = node.judge_descriptor(obj)
        except InvalidDescriptor as exc:
            raise AdminError(f"{url} is not accepted here ({exc}); trust its anchor or add its endorsed "
                             "descriptor with 'cenmesh directory add'") from None
        d = judged or node.directory.get(obj["node"])
        if d is None:
            raise AdminError(f"{url}: descriptor not accepted")
        if judged is not None:
            node.store.write_now(dir_store.save_descriptor, judged.obj, now_ms())
        node.store.write_now(peer_store.add_peer, d.node, url.rstrip("/"))
    finally:
        node.store.close()
    return {"peer": d.node, "name": d.name, "role": d.role, "url": url.rstrip("/")}


def keys_rotate(home: str) -> dict[str, Any]:
    """A new encryption key and descriptor; older private keys stay for reading."""
    settings = load_settings(home)
    keys = KeyStore(Path(home))
    current = parse_descriptor(keys.descriptor())
    if current.revoked:
        raise AdminError("this node is revoked; it cannot rotate keys")
    keys.add_encryption_key(not_before=now_ms())
    d = publish_descriptor(keys, settings, seq=current.seq + 1, issued=now_ms())
    return {"node": d.node, "seq": d.seq, "enc_keys": len(d.enc_keys),
            "note": "a running node serves the new descriptor from its next sync round; peers that accept "
                    "this node take it as an update; get it endorsed again for nodes that do not know it yet"}


def revoke(home: str, target: str) -> dict[str, Any]:
    """Revoke this node (self) or, as an anchor, a node it endorsed; prints the revocation to distribute."""
    keys = KeyStore(Path(home))
    mine = parse_descriptor(keys.descriptor())
    if target == mine.node:
        settings = load_settings(home)
        d = publish_descriptor(keys, settings, seq=mine.seq + 1, issued=now_ms(), revoked=True)
        return d.obj
    node = open_node(home)
    try:
        victim = node.directory.get(target)
        if victim is None:
            raise AdminError(f"{target} is not in this node's directory")
        if not any(e.by == mine.node for e in victim.endorsements):
            raise AdminError(f"this node did not endorse {target}; only its endorsing anchor or itself may revoke it")
        d = anchor_revocation(victim, keys.identity(), issued=now_ms())
        node.store.write_now(dir_store.save_descriptor, d.obj, now_ms())
        return d.obj
    finally:
        node.store.close()


def add_user(home: str, name: str, role: str) -> dict[str, Any]:
    node_store = open_node(home).store
    try:
        token = node_store.write_now(auth.create_token, name, role, now_ms())
    except ValueError as exc:
        raise AdminError(str(exc)) from None
    finally:
        node_store.close()
    return {"name": name, "role": role, "token": token}
