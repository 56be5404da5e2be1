"""Canonical JSON and b64u, exactly as PROTOCOL.md section 1.

Canonical bytes are the only thing cenmesh hashes or signs, so these two
functions decide interoperability: sorted keys, no whitespace, UTF-8 without
escapes, no floats, integers within +-(2**53 - 1).
"""

from __future__ import annotations

import binascii
import json
import re
from typing import Annotated, Any

import msgspec
import pybase64

from protocol.errors import MalformedJSON

MAX_SAFE_INT = 2**53 - 1
# A non-negative integer member as the typed msgspec decodes of the fast paths read it.
SafeUInt = Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE_INT)]
_B64U_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")
_B64U_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64U_INDEX = {c: i for i, c in enumerate(_B64U_CHARS)}
_TO_STANDARD = str.maketrans("-_", "+/")
_B64U_TAIL = {**_B64U_INDEX, "": 0}  # the last character's value; "" for the empty text


def check_json_value(value: Any, path: str = "$") -> None:
    """Raise MalformedJSON unless ``value`` holds only canonical-safe JSON types."""
    # Clean values are the common case: a walk without paths or string checks
    # decides that, and anything else is re-walked by the reference checker,
    # which words the error (same order, same path) or accepts what it accepts.
    if not _types_clean(value) or not _encodable(_dumps(value)):
        _check_json_value_slow(value, path)


def _types_clean(value: Any) -> bool:
    """True when ``value`` is built of exact JSON types only, with safe integers.

    Exact types (``type(x) is``): floats (``1.0 == 1``), bool-as-int, subclasses
    and foreign objects all answer False, and so does a structure too deep (or
    circular) to walk; the reference checker then has the last word.
    """
    try:
        return _clean(value)
    except RecursionError:
        return False


def _clean(value: Any) -> bool:
    # Plain loops rather than all(<generator>): this walk is on every canonical().
    t = type(value)
    if t is str or t is bool or value is None:
        return True
    if t is int:
        return bool(-MAX_SAFE_INT <= value <= MAX_SAFE_INT)
    if t is dict:
        for key, item in value.items():  # noqa: SIM110
            if type(key) is not str or not _clean(item):
                return False
        return True
    if t is list:
        for item in value:  # noqa: SIM110
            if not _clean(item):
                return False
        return True
    return False


def _check_json_value_slow(value: Any, path: str) -> None:
    """The reference walk: depth first, in order, raising at the first problem with its path."""
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str):
            _check_text(value, path)
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise MalformedJSON(f"{path}: integer outside +-(2^53 - 1)")
        return
    if isinstance(value, float):
        raise MalformedJSON(f"{path}: floating-point numbers are not allowed")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json_value_slow(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise MalformedJSON(f"{path}: object key {key!r} is not a string")
            _check_text(key, path)
            _check_json_value_slow(item, f"{path}.{key}")
        return
    raise MalformedJSON(f"{path}: {type(value).__name__} is not a JSON value")


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedJSON(f"{path}: string holds a lone surrogate") from None


# One encoder built once: json.dumps with these options builds a new one per call.
# With ensure_ascii=False a lone surrogate stays itself in the output, where
# only the UTF-8 encode notices it.
_dumps = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def canonical(value: Any) -> bytes:
    """Return the canonical JSON bytes of ``value`` (PROTOCOL.md section 1)."""
    if not _types_clean(value):
        _check_json_value_slow(value, "$")  # raises, or accepts (e.g. a str subclass)
    text = _dumps(value)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Only a lone surrogate fails here; the reference walk names where it is.
        _check_json_value_slow(value, "$")
        raise


def dumps_unchecked(value: Any) -> bytes:
    """Canonical bytes of a value already known to hold only canonical-safe types.

    For hot paths whose strict shape check proves the types (every field of a
    parsed bundle is type- and range-checked), so the recursive walk of
    ``check_json_value`` would only repeat that work. Raises ValueError or
    TypeError on values json cannot encode.
    """
    return _dumps(value).encode("utf-8")


def _no_float(text: str) -> Any:
    raise MalformedJSON(f"floating-point number {text} is not allowed")


def _no_constant(text: str) -> Any:
    raise MalformedJSON(f"{text} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)  # in C; a key given twice shows as a shorter dict
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise MalformedJSON(f"duplicate object key {key!r}")
            seen.add(key)
    return obj


class _UnsafeInteger(Exception):
    """An integer literal outside +-(2**53 - 1); parse_json hands the text to the reference parse."""


def _safe_int(text: str) -> int:
    value = int(text)
    if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
        raise _UnsafeInteger
    return value


# The options of parse_json, in a decoder built once (json.loads with options
# builds a decoder and its scanner on every call).
_decode = json.JSONDecoder(
    parse_float=_no_float,
    parse_int=_safe_int,
    parse_constant=_no_constant,
    object_pairs_hook=_no_duplicates,
).decode


def parse_json(data: bytes | str) -> Any:
    """Parse JSON from outside, rejecting anything canonical() could not write back.

    Floats, NaN/Infinity, out-of-range integers, duplicate keys, lone
    surrogates and invalid UTF-8 all raise MalformedJSON.
    """
    # The hooks reject floats, constants and duplicate keys during the parse, and
    # integers are range-checked as they are read (an unsafe one goes to the
    # reference parse, so the error reported first does not change). What is
    # left, lone surrogates, can only come from a \u escape or, in str input,
    # from the text itself: without either, the recursive walk is skipped.
    from_bytes = isinstance(data, bytes | bytearray)
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        if text.startswith("\ufeff"):  # json.loads words this one itself
            return _parse_json_reference(text)
        value = _decode(text)
    except MalformedJSON:
        raise
    except _UnsafeInteger:
        return _parse_json_reference(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise MalformedJSON(f"not valid JSON: {exc}") from None
    if "\\u" in text or (not from_bytes and not _encodable(text)):
        _check_json_value_slow(value, "$")
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parse_json_reference(text: str) -> Any:
    """parse_json as first written: parse with hooks, then walk every value."""
    try:
        value = json.loads(
            text,
            parse_float=_no_float,
            parse_constant=_no_constant,
            object_pairs_hook=_no_duplicates,
        )
    except MalformedJSON:
        raise
    except (ValueError, RecursionError) as exc:
        raise MalformedJSON(f"not valid JSON: {exc}") from None
    _check_json_value_slow(value, "$")
    return value


def b64u_encode(raw: bytes) -> str:
    """Base64url without padding (RFC 4648 section 5)."""
    # binascii and one translate: base64.urlsafe_b64encode is two Python calls around the same.
    return _b2a_base64(raw, newline=False).rstrip(b"=").translate(_STANDARD_TO_URLSAFE).decode("ascii")


_b2a_base64 = binascii.b2a_base64
_STANDARD_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64u_decode(text: str) -> bytes:
    """Strict inverse of b64u_encode: no padding, alphabet only, canonical trailing bits."""
    # Fast path: pybase64's vector decoder, given "-_" as the alphabet's last two
    # characters and told to refuse any other character (0.45 us for a bundle's
    # ~940-character ct, against 1.4 for a translate and msgspec's decoder, and
    # no slower for a wrap). Its arguments go by position: parsing them as
    # keywords costs it more than the decoding of a wrap. It also takes "+" and
    # "/" (its own alphabet) and "=" (padding), which base64url has not: those
    # go to the reference, which refuses them, as it words every other refusal.
    # tests/protocol/test_fastpath.py holds the two equal.
    if type(text) is str and "+" not in text and "/" not in text and "=" not in text:
        rem = len(text) & 3
        try:
            raw: bytes = _b64decode(text + _PADDING[rem], b"-_", True)
        except ValueError:  # binascii.Error is one; a non-ASCII str raises the plain kind
            pass
        else:
            # The unused bits of the last character must be 0 (none for rem 0, nor for "");
            # a character the decoder should not have taken counts as all bits set.
            if not _UNUSED_BITS[rem] & _B64U_TAIL.get(text[-1:], 0xFF):
                return raw
    return _b64u_decode_reference(text)


_b64decode = pybase64.b64decode
# Length 4k + 1 is impossible: without padding, the decoder refuses it.
_PADDING = ("", "", "==", "=")
# The last character of a 2- or 3-character tail carries 4 or 2 bits that encode nothing.
_UNUSED_BITS = (0, 0, 0x0F, 0x03)


# msgspec's JSON writer with object keys and Struct fields in sorted order. The fast paths
# decode a text typed and write it back with this: the same bytes prove the text held no
# repeated key, spacing or escape, and also give a record body in one C call.
encode_sorted = msgspec.json.Encoder(order="sorted").encode


def _b64u_decode_reference(text: str) -> bytes:
    if not isinstance(text, str):
        raise MalformedJSON("b64u value is not a string")
    if not _B64U_ALPHABET.fullmatch(text):
        raise MalformedJSON("b64u value has characters outside the base64url alphabet")
    rem = len(text) % 4
    if rem == 1:
        raise MalformedJSON("b64u value has an impossible length")
    if rem:
        # The last character carries 4 (rem 2) or 2 (rem 3) bits that encode nothing; they must be 0.
        if _B64U_INDEX[text[-1]] & (0x0F if rem == 2 else 0x03):
            raise MalformedJSON("b64u value has non-canonical trailing bits")
        text += "=" * (4 - rem)
    return binascii.a2b_base64(text.translate(_TO_STANDARD))
