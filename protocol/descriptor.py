"""Node descriptors (PROTOCOL.md section 2.1): structure, strict parsing, replacement rule.

Signatures over descriptors are checked in ``crypto.descriptor``; this module
only knows their shape and which of two descriptors of one node wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from protocol import shapes
from protocol.canonical import canonical
from protocol.errors import InvalidDescriptor, InvalidMessage, MalformedJSON

DESCRIPTOR_DOMAIN = b"cenmesh/descriptor/v1\x00"
ROLES = ("national", "hub")
_FIELDS = ("type", "v", "node", "seq", "name", "country", "role", "regions", "endpoints",
           "identity_key", "enc_keys", "issued", "sig", "endorsements")
_COUNTRY = re.compile(r"[A-Z]{2}")
_ENDPOINT = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/\-]*)?")
MAX_DESCRIPTOR_BYTES = 16_384


@dataclass(frozen=True)
class EncKey:
    """An X25519 public key and the creation times it may be used for."""

    key: bytes
    not_before: int
    not_after: int


@dataclass(frozen=True)
class Endorsement:
    """An anchor's signature over the same bytes the node signs."""

    by: str
    sig: bytes


@dataclass(frozen=True)
class Descriptor:
    """A parsed, shape-checked node descriptor. ``obj`` is its wire form."""

    node: str
    seq: int
    name: str
    country: str
    role: str
    regions: tuple[str, ...]
    endpoints: tuple[str, ...]
    identity_key: bytes
    enc_keys: tuple[EncKey, ...]
    issued: int
    sig: bytes
    endorsements: tuple[Endorsement, ...]
    revoked: bool
    obj: dict[str, Any] = field(repr=False, compare=False)

    @property
    def signed_bytes(self) -> bytes:
        """What the node's ``sig`` and every endorsement cover."""
        return descriptor_signed_bytes(self.obj)

    @property
    def is_hub(self) -> bool:
        """Hubs relay every bundle and serve their regions."""
        return self.role == "hub"

    def enc_key_at(self, created: int) -> bytes | None:
        """The newest encryption key whose window contains ``created``."""
        fitting = [k for k in self.enc_keys if k.not_before <= created <= k.not_after]
        if not fitting:
            return None
        return max(fitting, key=lambda k: k.not_before).key

    def content(self) -> bytes:
        """Canonical bytes of everything but the endorsements, for conflict checks."""
        return canonical({k: v for k, v in self.obj.items() if k != "endorsements"})


def descriptor_signed_bytes(obj: dict[str, Any]) -> bytes:
    """``domain + canonical(descriptor without sig and endorsements)``."""
    body = {k: v for k, v in obj.items() if k not in ("sig", "endorsements")}
    return DESCRIPTOR_DOMAIN + canonical(body)


def parse_descriptor(obj: Any) -> Descriptor:
    """Strictly parse a descriptor; raises InvalidDescriptor('shape', detail) and nothing else."""
    try:
        if len(canonical(obj)) > MAX_DESCRIPTOR_BYTES:
            raise InvalidMessage("descriptor", f"larger than {MAX_DESCRIPTOR_BYTES} bytes")
        return _parse(obj)
    except (InvalidMessage, MalformedJSON) as exc:
        raise InvalidDescriptor("shape", str(exc)) from None


def _parse(obj: Any) -> Descriptor:
    shapes.exact_keys(obj, "", _FIELDS, ("revoked",))
    if obj["type"] != "cenmesh.descriptor":
        raise InvalidMessage("type", "must be 'cenmesh.descriptor'")
    if type(obj["v"]) is not int or obj["v"] != 1:  # not 1.0, not True
        raise InvalidMessage("v", "must be the integer 1")
    node = shapes.node_id(obj["node"], "node")
    role = obj["role"]
    if role not in ROLES:
        raise InvalidMessage("role", "must be 'national' or 'hub'")
    regions = shapes.string_list(obj, "regions", max_items=16)
    for i, region in enumerate(regions):
        if not isinstance(region, str) or not shapes.REGION_CODE.fullmatch(region):
            raise InvalidMessage(f"regions[{i}]", "is not a region code (2-5 capital letters)")
    if len(set(regions)) != len(regions):
        raise InvalidMessage("regions", "has duplicates")
    endpoints = shapes.string_list(obj, "endpoints", max_items=8)
    for i, url in enumerate(endpoints):
        if not isinstance(url, str) or len(url) > 300 or not _ENDPOINT.fullmatch(url):
            raise InvalidMessage(f"endpoints[{i}]", "is not an http(s) URL")
    enc_keys = []
    for i, item in enumerate(shapes.string_list(obj, "enc_keys", max_items=32, min_items=1)):
        path = f"enc_keys[{i}]"
        shapes.exact_keys(item, path, ("key", "not_before", "not_after"))
        key = EncKey(shapes.b64u_field(item, "key", path, size=32),
                     shapes.integer(item, "not_before", path), shapes.integer(item, "not_after", path))
        if key.not_after < key.not_before:
            raise InvalidMessage(path, "not_after is before not_before")
        enc_keys.append(key)
    endorsements = []
    for i, item in enumerate(shapes.string_list(obj, "endorsements", max_items=16)):
        path = f"endorsements[{i}]"
        shapes.exact_keys(item, path, ("by", "sig"))
        endorsements.append(Endorsement(shapes.node_id(item["by"], f"{path}.by"),
                                        shapes.b64u_field(item, "sig", path, size=64)))
    revoked = obj.get("revoked", False)
    if revoked is not False and revoked is not True:
        raise InvalidMessage("revoked", "must be true or false")
    return Descriptor(
        node=node, seq=shapes.integer(obj, "seq", low=1),
        name=shapes.text(obj, "name", max_len=200), country=shapes.text(obj, "country", max_len=2, pattern=_COUNTRY),
        role=role, regions=tuple(regions), endpoints=tuple(endpoints),
        identity_key=shapes.b64u_field(obj, "identity_key", size=32), enc_keys=tuple(enc_keys),
        issued=shapes.integer(obj, "issued"), sig=shapes.b64u_field(obj, "sig", size=64),
        endorsements=tuple(endorsements), revoked=bool(revoked), obj=obj,
    )


def supersedes(new: Descriptor, old: Descriptor | None) -> bool:
    """True when ``new`` should replace ``old`` (section 2.1).

    A higher seq replaces; an equal seq with the same content is a no-op
    (endorsements may still be merged by the caller); an equal seq with
    different content is a conflict and raises InvalidDescriptor('conflict').
    A revoked descriptor is final: nothing replaces it.
    """
    if old is None:
        return True
    if old.revoked:
        return False
    if new.seq > old.seq:
        return True
    if new.seq == old.seq and new.content() != old.content():
        raise InvalidDescriptor("conflict", f"node {new.node} seq {new.seq} has two different contents")
    return False
