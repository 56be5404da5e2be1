"""Descriptor signing, endorsement, revocation and the trust decision (PROTOCOL.md 2.1)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from crypto.keys import IdentityKey, node_id_for, verify_ed25519
from protocol.canonical import b64u_encode
from protocol.descriptor import Descriptor, EncKey, descriptor_signed_bytes, parse_descriptor
from protocol.errors import InvalidDescriptor


def make_descriptor(
    identity: IdentityKey,
    *,
    seq: int,
    name: str,
    country: str,
    role: str,
    regions: Sequence[str],
    endpoints: Sequence[str],
    enc_keys: Sequence[EncKey],
    issued: int,
    revoked: bool = False,
) -> Descriptor:
    """Build and self-sign a descriptor (without endorsements)."""
    obj: dict[str, Any] = {
        "type": "cenmesh.descriptor", "v": 1, "node": identity.node_id, "seq": seq,
        "name": name, "country": country, "role": role, "regions": list(regions),
        "endpoints": list(endpoints), "identity_key": identity.public_b64u,
        "enc_keys": [{"key": b64u_encode(k.key), "not_before": k.not_before, "not_after": k.not_after} for k in enc_keys],
        "issued": issued,
    }
    if revoked:
        obj["revoked"] = True
    sig = identity.sign(descriptor_signed_bytes(obj))
    return parse_descriptor({**obj, "sig": b64u_encode(sig), "endorsements": []})


def endorse(descriptor: Descriptor, anchor: IdentityKey) -> Descriptor:
    """Return ``descriptor`` with the anchor's endorsement added (replacing an older one by it)."""
    sig = b64u_encode(anchor.sign(descriptor.signed_bytes))
    others = [e for e in descriptor.obj["endorsements"] if e["by"] != anchor.node_id]
    endorsements = sorted([*others, {"by": anchor.node_id, "sig": sig}], key=lambda e: str(e["by"]))
    return parse_descriptor({**descriptor.obj, "endorsements": endorsements})


def anchor_revocation(descriptor: Descriptor, anchor: IdentityKey, *, issued: int) -> Descriptor:
    """An anchor revokes a node it endorsed: the node's last descriptor, ``revoked`` and seq+1.

    The anchor cannot sign with the node's key, so ``sig`` carries the
    anchor's signature as well and the endorsement is what makes it valid.
    """
    obj = {k: v for k, v in descriptor.obj.items() if k not in ("sig", "endorsements")}
    obj.update(seq=descriptor.seq + 1, issued=issued, revoked=True)
    sig = b64u_encode(anchor.sign(descriptor_signed_bytes(obj)))
    return parse_descriptor({**obj, "sig": sig, "endorsements": [{"by": anchor.node_id, "sig": sig}]})


def self_signed(descriptor: Descriptor) -> bool:
    """True when the node id matches the identity key and ``sig`` verifies with it."""
    return node_id_for(descriptor.identity_key) == descriptor.node and verify_ed25519(
        descriptor.identity_key, descriptor.signed_bytes, descriptor.sig
    )


def endorsed_by(descriptor: Descriptor, anchors: Mapping[str, bytes]) -> list[str]:
    """The anchors (node id -> identity public key) whose endorsement on it verifies."""
    signed = descriptor.signed_bytes
    return [
        e.by for e in descriptor.endorsements
        if e.by in anchors and verify_ed25519(anchors[e.by], signed, e.sig)
    ]


def check_descriptor(descriptor: Descriptor, *, anchors: Mapping[str, bytes], pinned: Sequence[str] = ()) -> None:
    """The acceptance rule of section 2.1; raises InvalidDescriptor(reason).

    A normal descriptor needs a valid self-signature and either a pin or an
    anchor's endorsement. A revocation is valid when self-signed, or when a
    trust anchor endorses it (the anchor revoking a node it vouched for).
    """
    if node_id_for(descriptor.identity_key) != descriptor.node:
        raise InvalidDescriptor("node-id", f"{descriptor.node} does not match its identity key")
    own = self_signed(descriptor)
    vouched = bool(endorsed_by(descriptor, anchors))
    if descriptor.revoked and (own or vouched):
        return
    if not own:
        raise InvalidDescriptor("signature", f"descriptor of {descriptor.node} is not signed by its key")
    if descriptor.node not in pinned and not vouched and descriptor.node not in anchors:
        raise InvalidDescriptor("untrusted", f"{descriptor.node} is neither pinned nor endorsed by an anchor")
