"""The receiving path's fast paths give exactly the answers of the reference code.

The fast paths (scripts/bench crypto measures why they exist) each accept a
subset of inputs and hand everything else to a reference implementation that
decides and words the error. These tests hold them to the same results: equal
values and bytes, or the same error with the same message.

The oracles for canonical(), parse_json() and b64u_decode() are the code as it
was first written, copied here, so that the library's own reference paths are
not their only check.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import re
import string
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import bundle as pb
from protocol.bundle import Audience, parse_bundle, parse_payload, payload_for
from protocol.canonical import (
    MAX_SAFE_INT,
    b64u_decode,
    b64u_encode,
    canonical,
    check_json_value,
    parse_json,
)
from protocol.errors import InvalidBundle, MalformedJSON
from tests.protocol.test_records import NOW, VALID

# --- Oracles: the first versions of canonical(), parse_json(), b64u_decode() ---------


def _oracle_check(value: Any, path: str = "$") -> None:
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str):
            _oracle_text(value, path)
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise MalformedJSON(f"{path}: integer outside +-(2^53 - 1)")
        return
    if isinstance(value, float):
        raise MalformedJSON(f"{path}: floating-point numbers are not allowed")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _oracle_check(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise MalformedJSON(f"{path}: object key {key!r} is not a string")
            _oracle_text(key, path)
            _oracle_check(item, f"{path}.{key}")
        return
    raise MalformedJSON(f"{path}: {type(value).__name__} is not a JSON value")


def _oracle_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedJSON(f"{path}: string holds a lone surrogate") from None


def oracle_canonical(value: Any) -> bytes:
    _oracle_check(value)
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _no_float(text: str) -> Any:
    raise MalformedJSON(f"floating-point number {text} is not allowed")


def _no_constant(text: str) -> Any:
    raise MalformedJSON(f"{text} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise MalformedJSON(f"duplicate object key {key!r}")
        obj[key] = value
    return obj


def oracle_parse_json(data: bytes | str) -> Any:
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        value = json.loads(
            text, parse_float=_no_float, parse_constant=_no_constant, object_pairs_hook=_no_duplicates
        )
    except MalformedJSON:
        raise
    except (ValueError, RecursionError) as exc:
        raise MalformedJSON(f"not valid JSON: {exc}") from None
    _oracle_check(value)
    return value


_B64U_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")
_B64U_INDEX = {c: i for i, c in enumerate(string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_")}


def oracle_b64u_decode(text: str) -> bytes:
    if not isinstance(text, str):
        raise MalformedJSON("b64u value is not a string")
    if not _B64U_ALPHABET.fullmatch(text):
        raise MalformedJSON("b64u value has characters outside the base64url alphabet")
    rem = len(text) % 4
    if rem == 1:
        raise MalformedJSON("b64u value has an impossible length")
    if rem:
        if _B64U_INDEX[text[-1]] & (0x0F if rem == 2 else 0x03):
            raise MalformedJSON("b64u value has non-canonical trailing bits")
        text += "=" * (4 - rem)
    return binascii.a2b_base64(text.translate(str.maketrans("-_", "+/")))


def outcome(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """A comparable result: ("ok", value, its exact types) or (error type, message)."""
    try:
        value = fn(*args, **kwargs)
    except (MalformedJSON, InvalidBundle) as exc:
        return (type(exc).__name__, str(exc), getattr(exc, "reason", None), getattr(exc, "detail", None))
    except (RecursionError, ValueError, TypeError) as exc:
        return (type(exc).__name__,)
    return ("ok", value, _types(value))


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value).__name__


# --- canonical() and check_json_value() ----------------------------------------------

# Text with what JSON escapes or might: controls, DEL, C1, U+2028/9, astral
# characters, quotes, backslashes, and lone surrogates.
TEXT = st.text(
    alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF)
    | st.sampled_from(["\x00", "\x1f", "\x7f", "\x85", "\u2028", "\u2029", '"', "\\", "\ud800", "\udfff", "😀", "é"]),
    max_size=12,
)
NUMBERS = st.integers(-(2**60), 2**60) | st.sampled_from([MAX_SAFE_INT, -MAX_SAFE_INT, MAX_SAFE_INT + 1, -MAX_SAFE_INT - 1])
ANY_JSON = st.recursive(
    st.none() | st.booleans() | NUMBERS | TEXT | st.floats(allow_nan=True) | st.sampled_from([1.0, 0.0, -0.0]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=25,
)


class StrSub(str):
    pass


class IntSub(int):
    pass


@settings(max_examples=600, deadline=None)
@given(ANY_JSON)
def test_canonical_is_the_reference_encoding(value: Any) -> None:
    assert outcome(canonical, value) == outcome(oracle_canonical, value)
    assert outcome(check_json_value, value) == outcome(_oracle_check, value)


@settings(max_examples=150, deadline=None)
@given(st.lists(ANY_JSON, max_size=3))
def test_canonical_with_subclasses_and_foreign_keys(items: list[Any]) -> None:
    for value in (
        [StrSub("x"), *items],
        {"a": IntSub(5), "b": items},
        {StrSub("k"): items},
        {1: items},
        [*items, (1, 2)],
        [*items, IntSub(2**60)],
    ):
        assert outcome(canonical, value) == outcome(oracle_canonical, value)


def test_canonical_of_a_deep_or_circular_value_fails_as_before() -> None:
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    assert outcome(canonical, deep) == outcome(oracle_canonical, deep)
    loop: list[Any] = []
    loop.append(loop)
    assert outcome(canonical, loop) == outcome(oracle_canonical, loop)


# --- parse_json() ---------------------------------------------------------------------

_SAFE_JSON = st.recursive(
    st.none() | st.booleans() | NUMBERS | TEXT | st.floats(allow_nan=True),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=20,
)


@st.composite
def json_texts(draw: st.DrawFn) -> str:
    """JSON text as others may write it: any escapes, spacing, duplicates, junk."""
    value = draw(_SAFE_JSON)
    text = json.dumps(value, ensure_ascii=draw(st.booleans()), allow_nan=True)
    choice = draw(st.integers(0, 6))
    if choice == 1 and text.startswith("{") and len(text) > 2:
        text = '{"dup":1,"dup":2,' + text[1:]
    elif choice == 2:
        text = "\ufeff" + text
    elif choice == 3:
        text = f"[{text}, 1e3, {'9' * draw(st.integers(1, 5000))}]"
    elif choice == 4:
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.sampled_from(["\\ud800", "\\uDBFF\\uDC00", "\\\\u", '"', "\\u0000", "NaN", ",", " "])) + text[cut:]
    elif choice == 5:
        text = f'  {text}\n\t '
    return text


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_texts(), st.booleans())
def test_parse_json_is_the_reference_parse(text: str, as_bytes: bool) -> None:
    if as_bytes:
        try:
            data: bytes | str = text.encode("utf-8")
        except UnicodeEncodeError:
            data = text.encode("utf-8", "surrogatepass")  # invalid UTF-8: both must refuse it
    else:
        data = text
    assert outcome(parse_json, data) == outcome(oracle_parse_json, data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_parse_json_of_any_bytes(data: bytes) -> None:
    assert outcome(parse_json, data) == outcome(oracle_parse_json, data)


# --- b64u_decode() --------------------------------------------------------------------

B64U_TEXT = st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=40) | st.text(
    alphabet=string.ascii_letters + string.digits + "-_+/= \n\té\x00\"\\", max_size=12
)


@settings(max_examples=1500, deadline=None)
@given(B64U_TEXT)
def test_b64u_decode_is_the_reference_decode(text: str) -> None:
    assert outcome(b64u_decode, text) == outcome(oracle_b64u_decode, text)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=100))
def test_b64u_decode_round_trips_and_refuses_padding(raw: bytes) -> None:
    text = b64u_encode(raw)
    assert b64u_decode(text) == raw
    padded = base64.urlsafe_b64encode(raw).decode()
    if padded != text:
        assert outcome(b64u_decode, padded) == outcome(oracle_b64u_decode, padded)


# --- parse_bundle(): fast path against the reference parse ----------------------------

NODE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567", min_size=24, max_size=24).map(lambda s: "n" + s)


def _b64u(size: int | st.SearchStrategy[int]) -> st.SearchStrategy[str]:
    sizes = st.just(size) if isinstance(size, int) else size
    return sizes.flatmap(lambda n: st.binary(min_size=n, max_size=n)).map(b64u_encode)


@st.composite
def bundles(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed bundle (signature and ciphertext are random: parsing does not check them)."""
    nodes = sorted(set(draw(st.lists(NODE, min_size=1, max_size=6))))
    origin = draw(st.sampled_from(nodes))
    scope = draw(st.sampled_from(["nodes", "group", "federation"]))
    if scope == "nodes":
        audience: dict[str, Any] = {"scope": "nodes", "nodes": sorted(set(draw(st.lists(NODE, min_size=1, max_size=4))))}
    elif scope == "group":
        group = draw(st.from_regex(r"region:[A-Z]{2,5}|op:[A-Z0-9][A-Z0-9._-]{0,62}", fullmatch=True))
        audience = {"scope": "group", "group": group}
    else:
        audience = {"scope": "federation"}
    created = draw(st.integers(0, MAX_SAFE_INT))
    obj = {
        "v": 1,
        "origin": origin,
        "created": created,
        "expires": draw(st.integers(0, MAX_SAFE_INT)),
        "audience": audience,
        "urgent": draw(st.booleans()),
        "recipients": [{"node": n, "wrap": draw(_b64u(pb.WRAP_BYTES))} for n in nodes],
        "nonce": draw(_b64u(pb.NONCE_BYTES)),
        "ct": draw(_b64u(st.integers(16, 300))),
        "sig": draw(_b64u(64)),
    }
    return dict(draw(st.permutations(list(obj.items()))))  # key order must not matter


ODD_VALUES = st.sampled_from(
    [True, False, 1.0, 0, -1, 2**53, MAX_SAFE_INT, IntSub(1), StrSub("x"), "", "A" * 107, None, [], {}, "é"]
) | ANY_JSON


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    items = list(value.items()) if isinstance(value, dict) else list(enumerate(value)) if isinstance(value, list) else []
    for key, item in items:
        out.append((*prefix, key))
        out.extend(_paths(item, (*prefix, key)))
    return out


def bundle_outcome(obj: Any, max_bytes: int) -> tuple[Any, ...]:
    """parse_bundle's answer for ``obj``; every object tested here is also tested as JSON text."""
    _assert_text_path_as_reference(obj, max_bytes)
    return _outcome_of(parse_bundle, obj, max_bytes)


def reference_outcome(obj: Any, max_bytes: int) -> tuple[Any, ...]:
    return _outcome_of(pb._parse_reference, obj, max_bytes)


def _outcome_of(parse: Any, obj: Any, max_bytes: int) -> tuple[Any, ...]:
    try:
        bundle = parse(obj, max_bytes=max_bytes) if parse is parse_bundle else parse(obj, max_bytes)
    except InvalidBundle as exc:
        return ("InvalidBundle", exc.reason, exc.detail)
    return ("ok", everything_of(bundle))


def everything_of(bundle: pb.Bundle) -> dict[str, Any]:
    """Every field of a Bundle, and its wire object (decoded on first use when parsed from a text).

    Not ``vars(bundle)``: a Bundle is a msgspec Struct, whose fields are not in its ``__dict__``.
    """
    return {**msgspec.structs.asdict(bundle), "obj": bundle.obj}


def _texts_of(obj: Any) -> list[bytes]:
    """JSON texts of ``obj``: its compact sorted form (canonical when obj is valid), and that text
    with a space, a reordered pair of members, an escaped letter and a repeated member."""
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError, UnicodeEncodeError):
        return []
    texts = [text, text.replace(b":", b": ", 1), text.replace(b'"v":1', b'"v":1,"v":1')]
    if isinstance(obj, dict) and len(obj) > 1:
        items = sorted(obj.items(), key=lambda kv: str(kv[0]), reverse=True)
        texts.append(json.dumps(dict(items), separators=(",", ":"), ensure_ascii=False).encode())
    if b'"n' in text:
        texts.append(text.replace(b'"n', b'"\\u006e', 1))
    return texts


def _assert_text_path_as_reference(obj: Any, max_bytes: int) -> None:
    for text in _texts_of(obj):
        try:
            expected = reference_outcome(parse_json(text), max_bytes)
        except MalformedJSON as exc:
            expected = ("InvalidBundle", "shape", str(exc))
        assert _outcome_of(parse_bundle, text, max_bytes) == expected, text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bundles(), st.sampled_from([pb.MAX_BUNDLE_BYTES, 900]))
def test_valid_bundles_parse_as_the_reference_does(obj: dict[str, Any], max_bytes: int) -> None:
    ours = bundle_outcome(obj, max_bytes)
    assert ours == reference_outcome(obj, max_bytes)
    if ours[0] == "ok":
        bundle = parse_bundle(obj, max_bytes=max_bytes)
        assert bundle.raw == canonical(obj) and bundle.size == len(bundle.raw)
        assert bundle.obj is obj
        # Its canonical text takes the text fast path, with the same Bundle.
        fast = pb._parse_canonical_text(bundle.raw)
        assert fast is not None and fast.raw is not None
        assert everything_of(fast) == everything_of(bundle)
        assert type(bundle.audience) is Audience
        assert bundle.audience == Audience.from_json(obj["audience"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bundles(), st.data())
def test_damaged_bundles_fail_as_the_reference_does(obj: dict[str, Any], data: st.DataObject) -> None:
    obj = copy.deepcopy(obj)
    for _ in range(data.draw(st.integers(1, 2))):
        path = data.draw(st.sampled_from(_paths(obj)))
        parent = obj
        for step in path[:-1]:
            parent = parent[step]
        action = data.draw(st.integers(0, 3))
        if action == 0 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == 1 and isinstance(parent, dict):
            parent[data.draw(st.sampled_from(["x", "sig", "scope", "nodes", "group", 1]))] = data.draw(ODD_VALUES)
        elif action == 2 and isinstance(parent[path[-1]], list) and parent[path[-1]]:
            parent[path[-1]].reverse() if len(parent[path[-1]]) > 1 else parent[path[-1]].append(parent[path[-1]][0])
        else:
            parent[path[-1]] = data.draw(ODD_VALUES)
    assert bundle_outcome(obj, pb.MAX_BUNDLE_BYTES) == reference_outcome(obj, pb.MAX_BUNDLE_BYTES)


@settings(max_examples=300, deadline=None)
@given(ANY_JSON)
def test_random_values_fail_as_the_reference_does(value: Any) -> None:
    assert bundle_outcome(value, pb.MAX_BUNDLE_BYTES) == reference_outcome(value, pb.MAX_BUNDLE_BYTES)


def test_the_vector_bundle_takes_the_fast_path(bundle_vectors: dict[str, Any]) -> None:
    obj = bundle_vectors["valid"]["bundle"]
    fast = pb._parse_exact(obj)
    assert fast is not None
    assert everything_of(fast) == everything_of(pb._parse_reference(obj, pb.MAX_BUNDLE_BYTES))
    for case in bundle_vectors["reject"]:
        assert bundle_outcome(case["bundle"], pb.MAX_BUNDLE_BYTES) == reference_outcome(
            case["bundle"], pb.MAX_BUNDLE_BYTES
        )


# --- Payloads: the header's audience is reused only when it is the same ---------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bundles(), st.data())
def test_payload_for_a_header_is_parse_payload(obj: dict[str, Any], data: st.DataObject) -> None:
    header = Audience.from_json(obj["audience"])
    payload: dict[str, Any] = {
        "origin": obj["origin"],
        "audience": copy.deepcopy(obj["audience"]),
        "kind": "seizure",
        "record": copy.deepcopy(VALID["seizure"]),
    }
    if data.draw(st.booleans()):
        path = data.draw(st.sampled_from(_paths(payload["audience"])))
        parent = payload["audience"]
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = data.draw(ODD_VALUES | NODE | st.sampled_from(["nodes", "group", "federation"]))

    def run(fn: Any, *args: Any) -> tuple[Any, ...]:
        try:
            result = fn(payload, *args, now_ms=NOW)
        except InvalidBundle as exc:
            return ("InvalidBundle", exc.reason, exc.detail)
        return ("ok", result)

    assert run(payload_for, header) == run(parse_payload)


# Targeted damage: each must be refused (or accepted) exactly as the reference does.
def _sample_bundle(recipients: int = 3, scope: str = "nodes") -> dict[str, Any]:
    nodes = [f"n{c * 24}" for c in "abcdefghijk"[:recipients]]
    audience: dict[str, Any] = {
        "nodes": {"scope": "nodes", "nodes": nodes[1:] or nodes[:1]},
        "group": {"scope": "group", "group": "op:ALPHA"},
        "federation": {"scope": "federation"},
    }[scope]
    return {
        "v": 1, "origin": nodes[0], "created": 1_700_000_000_000, "expires": 1_700_000_100_000,
        "audience": audience, "urgent": False,
        "recipients": [{"node": n, "wrap": b64u_encode(bytes([i]) * 80)} for i, n in enumerate(nodes)],
        "nonce": b64u_encode(b"\1" * 24), "ct": b64u_encode(b"\2" * 40), "sig": b64u_encode(b"\3" * 64),
    }


def _odd_versions(value: Any) -> list[Any]:
    odd: list[Any] = [True, False, 1.0, 0, -1, 2**53, -(2**53), MAX_SAFE_INT, IntSub(1), None, "", [], {}, "é"]
    if isinstance(value, str):
        odd += [StrSub(value), value + "=", value[:-1], value + "A", value.upper(), value.replace("A", "+"), " " + value]
    if isinstance(value, list):
        odd += [value[::-1], value + value[:1], [], value * 200]
    if isinstance(value, int) and not isinstance(value, bool):
        odd += [IntSub(value), float(value), str(value)]
    return odd


def _damaged(obj: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for path in _paths(obj):
        parent: Any = obj
        for step in path[:-1]:
            parent = parent[step]
        for odd in _odd_versions(parent[path[-1]]):
            damaged = copy.deepcopy(obj)
            target: Any = damaged
            for step in path[:-1]:
                target = target[step]
            target[path[-1]] = odd
            out.append(damaged)
        if isinstance(parent, dict):
            damaged = copy.deepcopy(obj)
            target = damaged
            for step in path[:-1]:
                target = target[step]
            del target[path[-1]]
            out.append(damaged)
            target["extra"] = 1
            out.append(copy.deepcopy(damaged))
    not_recipient = copy.deepcopy(obj)
    not_recipient["origin"] = "n" + "z" * 24
    out.append(not_recipient)
    return out


def test_targeted_damage_fails_as_the_reference_does() -> None:
    for sample in (_sample_bundle(1, "federation"), _sample_bundle(3, "nodes"), _sample_bundle(2, "group")):
        assert bundle_outcome(sample, pb.MAX_BUNDLE_BYTES)[0] == "ok" and pb._parse_exact(sample) is not None
        for damaged in _damaged(sample):
            assert bundle_outcome(damaged, pb.MAX_BUNDLE_BYTES) == reference_outcome(
                damaged, pb.MAX_BUNDLE_BYTES
            ), damaged


# --- validate_record(): the fast pass reports what the ordered pass would -------------


def _objects(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of the objects (dicts) inside ``value``, itself included."""
    out = [prefix] if isinstance(value, dict) else []
    items = list(value.items()) if isinstance(value, dict) else list(enumerate(value)) if isinstance(value, list) else []
    for key, item in items:
        out.extend(_objects(item, (*prefix, key)))
    return out


def _field(path: tuple[Any, ...]) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out


def _reordered(valid: dict[str, Any], where: tuple[Any, ...], bad: tuple[str, str], reverse: bool) -> dict[str, Any]:
    record = copy.deepcopy(valid)
    target: Any = record
    for step in where:
        target = target[step]
    items = list(target.items())
    target.clear()
    target.update(items[::-1] if reverse else items)
    for name in bad:
        target[name] = None  # wrong for every member
    return record


def test_two_bad_members_report_the_same_error_in_any_order() -> None:
    """Members are checked in the object's own order for speed; the error reported
    must still be the reference's, which follows the order of the shape."""
    from protocol.errors import InvalidRecord
    from protocol.records import _SHAPES, validate_record

    def error(kind: str, record: dict[str, Any]) -> tuple[str, str]:
        try:
            validate_record(kind, record, now_ms=NOW)
        except InvalidRecord as exc:
            return exc.field, exc.why
        raise AssertionError("accepted")

    for kind, valid in VALID.items():
        for where in _objects(valid):
            parent: Any = valid
            for step in where:
                parent = parent[step]
            names = list(parent)
            for i, first in enumerate(names):
                for second in names[i + 1 :]:
                    forward = error(kind, _reordered(valid, where, (first, second), reverse=False))
                    backward = error(kind, _reordered(valid, where, (first, second), reverse=True))
                    assert forward == backward, (kind, where, first, second)
                    if not where:  # at the top, the shape's own order decides
                        order = list(_SHAPES[kind])
                        expected = min(first, second, key=order.index)
                        assert forward[0] == expected, (kind, first, second, forward)


# --- Payload bytes: msgspec's fast path against parse_json + payload_for ----------------

from protocol.fastpayload import payload_fast, payload_from_plaintext  # noqa: E402
from tests.protocol.test_records import DROP, SEIZURE, SEIZURE_BAD  # noqa: E402

AUDIENCE = {"scope": "nodes", "nodes": ["n" + "b" * 24, "n" + "c" * 24]}
HEADER = Audience.from_json(AUDIENCE)
ORIGIN = "n" + "a" * 24


def reference_payload(plaintext: bytes, header: Audience) -> tuple[Any, ...]:
    try:
        return ("ok", payload_for(oracle_parse_json(plaintext), header, now_ms=NOW))
    except MalformedJSON as exc:
        return ("InvalidBundle", "payload", str(exc))
    except InvalidBundle as exc:
        return ("InvalidBundle", exc.reason, exc.detail)


def fast_payload(plaintext: bytes, header: Audience) -> tuple[Any, ...]:
    try:
        return ("ok", payload_from_plaintext(plaintext, header, ORIGIN, now_ms=NOW))
    except InvalidBundle as exc:
        return ("InvalidBundle", exc.reason, exc.detail)


def assert_payload_as_reference(plaintext: bytes, header: Audience = HEADER) -> tuple[Any, ...]:
    expected = reference_payload(plaintext, header)
    assert fast_payload(plaintext, header) == expected, plaintext
    fast = payload_fast(plaintext, header, ORIGIN, now_ms=NOW)
    if fast is not None:  # the fast path never accepts what the reference refuses
        assert expected == ("ok", fast), plaintext
        assert _types(fast.record) == _types(expected[1].record)
    return expected


def _payload_bytes(record: Any, *, kind: Any = "seizure", audience: Any = AUDIENCE, origin: Any = ORIGIN) -> bytes:
    value = {"origin": origin, "audience": audience, "kind": kind, "record": record}
    try:
        return canonical(value)
    except MalformedJSON:  # floats, lone surrogates: write them anyway, as a forger could
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")


def _at(record: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(record)
    parent: Any = out
    for step in path[:-1]:
        parent = parent[step]
    if value is _DROP:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out


_DROP = object()
_BENCH_RECORD = {
    "id": "0b9f6f2e-4c1a-4f7e-9d35-2a0c7f1e9b11", "version": 1, "category": "medicines",
    "date": "2020-03-24", "office": {"name": "Lagos Apapa Port", "locode": "NGAPP"},
    "transport_mode": "sea", "detection_method": "risk-profiling",
    "concealment": "declared as textiles, masks inside cartons of T-shirts",
    "commodity": {"description": "surgical face masks, counterfeit CE marking", "hs_code": "630790", "brand": "3M"},
    "quantity": {"amount": "120000", "unit": "pieces"},
    "route": {"departure": "CN", "destination": "NG", "transit": ["TG"]},
    "conveyance": {"container": "CSQU3054383"}, "tlp": "AMBER",
}


def test_valid_seizures_take_the_payload_fast_path() -> None:
    for record in (SEIZURE, _BENCH_RECORD, _at(_BENCH_RECORD, ("concealment",), "é\n\t\"\\/ 😀 \u2028 ©")):
        plaintext = _payload_bytes(record)
        assert payload_fast(plaintext, HEADER, ORIGIN, now_ms=NOW) is not None
        assert assert_payload_as_reference(plaintext)[0] == "ok"
    # Another audience than the header's is parsed, not borrowed (the caller compares them).
    other = _payload_bytes(SEIZURE, audience={"scope": "group", "group": "op:ALPHA"})
    fast = payload_fast(other, HEADER, ORIGIN, now_ms=NOW)
    assert fast is not None and fast.audience == Audience("group", group="op:ALPHA")
    assert_payload_as_reference(other)


def test_bad_seizures_fail_as_the_reference_does() -> None:
    for path, value, field, _ in SEIZURE_BAD:  # same error as the reference, whatever it says
        if isinstance(value, int) and abs(value) > 10**100:
            value = 10**100  # json cannot write a 5000-digit integer; this one is as out of range
        result = assert_payload_as_reference(_payload_bytes(_at(SEIZURE, path, _DROP if value is DROP else value)))
        assert result[0] == "InvalidBundle", field


def test_targeted_payload_damage_fails_as_the_reference_does() -> None:
    for record in (SEIZURE, _BENCH_RECORD):
        payload = {"origin": ORIGIN, "audience": AUDIENCE, "kind": "seizure", "record": record}
        for damaged in _damaged(payload):
            assert_payload_as_reference(_payload_bytes(**damaged) if set(damaged) == {"origin", "audience", "kind", "record"} else canonical(damaged))
        for path in _paths(record):
            for odd in ("", "x" * 501, "a\x00b", "a\x7fb", "a\x85b", "a\rb", "1e3", "0", "-1", "2023-11-15", "2023-11-16",
                        "2023-02-30", "CSQU3054384", "02012345676", "IMO9074728", "XX", "NGA", "EUR", "1.5", 1.0, 2**31 + 1, 10**30, 0):
                assert_payload_as_reference(_payload_bytes(_at(record, path, odd)))
    # Exactly the reference's texts that the fast path must step aside for.
    good = _payload_bytes(_BENCH_RECORD)
    for text in (
        good.replace(b'"transit":["TG"]', b'"transit":["TG","TG"]'),
        good.replace(b'"transit":["TG"]', b'"transit":["TG","XX"]'),
        good.replace(b'"version":1', b'"version":1.0'),
        good.replace(b'"version":1', b'"version":1e0'),
        good.replace(b'"version":1', b'"version":1,"version":1'),
        good.replace(b'"version":1', b'"version":99999999999999999999999'),
        good.replace(b'"tlp":"AMBER"', b'"tlp":"AMBER","tlp":"AMBER"'),
        good.replace(b'"kind":"seizure"', b'"kind":"seizure","kind":"seizure"'),
        good.replace(b'"brand":"3M"', b'"brand":"3\\u004d"'),
        good.replace(b'"brand":"3M"', b'"brand":"3\\u0001"'),
        good.replace(b'"brand":"3M"', b'"brand":"3\\ud800"'),
        good.replace(b'"brand":"3M"', b'"brand":"3\\b"'),
        good.replace(b'"brand":"3M"', b'"brand":"3\xc2\x85"'),
        good.replace(b'"brand":"3M"', b'"brand":"3\xff"'),
        good.replace(b'"brand":"3M"', b'"brand":null'),
        good.replace(b",", b", "),
        b"\xef\xbb\xbf" + good,
        good + b" ",
        good[:-1],
        b"[" + good + b"]",
    ):
        assert_payload_as_reference(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_payloads_fail_as_the_reference_does(data: st.DataObject) -> None:
    record = copy.deepcopy(data.draw(st.sampled_from([SEIZURE, _BENCH_RECORD])))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(record)))
        parent: Any = record
        for step in path[:-1]:
            parent = parent[step]
        action = data.draw(st.integers(0, 2))
        if action == 0 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == 1 and isinstance(parent, dict):
            parent[data.draw(st.sampled_from(["x", "tlp", "name", "origin", "hs_code", "brand"]))] = data.draw(ANY_JSON)
        else:
            parent[path[-1]] = data.draw(ANY_JSON | ODD_VALUES)
    assert_payload_as_reference(_payload_bytes(record))


# --- Wraps are checked without being decoded ------------------------------------------


def test_wraps_are_checked_as_the_reference_does_without_decoding() -> None:
    sample = _sample_bundle(3, "nodes")
    wrap = sample["recipients"][1]["wrap"]
    variants = [wrap[:-1] + c for c in string.ascii_letters + string.digits + "-_+/="]
    variants += [wrap[:50] + c + wrap[51:] for c in '+/=é "\\\x00*']
    variants += [wrap + "A", wrap[:-1], wrap[:-2], wrap + "AAAA", wrap[:-4]]
    for variant in variants:
        damaged = copy.deepcopy(sample)
        damaged["recipients"][1]["wrap"] = variant
        assert bundle_outcome(damaged, pb.MAX_BUNDLE_BYTES) == reference_outcome(damaged, pb.MAX_BUNDLE_BYTES), variant
    bundle = parse_bundle(sample)
    for r, item in zip(bundle.recipients, sample["recipients"], strict=True):
        assert r.wrap == b64u_decode(item["wrap"]) and len(r.wrap) == pb.WRAP_BYTES
        assert bundle.wrap_for(r.node) == r.wrap
    assert bundle.wrap_for("n" + "z" * 24) is None


def test_node_lists_are_checked_in_one_pass_as_the_reference_does() -> None:
    a, b, c = ("n" + ch * 24 for ch in "abc")
    odd_lists: list[Any] = [
        [a + "," + b], [a, b + "," + c], ["", a], [a, ""], [a, a], [b, a], [a, StrSub(b)], [a, b[:-1] + "1"],
        [a, b.upper()], [a, b + " "], [a, 5], [a, None], [a, b, c], [a[:-1] + "é"],
    ]
    for nodes in odd_lists:
        for where in ("audience", "recipients"):
            sample = _sample_bundle(3, "nodes")
            if where == "audience":
                sample["audience"]["nodes"] = nodes
            else:
                sample["recipients"] = [{"node": n, "wrap": sample["recipients"][0]["wrap"]} for n in nodes]
                sample["origin"] = nodes[0] if isinstance(nodes[0], str) and nodes[0] else a
            assert bundle_outcome(sample, pb.MAX_BUNDLE_BYTES) == reference_outcome(sample, pb.MAX_BUNDLE_BYTES), (where, nodes)


def test_ct_is_checked_and_decoded_as_the_reference_does() -> None:
    sample = _sample_bundle(2, "nodes")
    texts = [b64u_encode(bytes(range(n))) for n in (0, 14, 15, 16, 17, 18, 40)]
    texts += [t[:-1] + c for t in texts[2:5] for c in string.ascii_letters + string.digits + "-_+/=é"]
    texts += ["A" * n for n in range(18, 26)] + [texts[4][:10] + c + texts[4][11:] for c in '+/= "\\\x00*é']
    for text in texts:
        damaged = copy.deepcopy(sample)
        damaged["ct"] = text
        assert bundle_outcome(damaged, pb.MAX_BUNDLE_BYTES) == reference_outcome(damaged, pb.MAX_BUNDLE_BYTES), text
    bundle = parse_bundle(sample)
    assert bundle.ct == b64u_decode(sample["ct"])
    assert hashlib.sha256(bundle.header_bytes).digest() == pb.header_hash(bundle.header())
    assert bundle.header_bytes == pb.BUNDLE_DOMAIN + canonical(bundle.header())


def test_nonce_and_sig_decoded_together_only_when_each_would_alone() -> None:
    """The text path decodes nonce + sig as one b64u text: a character moved from one
    to the other keeps the joined text valid, and must still be refused."""
    sample = _sample_bundle(2, "nodes")
    nonce, sig = sample["nonce"], sample["sig"]
    pairs = [
        (nonce[:-1], nonce[-1] + sig), (nonce + sig[0], sig[1:]), (nonce[:-4], nonce[-4:] + sig),
        (nonce + sig[:4], sig[4:]), (nonce[:-1] + "=", sig), (nonce, sig[:-1] + "B"), (nonce, sig + "A"),
        (nonce[:20] + "+" + nonce[21:], sig), (nonce, sig[:40] + "/" + sig[41:]), ("", nonce + sig),
    ]
    for n, s in pairs:
        damaged = {**sample, "nonce": n, "sig": s}
        assert bundle_outcome(damaged, pb.MAX_BUNDLE_BYTES) == reference_outcome(damaged, pb.MAX_BUNDLE_BYTES), (n, s)
        assert bundle_outcome(damaged, pb.MAX_BUNDLE_BYTES)[0] != "ok", (n, s)
    bundle = pb._parse_canonical_text(canonical(sample))
    assert bundle is not None and bundle.nonce == b64u_decode(nonce) and bundle.sig == b64u_decode(sig)


def test_long_node_lists_take_the_c_passes_with_the_same_answers() -> None:
    ids = sorted("n" + ch * 24 for ch in "abcdefghijklmnopq")  # more than pb._FEW
    assert len(ids) > pb._FEW
    odd_lists: list[Any] = [
        ids, ids[::-1], [*ids[:5], ids[4], *ids[5:]], [*ids[:-1], ids[-1] + "," + ids[0]], [*ids[:3], StrSub(ids[3]), *ids[4:]],
        [*ids[:3], 7, *ids[4:]], [*ids[:3], ids[3][:-1] + "1", *ids[4:]], [*ids[:3], ids[3] + "a", *ids[4:]],
        [*ids[:3], "", *ids[4:]], [ids[0] + "," + ids[1], *ids[2:]],
    ]
    for nodes in odd_lists:
        for where in ("audience", "recipients"):
            sample = _sample_bundle(3, "nodes")
            wrap = sample["recipients"][0]["wrap"]
            if where == "audience":
                sample["audience"]["nodes"] = nodes
            else:
                sample["recipients"] = [{"node": n, "wrap": wrap} for n in nodes]
                sample["origin"] = ids[1]
            assert bundle_outcome(sample, pb.MAX_BUNDLE_BYTES) == reference_outcome(sample, pb.MAX_BUNDLE_BYTES), (where, nodes)
        sample = _sample_bundle(3, "nodes")
        sample["recipients"] = [{"node": n, "wrap": wrap} for n in ids]
        sample["origin"] = ids[1]
        for i, bad_wrap in ((3, wrap[:-1] + "B"), (5, wrap[:-1]), (7, wrap[:9] + "+" + wrap[10:]), (9, 12)):
            damaged = copy.deepcopy(sample)
            damaged["recipients"][i]["wrap"] = bad_wrap
            assert bundle_outcome(damaged, pb.MAX_BUNDLE_BYTES) == reference_outcome(damaged, pb.MAX_BUNDLE_BYTES), bad_wrap
    assert bundle_outcome(sample, pb.MAX_BUNDLE_BYTES)[0] == "ok" and pb._parse_exact(sample) is not None


def test_remembered_node_ids_are_only_those_that_matched_and_stay_bounded() -> None:
    """The set of node ids seen lately stands in for the regex: nothing that fails the regex
    may enter it, an id that differs by one character from a remembered one is still refused,
    and it never grows past its bound."""
    pb._NODE_IDS.clear()
    ids = sorted("n" + ch * 24 for ch in "abcdefghijklmnopq")
    for nodes in (ids[:3], ids):  # the few-recipients loop, then the C passes
        sample = _sample_bundle(3, "nodes")
        wrap = sample["recipients"][0]["wrap"]
        sample["recipients"] = [{"node": n, "wrap": wrap} for n in nodes]
        sample["origin"] = nodes[1]
        assert bundle_outcome(sample, pb.MAX_BUNDLE_BYTES)[0] == "ok"
        for bad in (nodes[1][:-1] + "1", nodes[1].upper(), nodes[1][:-1] + "é"):
            damaged = copy.deepcopy(sample)
            damaged["recipients"][1]["node"] = bad
            assert bundle_outcome(damaged, pb.MAX_BUNDLE_BYTES) == reference_outcome(damaged, pb.MAX_BUNDLE_BYTES)
            assert bundle_outcome(damaged, pb.MAX_BUNDLE_BYTES)[0] != "ok", bad
            assert pb._parse_canonical_text(canonical(damaged)) is None
    assert set(ids) <= pb._NODE_IDS
    assert all(pb.shapes.NODE_ID.fullmatch(n) for n in pb._NODE_IDS)
    # Bounded, whichever way the ids come in: one at a time, or a long list at once.
    letters = str.maketrans("0123456789", "abcdefghij")
    fill = ["n" + f"{i:024d}".translate(letters) for i in range(pb._NODE_IDS_KEPT + 100)]
    for node in fill:
        assert pb._node_id_ok(node)
    assert len(pb._NODE_IDS) <= pb._NODE_IDS_KEPT
    assert pb._node_ids_ascending(fill[-600:]) and len(pb._NODE_IDS) <= pb._NODE_IDS_KEPT
