"""The bundle and its payload (PROTOCOL.md section 3): structures, parsing, the bytes signed.

``parse_bundle`` is the only way a bundle from outside becomes a ``Bundle``;
it checks size and shape strictly and computes, once, the id and the bytes that
the signature and the AEAD cover (the AEAD's hash ``H`` is left to the
recipient that opens it: relays never need it). It does not check the
signature, the origin or the time: that is ``crypto.envelope`` and
``protocol.audience``.
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec
import pybase64

from protocol import shapes
from protocol.canonical import (
    MAX_SAFE_INT,
    SafeUInt,
    b64u_decode,
    b64u_encode,
    canonical,
    dumps_unchecked,
    encode_sorted,
    parse_json,
)
from protocol.errors import InvalidBundle, InvalidMessage, InvalidRecord, MalformedJSON
from protocol.records import KINDS, check_personal_data, validate_record

T = TypeVar("T")

BUNDLE_DOMAIN = b"cenmesh/bundle/v1\x00"
MAX_BUNDLE_BYTES = 262_144
MAX_RECIPIENTS = 512
MAX_LIFETIME_MS = 400 * 24 * 3600 * 1000
CLOCK_SKEW_MS = 300_000
WRAP_BYTES = 80
NONCE_BYTES = 24
TAG_BYTES = 16

# The b64u lengths of those sizes: ceil(n * 4 / 3) characters.
_WRAP_CHARS = 107
_NONCE_CHARS = 32
_SIG_CHARS = 86
_TAG_CHARS = 22

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

    @classmethod
    def _checked(cls, scope: str, nodes: tuple[str, ...], group: str) -> Audience:
        """An Audience from fields the caller has just checked as strictly as __post_init__.

        For parse paths that already validated the wire form: re-checking every
        node id costs ~1 us per node on each bundle received.
        """
        audience = object.__new__(cls)
        audience.__dict__.update(scope=scope, nodes=nodes, group=group)  # what __init__ would leave
        return audience

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


class Recipient(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """One reader of a bundle and its sealed copy of the content key, as checked b64u text.

    The wrap is decoded only when asked for: a recipient opens its own, and a
    relay none, so decoding the other 511 of a large bundle would be wasted
    (``wrap_b64`` is checked to decode to exactly 80 bytes when parsed). It is
    also the wire form's type (``{"node": ..., "wrap": ...}``), so the decode of
    a bundle's text builds the recipients directly.
    """

    # The lengths are checked while a bundle's text is decoded (in C); a Recipient
    # built from a JSON object is checked by _parse_exact before it is made.
    node: Annotated[str, msgspec.Meta(min_length=25, max_length=25)]
    wrap_b64: Annotated[str, msgspec.Meta(min_length=107, max_length=107)] = msgspec.field(name="wrap")

    @property
    def wrap(self) -> bytes:
        """The sealed content key (80 bytes)."""
        return b64u_decode(self.wrap_b64)


class _once(Generic[T]):
    """``functools.cached_property`` without the lock that Python 3.11's takes on each first use
    (about 1 us, twice on every bundle opened). The values are pure functions of the bundle, so
    two threads that race compute the same value twice, which is harmless."""

    def __init__(self, fn: Callable[[Any], T]) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __get__(self, obj: Any, owner: type | None = None) -> T:
        value = obj.__dict__[self.name] = self.fn(obj)  # the instance's own entry answers next time
        return value


class Bundle(msgspec.Struct, frozen=True, dict=True):
    """A parsed, shape-checked bundle. ``obj`` is its exact wire form.

    Only the parse functions below make one. A msgspec Struct rather than a
    dataclass: it is built by one C call from its fields in order (0.12 us,
    where a frozen dataclass took 0.6 us even without its __init__), on every
    bundle received. ``dict=True`` gives the instance the ``__dict__`` that
    ``obj``, worked out on first use (``_once``), is kept in.

    The header hash ``H``, which only a recipient needs, is hashed from
    ``header_bytes`` by ``crypto.envelope.open_bundle``: a relay, which checks
    and forwards, never pays for it. The ciphertext is decoded at parse:
    checking its base64url text costs a relay about as much as decoding it
    (one pass either way), and a recipient then has the bytes at no further
    cost.
    """

    origin: str
    created: int
    expires: int
    audience: Audience
    urgent: bool
    recipients: tuple[Recipient, ...]
    nonce: bytes
    ct: bytes  # the ciphertext and its tag, at least TAG_BYTES bytes
    sig: bytes
    id: str
    signed_bytes: bytes
    header_bytes: bytes  # domain + canonical(header), what H hashes
    raw: bytes = b""  # canonical(bundle): the bytes stored and served
    size: int = 0

    def __repr__(self) -> str:
        # The byte fields (ciphertext, signed and stored forms) are left out: long and unreadable.
        return (
            f"Bundle(id={self.id!r}, origin={self.origin!r}, created={self.created}, expires={self.expires}, "
            f"audience={self.audience!r}, urgent={self.urgent}, recipients={len(self.recipients)}, size={self.size})"
        )

    @_once
    def obj(self) -> dict[str, Any]:
        """The bundle's JSON object (decoded from ``raw`` on first use when parsed from bytes)."""
        value: dict[str, Any] = _decode_json(self.raw)
        return value

    @property
    def recipient_ids(self) -> tuple[str, ...]:
        """The node ids that can open this bundle."""
        return tuple(r.node for r in self.recipients)

    def wrap_for(self, node: str) -> bytes | None:
        """The sealed content key for ``node``, if it is a recipient."""
        for r in self.recipients:
            if r.node == node:
                # The parse checked the wrap's shape (107 b64u characters, the spare
                # bits 0), so it is decoded here without b64u_decode's checks.
                wrap: bytes = _b64decode(r.wrap_b64 + "=", b"-_", True)
                return wrap
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

    ``obj`` is the bundle's JSON object, or its JSON text as bytes (as it
    arrives: a canonical text is parsed without building the object at all).
    Raises InvalidBundle with reason ``too-large`` or ``shape``; never anything else.
    """
    if type(obj) is bytes or isinstance(obj, bytes | bytearray | memoryview):  # the first test is the cheap one
        data = obj if type(obj) is bytes else bytes(obj)
        bundle = _parse_canonical_text(data) if len(data) <= max_bytes else None
        return bundle if bundle is not None else _parse_text_reference(data, max_bytes)
    # Every bundle received passes here, so a well-formed one takes the exact
    # fast path (about 5x cheaper; see scripts/bench crypto). Anything it does
    # not accept, for whatever reason, goes to the reference parse, which
    # decides and words the error; tests/protocol/test_fastpath.py holds the
    # two to the same answers.
    bundle = _parse_exact(obj)
    if bundle is None:
        return _parse_reference(obj, max_bytes)
    if bundle.size > max_bytes:
        raise InvalidBundle("too-large", f"{bundle.size} bytes > {max_bytes}")
    return bundle


_FIELD_SET = frozenset(_BUNDLE_FIELDS)
_RECIPIENT_KEYS = frozenset(("node", "wrap"))
_NODES_KEYS = frozenset(("scope", "nodes"))
_GROUP_KEYS = frozenset(("scope", "group"))
_SCOPE_KEY = frozenset(("scope",))
_is_node_id = shapes.NODE_ID.fullmatch
_b64decode = pybase64.b64decode
_is_group = shapes.GROUP_NAME.fullmatch


def _parse_exact(obj: Any) -> Bundle | None:
    """The Bundle for a valid bundle made of exact JSON types (as json.loads gives), else None.

    It accepts only what the reference parse accepts, and writes the canonical
    bytes itself: once every string is a checked node id, group name or b64u
    text (ASCII, nothing JSON escapes) and every number an int, canonical JSON
    is plain concatenation in sorted key order, and the three byte strings the
    protocol needs (whole bundle, signed part, header) share their pieces
    instead of being encoded three times. The wraps are checked as text
    (alphabet, length, canonical last character) and decoded only when a
    recipient asks for its own; lists of node ids are checked in C passes.
    """
    if type(obj) is not dict or obj.keys() != _FIELD_SET:
        return None
    v, origin, created, expires, urgent = obj["v"], obj["origin"], obj["created"], obj["expires"], obj["urgent"]
    if not (
        type(v) is int and v == 1
        and type(origin) is str and _is_node_id(origin)
        and type(created) is int and 0 <= created <= MAX_SAFE_INT
        and type(expires) is int and 0 <= expires <= MAX_SAFE_INT
        and type(urgent) is bool
    ):
        return None
    audience = _audience_exact(obj["audience"])
    items = obj["recipients"]
    if audience is None or type(items) is not list or not 1 <= len(items) <= MAX_RECIPIENTS:
        return None
    for item in items:
        if type(item) is not dict or item.keys() != _RECIPIENT_KEYS:
            return None
    nodes = [item["node"] for item in items]
    wraps = [item["wrap"] for item in items]
    if not _all_str_of_length(nodes, 25) or not _all_str_of_length(wraps, _WRAP_CHARS):
        return None
    recipients = tuple(map(Recipient, nodes, wraps))
    if not _recipients_ok(recipients, origin):
        return None
    recipients_json = map('{{"node":"{}","wrap":"{}"}}'.format, nodes, wraps)
    nonce_text, ct_text, sig_text = obj["nonce"], obj["ct"], obj["sig"]
    try:
        nonce, ct, sig = b64u_decode(nonce_text), b64u_decode(ct_text), b64u_decode(sig_text)
    except MalformedJSON:
        return None
    if len(nonce) != NONCE_BYTES or len(sig) != 64 or len(ct) < TAG_BYTES:
        return None
    # Sorted keys: audience created ct expires nonce origin recipients sig urgent v.
    # The header leaves out ct and sig; the signed part leaves out sig.
    front = f'{{"audience":{_audience_json(audience)},"created":{created},'.encode("ascii")
    ct_json = f'"ct":"{ct_text}",'.encode("ascii")
    middle = (
        f'"expires":{expires},"nonce":"{nonce_text}","origin":"{origin}",'
        f'"recipients":[{",".join(recipients_json)}],'
    ).encode("ascii")
    back = b'"urgent":true,"v":1}' if urgent else b'"urgent":false,"v":1}'
    signed = b"".join((BUNDLE_DOMAIN, front, ct_json, middle, back))
    raw = b"".join((front, ct_json, middle, f'"sig":"{sig_text}",'.encode("ascii"), back))
    bundle = Bundle(
        origin=origin, created=created, expires=expires, audience=audience, urgent=urgent,
        recipients=recipients, nonce=nonce, ct=ct, sig=sig,
        id=b64u_encode(hashlib.sha256(memoryview(signed)[len(BUNDLE_DOMAIN):]).digest()),
        signed_bytes=signed,
        header_bytes=b"".join((BUNDLE_DOMAIN, front, middle, back)),
        raw=raw, size=len(raw),
    )
    bundle.__dict__["obj"] = obj  # the object it was parsed from is its wire form: see Bundle.obj
    return bundle


def _parse_text_reference(data: bytes, max_bytes: int) -> Bundle:
    """parse_bundle for a bundle's JSON text that the canonical fast path did not take."""
    try:
        obj = parse_json(data)
    except MalformedJSON as exc:
        raise InvalidBundle("shape", str(exc)) from None
    return parse_bundle(obj, max_bytes=max_bytes)


class _NodesAudience(msgspec.Struct, tag_field="scope", tag="nodes", forbid_unknown_fields=True):
    nodes: Annotated[tuple[str, ...], msgspec.Meta(min_length=1, max_length=MAX_RECIPIENTS)]  # as Audience holds them


class _GroupAudience(msgspec.Struct, tag_field="scope", tag="group", forbid_unknown_fields=True):
    group: Annotated[str, msgspec.Meta(max_length=80)]


class _FederationAudience(msgspec.Struct, tag_field="scope", tag="federation", forbid_unknown_fields=True):
    pass


class _WireBundle(msgspec.Struct, forbid_unknown_fields=True):
    # The lengths of the b64u texts are those of their byte sizes (24, 64, at least
    # TAG_BYTES), so what decodes from them has the right size without a check.
    audience: _NodesAudience | _GroupAudience | _FederationAudience
    created: SafeUInt
    ct: Annotated[str, msgspec.Meta(min_length=_TAG_CHARS)]
    expires: SafeUInt
    nonce: Annotated[str, msgspec.Meta(min_length=_NONCE_CHARS, max_length=_NONCE_CHARS)]
    origin: str
    recipients: Annotated[tuple[Recipient, ...], msgspec.Meta(min_length=1, max_length=MAX_RECIPIENTS)]
    sig: Annotated[str, msgspec.Meta(min_length=_SIG_CHARS, max_length=_SIG_CHARS)]
    urgent: bool
    v: Literal[1]


_decode_wire_bundle = msgspec.json.Decoder(_WireBundle).decode
_decode_json = msgspec.json.Decoder().decode
_FEDERATION = Audience._checked("federation", (), "")


def _parse_canonical_text(data: bytes) -> Bundle | None:
    """The Bundle of a valid bundle whose text is exactly its canonical JSON, else None.

    msgspec checks the structure and types in C while decoding, and the
    encoder writing the same bytes back (keys sorted) proves the text
    canonical: no whitespace, escapes or duplicate keys. So the text is also
    the bundle's stored form, and the signed and header bytes are the text
    with the ``sig`` (and ``ct``) members cut out, at offsets that the
    canonical order fixes. The ids, wraps and b64u texts are then checked as
    ``_parse_exact`` checks them. What is not accepted here goes to the parse
    of the JSON object, which decides and words the error;
    tests/protocol/test_fastpath.py holds the two equal.
    """
    try:
        w = _decode_wire_bundle(data)
        if encode_sorted(w) != data:
            return None
    except (msgspec.MsgspecError, ValueError, TypeError, RecursionError):
        return None
    origin, audience, recipients = w.origin, _audience_of_wire(w.audience), w.recipients
    # The origin needs no check of its own: it must equal one of the recipients, which are checked.
    if audience is None or not _recipients_ok(recipients, origin):
        return None
    ct_text, sig_text = w.ct, w.sig
    try:
        # 24 bytes are exactly 32 characters with no spare bits, so the nonce and the
        # signature decode as one text, and only when each would alone.
        nonce_sig = b64u_decode(w.nonce + sig_text)
        ct = b64u_decode(ct_text)
    except MalformedJSON:
        return None
    nonce, sig = nonce_sig[:NONCE_BYTES], nonce_sig[NONCE_BYTES:]
    # Canonical and ASCII (every string is a checked id, name or b64u text), so the members
    # sit in sorted order: {"audience":...,"created":N,"ct":"...",...,"sig":"...","urgent":...,"v":1}.
    ct_at = data.index(b'"ct":"')
    ct_end = ct_at + len(ct_text) + 8  # "ct":"...",
    sig_end = len(data) - (20 if w.urgent else 21)  # "urgent":true,"v":1} or false
    sig_at = sig_end - len(sig_text) - 9  # "sig":"...",
    body = data[:sig_at] + data[sig_end:]
    return Bundle(
        origin=origin, created=w.created, expires=w.expires, audience=audience, urgent=w.urgent,
        recipients=recipients, nonce=nonce, ct=ct, sig=sig,
        id=b64u_encode(hashlib.sha256(body).digest()), signed_bytes=BUNDLE_DOMAIN + body,
        header_bytes=b"".join((BUNDLE_DOMAIN, data[:ct_at], data[ct_end:sig_at], data[sig_end:])),
        raw=data, size=len(data),
    )


def _recipients_ok(recipients: tuple[Recipient, ...], origin: str) -> bool:
    """True when the node ids ascend strictly and include ``origin``, and each wrap has the shape
    of 80 bytes in b64u, without decoding it: 2 spare bits in its last character that must be 0,
    and the alphabet of all wraps checked in one pass. The caller has made sure that every node
    and wrap is a str of the right length (25 and 107 characters)."""
    if len(recipients) <= _FEW:
        # A plain loop: for a handful of recipients it beats the C passes' set-up.
        previous, seen_origin = "", False
        for r in recipients:
            node = r.node
            if (
                not previous < node or r.wrap_b64[-1] not in _WRAP_LAST
                or (node not in _NODE_IDS and not _node_id_ok(node))
            ):
                return False
            if node == origin:
                seen_origin = True
            previous = node
        wraps = [r.wrap_b64 for r in recipients]
    else:
        nodes = [r.node for r in recipients]
        wraps = [r.wrap_b64 for r in recipients]
        if not _node_ids_ascending(nodes) or not _WRAP_LAST.issuperset([w[-1] for w in wraps]):
            return False
        seen_origin = origin in nodes
    return seen_origin and _b64u_alphabet_only("".join(wraps))


def _audience_of_wire(wire: _NodesAudience | _GroupAudience | _FederationAudience) -> Audience | None:
    """The Audience of a typed wire audience whose members check out as ``Audience.from_json``'s do, else None."""
    if type(wire) is _NodesAudience:
        nodes = wire.nodes
        audience = _AUDIENCES.get(nodes)
        if audience is None and _node_ids_ascending(nodes):
            audience = _remember(nodes, Audience._checked("nodes", nodes, ""))
        return audience
    if type(wire) is _GroupAudience:
        group = wire.group
        audience = _AUDIENCES.get(group)
        if audience is None and _is_group(group):
            audience = _remember(group, Audience._checked("group", (), group))
        return audience
    return _FEDERATION


# The audiences met lately, each checked once: a federation's traffic goes to
# the same few node lists and groups over and over, and a checked Audience is
# immutable, so bundles can share one. Bounded: emptied when full.
_AUDIENCES: dict[tuple[str, ...] | str, Audience] = {}
_AUDIENCES_KEPT = 1024


def _remember(key: tuple[str, ...] | str, audience: Audience) -> Audience:
    if len(_AUDIENCES) >= _AUDIENCES_KEPT:
        _AUDIENCES.clear()
    _AUDIENCES[key] = audience
    return audience


# 107 = 4k + 3: the last character carries 2 unused bits, so it is one whose index is a multiple of 4.
_WRAP_LAST = frozenset("AEIMQUYcgkosw048")
_B64U_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


_FEW = 8  # up to this many node ids or recipients, a Python loop checks them faster than C passes
_NODE_ID_LIST = re.compile(r"n[a-z2-7]{24}(?:,n[a-z2-7]{24})*").fullmatch


def _all_str_of_length(values: Sequence[Any], length: int) -> bool:
    """True when every item is an exact str of ``length`` characters (C loops, no Python one)."""
    return set(map(type, values)) == {str} and set(map(len, values)) == {length}


def _node_ids_ascending(values: Sequence[Any]) -> bool:
    """True for a non-empty list (or tuple) of node ids in strictly ascending order (sorted, no duplicates).

    One regex pass over the ids joined by commas instead of one per id: every
    item is a str of exactly 25 characters, and the pattern's ids (which hold
    no comma) are 25 characters between commas, so each item is one of them.
    """
    if len(values) <= _FEW:
        previous = ""
        for value in values:
            if type(value) is not str or (value not in _NODE_IDS and not _node_id_ok(value)) or not previous < value:
                return False
            previous = value
        return True
    return (
        _all_str_of_length(values, 25)
        and (_NODE_IDS.issuperset(values) or _node_id_list_ok(values))
        and all(map(operator.lt, values, islice(values, 1, None)))
    )


# The node ids that matched lately. A federation's bundles name the same few
# hundred nodes over and over, and a set lookup costs a sixth of the regex
# (0.02 against 0.14 us an id). Only ids that matched are kept, so being in the
# set is as good as matching. Bounded: emptied when full.
_NODE_IDS: set[str] = set()
_NODE_IDS_KEPT = 4096


def _node_id_ok(value: str) -> bool:
    """``_is_node_id(value)`` for a str, remembering it when it matches."""
    if _is_node_id(value) is None:
        return False
    if len(_NODE_IDS) >= _NODE_IDS_KEPT:
        _NODE_IDS.clear()
    _NODE_IDS.add(value)
    return True


def _node_id_list_ok(values: Sequence[str]) -> bool:
    """Every item of a list of 25-character strs is a node id (one regex pass), remembered when so."""
    if _NODE_ID_LIST(",".join(values)) is None:
        return False
    if len(_NODE_IDS) + len(values) > _NODE_IDS_KEPT:
        _NODE_IDS.clear()
    _NODE_IDS.update(values)
    return True


def _b64u_alphabet_only(text: str) -> bool:
    """True when ``text`` holds only base64url characters (one C pass, however many wraps)."""
    try:
        return not text.encode("ascii").translate(None, _B64U_BYTES)
    except UnicodeEncodeError:
        return False




def _audience_exact(obj: Any) -> Audience | None:
    """The Audience of a valid wire audience made of exact types, else None."""
    if type(obj) is not dict:
        return None
    keys, scope = obj.keys(), obj.get("scope")
    if type(scope) is not str:
        return None
    if scope == "nodes" and keys == _NODES_KEYS:
        nodes = obj["nodes"]
        if type(nodes) is not list or not 1 <= len(nodes) <= MAX_RECIPIENTS or not _node_ids_ascending(nodes):
            return None
        return Audience._checked("nodes", tuple(nodes), "")
    if scope == "group" and keys == _GROUP_KEYS:
        group = obj["group"]
        if type(group) is not str or len(group) > 80 or not _is_group(group):
            return None
        return Audience._checked("group", (), group)
    if scope == "federation" and keys == _SCOPE_KEY:
        return Audience._checked("federation", (), "")
    return None


def _audience_json(audience: Audience) -> str:
    """Canonical JSON of a checked audience (node ids and group names need no escapes)."""
    if audience.scope == "nodes":
        nodes = '","'.join(audience.nodes)
        return f'{{"nodes":["{nodes}"],"scope":"nodes"}}'
    if audience.scope == "group":
        return f'{{"group":"{audience.group}","scope":"group"}}'
    return '{"scope":"federation"}'


def _parse_reference(obj: Any, max_bytes: int) -> Bundle:
    """The reference parse: generic canonical encoding, then the shape, field by field.

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
        shapes.b64u_field(item, "wrap", path, size=WRAP_BYTES)
        recipients.append(Recipient(node, item["wrap"]))
    shapes.sorted_unique([r.node for r in recipients], "recipients")
    if origin not in {r.node for r in recipients}:
        raise InvalidMessage("recipients", "must include the origin")
    nonce = shapes.b64u_field(obj, "nonce", size=NONCE_BYTES)
    ct = shapes.b64u_field(obj, "ct", min_size=TAG_BYTES)
    sig = shapes.b64u_field(obj, "sig", size=64)
    unsigned = {k: v for k, v in obj.items() if k != "sig"}
    body = dumps_unchecked(unsigned)
    header = {k: v for k, v in unsigned.items() if k != "ct"}
    bundle = Bundle(
        origin=origin, created=created, expires=expires, audience=audience, urgent=urgent,
        recipients=tuple(recipients), nonce=nonce, ct=ct, sig=sig,
        id=b64u_encode(hashlib.sha256(body).digest()), signed_bytes=BUNDLE_DOMAIN + body,
        header_bytes=BUNDLE_DOMAIN + dumps_unchecked(header),
        raw=raw, size=len(raw),
    )
    bundle.__dict__["obj"] = obj
    return bundle


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


class Payload(msgspec.Struct, frozen=True):
    """The decrypted content of a bundle: one record of one kind.

    A msgspec Struct, like Bundle: made by one C call on every bundle opened.
    """

    origin: str
    audience: Audience
    kind: str
    record: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The payload object whose canonical form is encrypted."""
        return {"origin": self.origin, "audience": self.audience.to_json(), "kind": self.kind, "record": self.record}


def parse_payload(obj: Any, *, now_ms: int) -> Payload:
    """Shape-check a decrypted payload and validate its record; raises InvalidBundle('payload')."""
    return payload_for(obj, None, now_ms=now_ms)


_PAYLOAD_FIELDS = ("origin", "audience", "kind", "record")
_PAYLOAD_KEYS = frozenset(_PAYLOAD_FIELDS)


def payload_for(obj: Any, header: Audience | None, *, now_ms: int) -> Payload:
    """parse_payload for a payload found in a bundle whose (checked) audience is ``header``.

    A payload audience equal to the header's wire form is the header's
    audience, so it is not parsed again; any other goes through the full parse.
    Whether the two agree is still the caller's check.
    """
    try:
        if type(obj) is not dict or obj.keys() != _PAYLOAD_KEYS:
            shapes.exact_keys(obj, "payload", _PAYLOAD_FIELDS)
        origin = shapes.node_id(obj["origin"], "payload.origin")
        wire_audience = obj["audience"]
        if header is not None and wire_audience == header.to_json():
            audience = header
        else:
            audience = _audience_exact(wire_audience) or Audience.from_json(wire_audience)
        kind = obj["kind"]
        if kind not in KINDS:
            raise InvalidMessage("payload.kind", f"{str(kind)[:40]!r} is not a record kind")
        record = validate_record(kind, obj["record"], now_ms=now_ms)
        check_personal_data(kind, record, audience.scope)
    except (InvalidMessage, InvalidRecord) as exc:
        raise InvalidBundle("payload", str(exc)) from None
    return Payload(origin, audience, kind, record)
