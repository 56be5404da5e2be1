"""Small strict field readers shared by the bundle, descriptor and message parsers.

Each reader takes the object, the key and a dotted path prefix, and raises
``InvalidMessage(field, why)``; callers that need an opaque error (bundles,
descriptors) convert it at their own boundary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from protocol.canonical import MAX_SAFE_INT, b64u_decode
from protocol.errors import InvalidMessage, MalformedJSON

NODE_ID = re.compile(r"n[a-z2-7]{24}")
REGION_CODE = re.compile(r"[A-Z]{2,5}")
GROUP_NAME = re.compile(r"(region:[A-Z]{2,5}|op:[A-Z0-9][A-Z0-9._-]{0,62})")


def exact_keys(obj: Any, path: str, required: Iterable[str], optional: Iterable[str] = ()) -> dict[str, Any]:
    """Return ``obj`` if it is an object with every required key and no unknown one."""
    if not isinstance(obj, dict):
        raise InvalidMessage(path, "must be an object")
    required = set(required)
    allowed = required | set(optional)
    for key in obj:
        if key not in allowed:
            raise InvalidMessage(_join(path, key), "unknown field")
    for key in sorted(required):
        if key not in obj:
            raise InvalidMessage(_join(path, key), "is required")
    return obj


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def integer(obj: dict[str, Any], key: str, path: str = "", *, low: int = 0, high: int = MAX_SAFE_INT) -> int:
    """An integer field (never a bool) within [low, high]."""
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidMessage(_join(path, key), "must be an integer")
    if not low <= value <= high:
        raise InvalidMessage(_join(path, key), f"must be between {low} and {high}")
    return value


def boolean(obj: dict[str, Any], key: str, path: str = "") -> bool:
    """A true/false field."""
    value = obj[key]
    if not isinstance(value, bool):
        raise InvalidMessage(_join(path, key), "must be true or false")
    return value


def text(obj: dict[str, Any], key: str, path: str = "", *, max_len: int = 200, pattern: re.Pattern[str] | None = None) -> str:
    """A non-empty string field, optionally matching ``pattern`` in full."""
    value = obj[key]
    if not isinstance(value, str) or not value:
        raise InvalidMessage(_join(path, key), "must be a non-empty string")
    if len(value) > max_len:
        raise InvalidMessage(_join(path, key), f"is longer than {max_len} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise InvalidMessage(_join(path, key), f"{value[:40]!r} is not in the expected form")
    return value


def node_id(value: Any, field: str) -> str:
    """A node id: ``n`` and 24 base32 characters."""
    if not isinstance(value, str) or not NODE_ID.fullmatch(value):
        raise InvalidMessage(field, "is not a node id")
    return value


def b64u_field(obj: dict[str, Any], key: str, path: str = "", *, size: int | None = None, min_size: int = 0) -> bytes:
    """A b64u field, decoded strictly, of exactly ``size`` bytes when given."""
    try:
        raw = b64u_decode(obj[key])
    except MalformedJSON as exc:
        raise InvalidMessage(_join(path, key), str(exc)) from None
    if size is not None and len(raw) != size:
        raise InvalidMessage(_join(path, key), f"must decode to {size} bytes, not {len(raw)}")
    if len(raw) < min_size:
        raise InvalidMessage(_join(path, key), f"must decode to at least {min_size} bytes")
    return raw


def sorted_unique(values: list[Any], field: str) -> None:
    """Reject a list that is not strictly increasing (sorted, no duplicates)."""
    for i in range(1, len(values)):
        if not values[i - 1] < values[i]:
            raise InvalidMessage(field, "must be sorted and free of duplicates")


def string_list(obj: dict[str, Any], key: str, path: str = "", *, max_items: int, min_items: int = 0) -> list[Any]:
    """A list field with a bounded number of items (item types checked by the caller)."""
    value = obj[key]
    if not isinstance(value, list):
        raise InvalidMessage(_join(path, key), "must be a list")
    if not min_items <= len(value) <= max_items:
        raise InvalidMessage(_join(path, key), f"must hold {min_items} to {max_items} items")
    return value
