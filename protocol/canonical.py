"""Canonical JSON and b64u, exactly as PROTOCOL.md section 1.

Canonical bytes are the only thing cenmesh hashes or signs, so these two
functions decide interoperability: sorted keys, no whitespace, UTF-8 without
escapes, no floats, integers within +-(2**53 - 1).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from protocol.errors import MalformedJSON

MAX_SAFE_INT = 2**53 - 1
_B64U_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")
_B64U_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64U_INDEX = {c: i for i, c in enumerate(_B64U_CHARS)}
_TO_STANDARD = str.maketrans("-_", "+/")


def check_json_value(value: Any, path: str = "$") -> None:
    """Raise MalformedJSON unless ``value`` holds only canonical-safe JSON types."""
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
            check_json_value(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise MalformedJSON(f"{path}: object key {key!r} is not a string")
            _check_text(key, path)
            check_json_value(item, f"{path}.{key}")
        return
    raise MalformedJSON(f"{path}: {type(value).__name__} is not a JSON value")


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedJSON(f"{path}: string holds a lone surrogate") from None


def canonical(value: Any) -> bytes:
    """Return the canonical JSON bytes of ``value`` (PROTOCOL.md section 1)."""
    check_json_value(value)
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def dumps_unchecked(value: Any) -> bytes:
    """Canonical bytes of a value already known to hold only canonical-safe types.

    For hot paths whose strict shape check proves the types (every field of a
    parsed bundle is type- and range-checked), so the recursive walk of
    ``check_json_value`` would only repeat that work. Raises ValueError or
    TypeError on values json cannot encode.
    """
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


def parse_json(data: bytes | str) -> Any:
    """Parse JSON from outside, rejecting anything canonical() could not write back.

    Floats, NaN/Infinity, out-of-range integers, duplicate keys, lone
    surrogates and invalid UTF-8 all raise MalformedJSON.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        value = json.loads(
            text,
            parse_float=_no_float,
            parse_constant=_no_constant,
            object_pairs_hook=_no_duplicates,
        )
    except MalformedJSON:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise MalformedJSON(f"not valid JSON: {exc}") from None
    check_json_value(value)
    return value


def b64u_encode(raw: bytes) -> str:
    """Base64url without padding (RFC 4648 section 5)."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    """Strict inverse of b64u_encode: no padding, alphabet only, canonical trailing bits."""
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
