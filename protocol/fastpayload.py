"""The payload's fast path: a decrypted payload's bytes to a Payload, in compiled code where it can.

Every bundle a recipient opens passes here (PROTOCOL.md 3.1, recipient part,
and 3.2), and the reference path (``parse_json`` with its strict hooks, then
``payload_for`` with the record checkers of ``protocol.fields``) spends more
time in Python than libsodium spends decrypting. This path asks msgspec to
parse the JSON and to check a record's structure (members, types, enums,
country and currency codes, patterns, lengths, ranges, calendar dates)
against a typed mirror (TypedDicts) of the shape in ``protocol.records``, then checks in
Python only what msgspec cannot state (a date not in the future, a locode's
country, a positive amount, transit without repeats, check digits, the
personal-data rule).

Only seizures, the bulk of the traffic, are mirrored so far; every other
kind takes the reference path, with the same result.

It accepts a subset of what the reference accepts and returns the same
Payload; for anything else it answers None and the caller runs the
reference, which decides and words the error. tests/protocol/test_fastpath.py
holds the two to the same answers. The subset:

- the plaintext is exactly msgspec's sorted-key encoding of what it decodes
  to, so it held no duplicate key (a key given twice decodes once and
  re-encodes shorter) and no whitespace or escapes that a sender would not
  write; cenmesh's own canonical bytes are such a text;
- it has no escape other than ``\\n``, ``\\t``, ``\\"``, ``\\\\``, ``\\/`` and
  no raw DEL or C1 character, so no string in it holds a control character
  the record rules forbid;
- the kind is ``seizure``, and every member is typed in the mirror below,
  so a float, a null or an integer out of range cannot pass unseen.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal, NotRequired, TypedDict, cast

import msgspec

from protocol import fields as f
from protocol.bundle import (
    Audience,
    Payload,
    _audience_of_wire,
    _FederationAudience,
    _GroupAudience,
    _NodesAudience,
    payload_for,
)
from protocol.canonical import encode_sorted, parse_json
from protocol.errors import InvalidBundle, InvalidRecord, MalformedJSON
from protocol.records import (
    DETECTION_METHODS,
    HANDLING_CODES,
    MAX_PARTIES,
    MAX_VERSION,
    PARTY_ROLES,
    SEIZURE_CATEGORIES,
    TLP_LEVELS,
    TRANSPORT_MODES,
    UNITS,
    check_personal_data,
    latest_seizure_date,
)


def _text(max_len: int, min_len: int = 0) -> Any:
    # msgspec counts code points, as len() does. Control characters are ruled
    # out for the whole plaintext at once (see _ESCAPE).
    return Annotated[str, msgspec.Meta(min_length=min_len, max_length=max_len)]


def _pattern(regex: re.Pattern[str]) -> Any:
    # The pattern protocol.fields matches with fullmatch; msgspec runs re.search, so it is
    # anchored here, with \Z since $ also matches before a final newline.
    return Annotated[str, msgspec.Meta(pattern=f"^(?:{regex.pattern})\\Z")]


def _literal(values: Iterable[str]) -> Any:
    return Literal[tuple(sorted(values))]


# The same sets and patterns as protocol.fields; what a pattern cannot say
# (check digits, a locode's country, a positive amount) is checked after.
# msgspec calls back into Python's re for each pattern (about 0.4 us a field),
# so the fields every seizure has (the id, the office's locode, the amounts, the
# HS code) are typed plain str here and matched after the decode by one regex:
# see _KEY_FIELDS.
_COUNTRY = _literal(f._COUNTRIES)
_CURRENCY = _literal(f._CURRENCIES)


class _Strict(msgspec.Struct, forbid_unknown_fields=True):
    pass


_WireAudience = _NodesAudience | _GroupAudience | _FederationAudience  # as the bundle's header is read


# The record's parts are TypedDicts, not Structs: msgspec checks them as strictly
# while decoding but builds plain dicts, which are what the reference returns, so
# no conversion pass is needed after (msgspec.to_builtins cost 0.8 us a seizure).
# A TypedDict ignores a member it does not know instead of refusing it; the
# re-encoding would then come out shorter than the text, so it cannot pass.


class _Office(TypedDict):
    name: _text(200, 1)  # type: ignore[valid-type]
    locode: str  # _KEY_FIELDS


class _Commodity(TypedDict):
    description: _text(500, 1)  # type: ignore[valid-type]
    hs_code: NotRequired[str]  # _KEY_FIELDS
    brand: NotRequired[_text(200, 1)]  # type: ignore[valid-type]
    rights_holder: NotRequired[_text(200, 1)]  # type: ignore[valid-type]


class _Quantity(TypedDict):
    amount: str  # _KEY_FIELDS
    unit: _literal(UNITS)  # type: ignore[valid-type]


class _Value(TypedDict):
    amount: str  # _KEY_FIELDS
    currency: _CURRENCY  # type: ignore[valid-type]


class _Route(TypedDict):
    departure: _COUNTRY  # type: ignore[valid-type]
    destination: _COUNTRY  # type: ignore[valid-type]
    transit: Annotated[list[_COUNTRY], msgspec.Meta(max_length=50)]  # type: ignore[valid-type]
    origin: NotRequired[_COUNTRY]  # type: ignore[valid-type]


class _TransportRefs(TypedDict, total=False):
    container: str  # f.container (check digit)
    awb: str  # f.awb (check digit)
    bill_of_lading: _pattern(f._BILL_OF_LADING)  # type: ignore[valid-type]
    vessel_imo: str  # f.vessel_imo (check digit)
    flight: _pattern(f._FLIGHT)  # type: ignore[valid-type]


class _Party(TypedDict):
    role: _literal(PARTY_ROLES)  # type: ignore[valid-type]
    name: _text(200, 1)  # type: ignore[valid-type]
    country: NotRequired[_COUNTRY]  # type: ignore[valid-type]
    identifier: NotRequired[_text(100, 1)]  # type: ignore[valid-type]


class _Seizure(TypedDict):
    id: str  # _KEY_FIELDS
    version: Annotated[int, msgspec.Meta(ge=1, le=MAX_VERSION)]
    category: _literal(SEIZURE_CATEGORIES)  # type: ignore[valid-type]
    date: datetime.date  # msgspec reads exactly YYYY-MM-DD, a real calendar date (back to text after)
    office: _Office
    transport_mode: _literal(TRANSPORT_MODES)  # type: ignore[valid-type]
    detection_method: _literal(DETECTION_METHODS)  # type: ignore[valid-type]
    concealment: _text(500)  # type: ignore[valid-type]
    commodity: _Commodity
    quantity: _Quantity
    route: _Route
    tlp: _literal(TLP_LEVELS)  # type: ignore[valid-type]
    value: NotRequired[_Value]
    conveyance: NotRequired[_TransportRefs]
    parties: NotRequired[Annotated[list[_Party], msgspec.Meta(max_length=MAX_PARTIES)]]
    narrative: NotRequired[_text(5000)]  # type: ignore[valid-type]
    handling: NotRequired[_literal(HANDLING_CODES)]  # type: ignore[valid-type]


class _SeizurePayload(_Strict):
    audience: _WireAudience
    kind: Literal["seizure"]
    origin: str
    record: _Seizure


_decode_seizure = msgspec.json.Decoder(_SeizurePayload).decode

# An escape other than \n \t \" \\ \/ (so \b \f \r \uXXXX), DEL, or a C1
# control (U+0080..U+009F, C2 80..C2 9F in UTF-8): where a forbidden control
# character would show in the text. Seeing one only sends the payload to the
# reference, which judges it; an escaped backslash before a "u" also does.
# The regexes run only when memchr finds their first byte (a regex scan of a
# whole payload costs ~3 us).
_ESCAPE = re.compile(rb"\\[bfru]").search
_C1 = re.compile(rb"\xc2[\x80-\x9f]").search
# Looked for as byte values: ``bytes in bytes`` first tries its operand as an
# int, and in Python 3.11 the TypeError it raises and clears on the way costs
# 0.1 us a test (0.14 against 0.025 us for ``int in bytes``, each a memchr).
_BACKSLASH, _DEL, _C1_LEAD = 0x5C, 0x7F, 0xC2


# "id locode quantity.amount hs_code value.amount", each matched whole by its own
# pattern from protocol.fields. None of those patterns matches a space, so a
# value that holds one adds a part and the whole match fails: no value can lend
# characters to its neighbour. An absent optional member stands in as a valid
# placeholder ("000000", "0"). The quantity must also hold a non-zero digit
# (the lookahead cannot pass the space after it).
_KEY_FIELDS = re.compile(
    f"(?:{f._UUID.pattern}) (?:{f._LOCODE.pattern}) (?=[0-9.]*[1-9])(?:{f._DECIMAL.pattern}) "
    f"(?:{f._HS_CODE.pattern}) (?:{f._DECIMAL.pattern})"
).fullmatch
_COUNTRIES = f._COUNTRIES


def payload_fast(plaintext: bytes, header: Audience, origin: str, *, now_ms: int) -> Payload | None:
    """The Payload of a valid ``plaintext`` inside the subset described above, else None.

    ``header`` and ``origin`` are the bundle's checked audience and origin. A
    payload that names another origin is left to the reference (which checks
    it as a node id): the caller refuses it anyway, so the fast path does not
    check it again. Like ``payload_for``, it does not compare the payload's
    audience with the header's; the caller does.
    """
    if (_BACKSLASH in plaintext and _ESCAPE(plaintext)) or _DEL in plaintext or (_C1_LEAD in plaintext and _C1(plaintext)):
        return None  # it may hold a control character: see _ESCAPE
    try:
        # One typed decode checks the whole structure; writing it back gives the
        # same bytes only if the text is canonical (no repeated key, spaces or escapes).
        wire = _decode_seizure(plaintext)
        if encode_sorted(wire) != plaintext:
            return None
    except (msgspec.MsgspecError, ValueError, TypeError, RecursionError):
        return None
    seizure = wire.record
    audience = _header_if_same(wire.audience, header)
    if audience is None or wire.origin != origin or not _seizure_extras_ok(seizure, now_ms):
        return None
    # The reference returns the record as JSON decodes it, the date as its text
    # (the re-encoding above proved the text is the date's isoformat).
    record = cast("dict[str, Any]", seizure)
    record["date"] = seizure["date"].isoformat()
    try:
        check_personal_data("seizure", record, audience.scope)
    except InvalidRecord:  # the reference words it
        return None
    return Payload(origin, audience, "seizure", record)


def _header_if_same(wire: Any, header: Audience) -> Audience | None:
    """The header's audience when the payload names the same one (the common case, and not checked
    again), else the payload's own, checked (the caller refuses a payload whose audience differs)."""
    if type(wire) is _NodesAudience:
        same = header.scope == "nodes" and wire.nodes == header.nodes
    elif type(wire) is _GroupAudience:
        same = header.scope == "group" and wire.group == header.group
    else:
        same = header.scope == "federation"
    return header if same else _audience_of_wire(wire)


def _seizure_extras_ok(s: _Seizure, now_ms: int) -> bool:
    """The seizure rules msgspec's types cannot state (check digits by the reference checkers)."""
    locode, amount = s["office"]["locode"], s["quantity"]["amount"]
    value = s.get("value")
    keys = (
        f"{s['id']} {locode} {amount} {s['commodity'].get('hs_code', '000000')} "
        f"{'0' if value is None else value['amount']}"
    )
    if not _KEY_FIELDS(keys) or s["date"] > latest_seizure_date(now_ms) or locode[:2] not in _COUNTRIES:
        return False
    transit = s["route"]["transit"]
    if len(transit) > 1 and len(set(transit)) != len(transit):
        return False
    conveyance = s.get("conveyance")
    if conveyance is not None:
        if not conveyance:
            return False  # the reference wants at least one member
        container = conveyance.get("container")
        if container is not None and not f.container_ok(container):
            return False
        try:
            if "awb" in conveyance:
                f.awb(conveyance["awb"])
            if "vessel_imo" in conveyance:
                f.vessel_imo(conveyance["vessel_imo"])
        except f.Rejected:
            return False
    return True


def payload_from_plaintext(plaintext: bytes, header: Audience, origin: str, *, now_ms: int) -> Payload:
    """``payload_for(parse_json(plaintext), header)``, with parse errors as InvalidBundle('payload').

    ``header`` and ``origin`` are those of the bundle the plaintext came from.

    The fast path answers for the payloads cenmesh itself seals; the reference
    decides everything else and words every error.
    """
    payload = payload_fast(plaintext, header, origin, now_ms=now_ms)
    if payload is not None:
        return payload
    try:
        return payload_for(parse_json(plaintext), header, now_ms=now_ms)
    except MalformedJSON as exc:
        raise InvalidBundle("payload", str(exc)) from None
