"""The bundle and its payload (PROTOCOL.md section 3): structures, parsing, the bytes signed.

``parse_bundle`` is the only way a bundle from outside becomes a ``Bundle``;
it checks size and shape strictly and computes the id and the bytes that the
signature and the AEAD cover, once. It does not check the signature, the
origin or the time: that is ``crypto.envelope`` and ``protocol.audience``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from protocol import shapes
from protocol.canonical import b64u_encode, canonical, dumps_unchecked
from protocol.errors import InvalidBundle, InvalidMessage, InvalidRecord
from protocol.records import KINDS, check_personal_data, validate_record

BUNDLE_DOMAIN = b"cenmesh/bundle/v1\x00"
MAX_BUNDLE_BYTES = 262_144
MAX_RECIPIENTS = 512
MAX_LIFETIME_MS = 400 * 24 * 3600 * 1000
CLOCK_SKEW_MS = 300_000
WRAP_BYTES = 80
NONCE_BYTES = 24
TAG_BYTES = 16

_BUNDLE_FIELDS = ("v", "origin", "created", "expires", "audience", "urgent", "recipients", "nonce", "ct", "sig")


@dataclass(frozen=True)
class Audience:
    """Who a bundle is meant for: named nodes, a group, or the whole federation."""

    scope: str
    nodes: tuple[str, ...] = ()
    group: str = ""

    def __post_init__(self) -> None:
        if self.scope == "nodes":
            if not self.nodes or self.group:
                raise InvalidMessage("audience.nodes", "scope 'nodes' needs a non-empty node list")
            shapes.sorted_unique(list(self.nodes), "audience.nodes")
            for i, node in enumerate(self.nodes):
                shapes.node_id(node, f"audience.nodes[{i}]")
        elif self.scope == "group":
            if self.nodes or not shapes.GROUP_NAME.fullmatch(self.group):
                raise InvalidMessage("audience.group", "must be 'region:CODE' or 'op:NAME'")
        elif self.scope == "federation":
            if self.nodes or self.group:
                raise InvalidMessage("audience", "scope 'federation' takes no nodes or group")
        else:
            raise InvalidMessage("audience.scope", "must be 'nodes', 'group' or 'federation'")

    def to_json(self) -> dict[str, Any]:
        """The audience as it appears on the wire."""
        if self.scope == "nodes":
            return {"scope": "nodes", "nodes": list(self.nodes)}
        if self.scope == "group":
            return {"scope": "group", "group": self.group}
        return {"scope": "federation"}

    @classmethod
    def from_json(cls, obj: Any) -> Audience:
        """Parse the wire form strictly; raises InvalidMessage."""
        if not isinstance(obj, dict):
            raise InvalidMessage("audience", "must be an object")
        scope = obj.get("scope")
        if scope == "nodes":
            shapes.exact_keys(obj, "audience", ("scope", "nodes"))
            nodes = shapes.string_list(obj, "nodes", "audience", max_items=MAX_RECIPIENTS, min_items=1)
            for i, node in enumerate(nodes):
                shapes.node_id(node, f"audience.nodes[{i}]")
            return cls("nodes", tuple(nodes))
        if scope == "group":
            shapes.exact_keys(obj, "audience", ("scope", "group"))
            return cls("group", group=shapes.text(obj, "group", "audience", max_len=80, pattern=shapes.GROUP_NAME))
        if scope == "federation":
            shapes.exact_keys(obj, "audience", ("scope",))
            return cls("federation")
        raise InvalidMessage("audience.scope", "must be 'nodes', 'group' or 'federation'")

    @classmethod
    def parse_spec(cls, spec: str) -> Audience:
        """Parse the officer's short form: ``nodes:ID,ID``, ``region:WCA``, ``op:NAME``, ``federation``."""
        if spec == "federation":
            return cls("federation")
        if spec.startswith("nodes:"):
            return cls("nodes", tuple(sorted(set(filter(None, spec[6:].split(","))))))
        if spec.startswith(("region:", "op:")):
            return cls("group", group=spec)
        raise InvalidMessage("audience", f"{spec!r} is not nodes:ID,ID, region:CODE, op:NAME or federation")

    def describe(self) -> str:
        """The short form that parse_spec reads."""
        if self.scope == "nodes":
            return "nodes:" + ",".join(self.nodes)
        return self.group if self.scope == "group" else "federation"


@dataclass(frozen=True)
class Recipient:
    """One reader of a bundle and its sealed copy of the content key."""

    node: str
    wrap: bytes


@dataclass(frozen=True)
class Bundle:
    """A parsed, shape-checked bundle. ``obj`` is its exact wire form."""

    origin: str
    created: int
    expires: int
    audience: Audience
    urgent: bool
    recipients: tuple[Recipient, ...]
    nonce: bytes
    ct: bytes
    sig: bytes
    id: str
    signed_bytes: bytes = field(repr=False)
    header_hash: bytes = field(repr=False)
    obj: dict[str, Any] = field(repr=False, compare=False)
    raw: bytes = field(repr=False, default=b"")
    size: int = 0

    @property
    def recipient_ids(self) -> tuple[str, ...]:
        """The node ids that can open this bundle."""
        return tuple(r.node for r in self.recipients)

    def wrap_for(self, node: str) -> bytes | None:
        """The sealed content key for ``node``, if it is a recipient."""
        for r in self.recipients:
            if r.node == node:
                return r.wrap
        return None

    def header(self) -> dict[str, Any]:
        """Cleartext header: what a relay sees (the bundle without ``ct`` and ``sig``)."""
        return {k: v for k, v in self.obj.items() if k not in ("ct", "sig")}


def header_hash(header: dict[str, Any]) -> bytes:
    """``H = sha256(domain + canonical(header))``: the AEAD's associated data."""
    return hashlib.sha256(BUNDLE_DOMAIN + canonical(header)).digest()


def unsigned_parts(unsigned: dict[str, Any]) -> tuple[str, bytes]:
    """Return (bundle id, bytes the origin signs) for a bundle without ``sig``."""
    body = canonical(unsigned)
    return b64u_encode(hashlib.sha256(body).digest()), BUNDLE_DOMAIN + body


def parse_bundle(obj: Any, *, max_bytes: int = MAX_BUNDLE_BYTES) -> Bundle:
    """Check size and shape (steps 1 and 2 of section 3.1) and build a Bundle.

    Raises InvalidBundle with reason ``too-large`` or ``shape``; never anything else.
    The shape check types and bounds every field, which is what makes the
    unchecked canonical encoding below safe (and saves a recursive walk).
    """
    try:
        raw = dumps_unchecked(obj)
    except (TypeError, ValueError) as exc:  # NaN, lone surrogates, non-JSON types
        raise InvalidBundle("shape", f"not canonical JSON: {exc}") from None
    if len(raw) > max_bytes:
        raise InvalidBundle("too-large", f"{len(raw)} bytes > {max_bytes}")
    try:
        return _parse_shape(obj, raw)
    except InvalidMessage as exc:
        raise InvalidBundle("shape", str(exc)) from None


def _parse_shape(obj: Any, raw: bytes) -> Bundle:
    shapes.exact_keys(obj, "", _BUNDLE_FIELDS)
    if type(obj["v"]) is not int or obj["v"] != 1:  # not 1.0, not True
        raise InvalidMessage("v", "must be the integer 1")
    origin = shapes.node_id(obj["origin"], "origin")
    created = shapes.integer(obj, "created")
    expires = shapes.integer(obj, "expires")
    audience = Audience.from_json(obj["audience"])
    urgent = shapes.boolean(obj, "urgent")
    raw_recipients = shapes.string_list(obj, "recipients", max_items=MAX_RECIPIENTS, min_items=1)
    recipients = []
    for i, item in enumerate(raw_recipients):
        path = f"recipients[{i}]"
        shapes.exact_keys(item, path, ("node", "wrap"))
        node = shapes.node_id(item["node"], f"{path}.node")
        recipients.append(Recipient(node, shapes.b64u_field(item, "wrap", path, size=WRAP_BYTES)))
    shapes.sorted_unique([r.node for r in recipients], "recipients")
    if origin not in {r.node for r in recipients}:
        raise InvalidMessage("recipients", "must include the origin")
    nonce = shapes.b64u_field(obj, "nonce", size=NONCE_BYTES)
    ct = shapes.b64u_field(obj, "ct", min_size=TAG_BYTES)
    sig = shapes.b64u_field(obj, "sig", size=64)
    unsigned = {k: v for k, v in obj.items() if k != "sig"}
    body = dumps_unchecked(unsigned)
    header = {k: v for k, v in unsigned.items() if k != "ct"}
    return Bundle(
        origin=origin, created=created, expires=expires, audience=audience, urgent=urgent,
        recipients=tuple(recipients), nonce=nonce, ct=ct, sig=sig,
        id=b64u_encode(hashlib.sha256(body).digest()), signed_bytes=BUNDLE_DOMAIN + body,
        header_hash=hashlib.sha256(BUNDLE_DOMAIN + dumps_unchecked(header)).digest(),
        obj=obj, raw=raw, size=len(raw),
    )


def check_times(bundle: Bundle, now_ms: int) -> None:
    """Step 5 of section 3.1: not from the future, not expired, not too long-lived."""
    if bundle.created > now_ms + CLOCK_SKEW_MS:
        raise InvalidBundle("from-future", f"created {bundle.created} > now {now_ms} + skew")
    if bundle.expires <= now_ms:
        raise InvalidBundle("expired", f"expired at {bundle.expires}, now {now_ms}")
    if bundle.expires - bundle.created > MAX_LIFETIME_MS:
        raise InvalidBundle("lifetime", "expires more than 400 days after created")
    if bundle.expires <= bundle.created:
        raise InvalidBundle("lifetime", "expires before it was created")


@dataclass(frozen=True)
class Payload:
    """The decrypted content of a bundle: one record of one kind."""

    origin: str
    audience: Audience
    kind: str
    record: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The payload object whose canonical form is encrypted."""
        return {"origin": self.origin, "audience": self.audience.to_json(), "kind": self.kind, "record": self.record}


def parse_payload(obj: Any, *, now_ms: int) -> Payload:
    """Shape-check a decrypted payload and validate its record; raises InvalidBundle('payload')."""
    try:
        shapes.exact_keys(obj, "payload", ("origin", "audience", "kind", "record"))
        origin = shapes.node_id(obj["origin"], "payload.origin")
        audience = Audience.from_json(obj["audience"])
        kind = obj["kind"]
        if kind not in KINDS:
            raise InvalidMessage("payload.kind", f"{str(kind)[:40]!r} is not a record kind")
        record = validate_record(kind, obj["record"], now_ms=now_ms)
        check_personal_data(kind, record, audience.scope)
    except (InvalidMessage, InvalidRecord) as exc:
        raise InvalidBundle("payload", str(exc)) from None
    return Payload(origin, audience, kind, record)
