"""HTTP request signatures, exactly as PROTOCOL.md section 5.

RFC 9421 HTTP Message Signatures with Ed25519 over a fixed set of covered
components, and an RFC 9530 ``Content-Digest`` (``sha-256``) of the body::

    Content-Digest: sha-256=:<base64 sha256(body)>:
    Signature-Input: sig1=("@method" "@authority" "@path" "@query" "content-digest");created=<s>;expires=<s>;nonce="<random>";keyid="<node id>";alg="ed25519"
    Signature: sig1=:<base64 signature>:

This module is pure: no I/O, no clock, no randomness. The caller passes the
time and the nonce, and does the nonce replay check itself with the nonce that
``verify_request`` returns, because that check needs state.

Everything received from a peer is parsed with ``http_sf`` (RFC 8941/9651
Structured Fields) and then checked against the one shape the protocol allows;
any deviation raises ``InvalidSignature("malformed", ...)``. Verification
raises ``InvalidSignature`` and nothing else for any header content.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import http_sf

from crypto.keys import IdentityKey, verify_ed25519
from protocol.errors import InvalidSignature, LocalProtocolError

# The covered components, in the only order the protocol accepts. A fixed list
# means a peer cannot choose to leave the body or the query out of what it signs.
COVERED_COMPONENTS: tuple[str, ...] = (
    "@method",
    "@authority",
    "@path",
    "@query",
    "content-digest",
)
ALGORITHM = "ed25519"
DEFAULT_LABEL = "sig1"

# Signature parameters RFC 9421 section 2.3 defines. Anything else is refused:
# the protocol fixes the shape, and unknown parameters would only widen what a
# peer can smuggle into the signed metadata.
_KNOWN_PARAMS = frozenset({"created", "expires", "nonce", "keyid", "alg", "tag"})
_REQUIRED_PARAMS = ("created", "expires", "nonce", "keyid")

# RFC 8941 section 3.1.2 key grammar, used for the dictionary label.
_SF_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
# RFC 8941 section 3.3.3: sf-string holds printable ASCII only.
_SF_STRING_CHARS = re.compile(r"[\x20-\x7e]*")
# Derived component values must be printable ASCII without newlines, so one
# value can never be made to look like the next line of the signature base.
_COMPONENT_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


@dataclass(frozen=True)
class VerifiedRequest:
    """What a verified signature vouches for; the caller checks ``nonce`` for replay."""

    keyid: str
    nonce: str
    created: int
    expires: int


# --- RFC 8941 serialization of the few value types this protocol uses -------


def _sf_string(value: str) -> str:
    """Serialize an sf-string (RFC 8941 section 4.1.6)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sf_param_value(value: int | str) -> str:
    if isinstance(value, int):
        return str(value)
    return _sf_string(value)


def _serialize_signature_params(
    components: tuple[str, ...], params: list[tuple[str, int | str]]
) -> str:
    """Serialize the inner list with parameters, as RFC 9421 section 2.3 puts it in the base."""
    inner = " ".join(_sf_string(c) for c in components)
    return "(" + inner + ")" + "".join(f";{k}={_sf_param_value(v)}" for k, v in params)


def content_digest(body: bytes) -> str:
    """The ``Content-Digest`` field value for ``body``: ``sha-256=:<base64>:``."""
    digest = hashlib.sha256(body).digest()
    return "sha-256=:" + base64.b64encode(digest).decode("ascii") + ":"


def _component_values(
    method: str, authority: str, path: str, query: str, digest_field: str
) -> tuple[str, str, str, str, str] | None:
    """Derive the five component values (RFC 9421 section 2.2), or None if one cannot be signed."""
    values = (
        # PROTOCOL.md fixes upper case for the method; cenmesh only sends
        # standard methods, so the fold never merges two distinct methods.
        method.upper(),
        # The Host header as given, lower-cased (host names are case-insensitive).
        authority.lower(),
        # RFC 9421 section 2.2.6: an empty path is "/".
        path or "/",
        # RFC 9421 section 2.2.7: "?" + query, and "?" alone when there is none.
        "?" + query,
        digest_field,
    )
    if not all(_COMPONENT_VALUE.fullmatch(v) for v in values):
        return None
    return values


def _signature_base(values: tuple[str, ...], signature_params: str) -> bytes:
    """RFC 9421 section 2.5: one ``"name": value`` line per component, then ``@signature-params``."""
    lines = [
        f"{_sf_string(name)}: {value}"
        for name, value in zip(COVERED_COMPONENTS, values, strict=True)
    ]
    lines.append(f'"@signature-params": {signature_params}')
    return "\n".join(lines).encode("ascii")


# --- signing -----------------------------------------------------------------


def sign_request(
    *,
    method: str,
    authority: str,
    path: str,
    query: str,
    body: bytes,
    key: IdentityKey,
    now_s: int,
    nonce: str,
    ttl_s: int = 300,
    label: str = DEFAULT_LABEL,
) -> dict[str, str]:
    """Sign a request and return the ``Content-Digest``, ``Signature-Input`` and ``Signature`` headers.

    ``authority`` is what the Host header holds, ``path`` the percent-encoded
    path and ``query`` the raw query string without ``?`` (``""`` when none).
    ``body`` is the exact bytes sent (``b""`` for a GET). ``keyid`` is the
    node id of ``key``, ``created`` is ``now_s`` and ``expires`` is
    ``now_s + ttl_s``. ``nonce`` must be a fresh random string from the caller.

    Raises ``LocalProtocolError`` for inputs that cannot be signed as the
    protocol requires (newlines or non-ASCII in a component, a bad nonce or
    label, a non-positive ttl): that is a bug on our side, not the peer's.
    """
    if type(now_s) is not int or type(ttl_s) is not int or ttl_s <= 0:
        raise LocalProtocolError("now_s and ttl_s must be integers, ttl_s positive")
    if not nonce or not _SF_STRING_CHARS.fullmatch(nonce):
        raise LocalProtocolError("nonce must be non-empty printable ASCII")
    if not _SF_KEY.fullmatch(label):
        raise LocalProtocolError(f"signature label {label!r} is not a structured-field key")
    digest_field = content_digest(body)
    values = _component_values(method, authority, path, query, digest_field)
    if values is None:
        raise LocalProtocolError("method, authority, path and query must be printable ASCII")
    params: list[tuple[str, int | str]] = [
        ("created", now_s),
        ("expires", now_s + ttl_s),
        ("nonce", nonce),
        ("keyid", key.node_id),
        ("alg", ALGORITHM),
    ]
    signature_params = _serialize_signature_params(COVERED_COMPONENTS, params)
    signature = key.sign(_signature_base(values, signature_params))
    return {
        "Content-Digest": digest_field,
        "Signature-Input": f"{label}={signature_params}",
        "Signature": f"{label}=:{base64.b64encode(signature).decode('ascii')}:",
    }


# --- verification ----------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> list[object]:
    """Every field line named ``name``, matched case-insensitively.

    Going through ``items()`` sees every line of a multidict and every
    differently cased key of a plain dict, so a second Signature-Input cannot
    hide behind the first one: once combined it shows up as an extra member
    and is refused.
    """
    wanted = name.lower()
    return [
        value for key, value in headers.items() if isinstance(key, str) and key.lower() == wanted
    ]


def _combine(name: str, lines: list[object]) -> str:
    """Combine field lines with ", " (RFC 9110 section 5.3), trimmed as RFC 9421 section 2.1 says."""
    if not all(isinstance(line, str) for line in lines):
        raise InvalidSignature("malformed", f"{name} is not text")
    return ", ".join(str(line).strip(" \t") for line in lines)


def _reject_duplicate(key: str, context: str) -> None:
    # RFC 8941 lets a later duplicate win; refusing is safer, since two
    # readers that disagree on "which one" are how signatures get bypassed.
    raise InvalidSignature("malformed", f"duplicate {context} key {key!r}")


def _parse_dictionary(name: str, value: str) -> dict[str, object]:
    """Parse a Structured Field Dictionary; anything unparseable is ``malformed``."""
    if not value.isascii():
        raise InvalidSignature("malformed", f"{name} is not ASCII")
    try:
        parsed = http_sf.parse(
            value.encode("ascii"), tltype="dictionary", on_duplicate_key=_reject_duplicate
        )
    except InvalidSignature:
        raise
    except Exception as exc:  # a third-party parser: whatever it raises is a malformed field
        raise InvalidSignature("malformed", f"{name}: {exc}") from None
    if not isinstance(parsed, dict):
        raise InvalidSignature("malformed", f"{name} is not a dictionary")
    return dict(parsed)


def _single_member(name: str, parsed: dict[str, object]) -> tuple[str, object]:
    if len(parsed) != 1:
        raise InvalidSignature(
            "malformed", f"{name} must hold exactly one signature, has {len(parsed)}"
        )
    ((label, member),) = parsed.items()
    return label, member


def _parse_signature_input(value: str) -> tuple[str, str, VerifiedRequest]:
    """Check Signature-Input has the one allowed shape; return label, serialized params and metadata."""
    label, member = _single_member("Signature-Input", _parse_dictionary("Signature-Input", value))
    if not (isinstance(member, tuple) and len(member) == 2 and isinstance(member[0], list)):
        raise InvalidSignature("malformed", "Signature-Input member is not an inner list")
    items, raw_params = member
    components: list[str] = []
    for item in items:
        # Each item is (bare value, params); a component with parameters
        # (";sf", ";key", ";req", ...) is a different component and refused.
        if not (
            isinstance(item, tuple) and len(item) == 2 and type(item[0]) is str and item[1] == {}
        ):
            raise InvalidSignature("malformed", "covered component is not a plain string")
        components.append(item[0])
    if tuple(components) != COVERED_COMPONENTS:
        raise InvalidSignature(
            "malformed", f"covered components {components!r} are not the required ones"
        )
    if not isinstance(raw_params, dict):
        raise InvalidSignature("malformed", "Signature-Input parameters are not a dictionary")
    params: list[tuple[str, int | str]] = []
    ints: dict[str, int] = {}
    strs: dict[str, str] = {}
    for key, param in raw_params.items():
        if key not in _KNOWN_PARAMS:
            raise InvalidSignature("malformed", f"unknown signature parameter {key!r}")
        # type() rather than isinstance(): bool is an int, Token is no str,
        # and "?1" or a token must not pass for a time or a key id.
        if key in ("created", "expires"):
            if type(param) is not int:
                raise InvalidSignature("malformed", f"{key} is not an integer")
            ints[key] = param
        else:
            if type(param) is not str:
                raise InvalidSignature("malformed", f"{key} is not a string")
            strs[key] = param
        params.append((key, param))
    for key in _REQUIRED_PARAMS:
        if key not in ints and key not in strs:
            raise InvalidSignature("malformed", f"signature parameter {key} is missing")
    if "alg" in strs and strs["alg"] != ALGORITHM:
        raise InvalidSignature("malformed", f"alg {strs['alg']!r} is not {ALGORITHM}")
    if not strs["nonce"] or not strs["keyid"]:
        raise InvalidSignature("malformed", "nonce and keyid must not be empty")
    verified = VerifiedRequest(
        keyid=strs["keyid"], nonce=strs["nonce"], created=ints["created"], expires=ints["expires"]
    )
    # The base must hold the RFC 8941 serialization of the member as received;
    # re-serializing the parsed value gives exactly that.
    signature_params = _serialize_signature_params(COVERED_COMPONENTS, params)
    return label, signature_params, verified


def _parse_signature(value: str) -> tuple[str, bytes]:
    label, member = _single_member("Signature", _parse_dictionary("Signature", value))
    if not (
        isinstance(member, tuple)
        and len(member) == 2
        and type(member[0]) is bytes
        and member[1] == {}
    ):
        raise InvalidSignature("malformed", "Signature member is not a byte sequence")
    return label, member[0]


def _check_digest(value: str, body: bytes) -> None:
    parsed = _parse_dictionary("Content-Digest", value)
    member = parsed.get("sha-256")
    if member is None:
        raise InvalidSignature("digest", "Content-Digest has no sha-256 member")
    if not (isinstance(member, tuple) and len(member) == 2 and type(member[0]) is bytes):
        raise InvalidSignature("digest", "Content-Digest sha-256 is not a byte sequence")
    if not hmac.compare_digest(member[0], hashlib.sha256(body).digest()):
        raise InvalidSignature("digest", "Content-Digest does not match the body")


def verify_request(
    *,
    method: str,
    authority: str,
    path: str,
    query: str,
    body: bytes,
    headers: Mapping[str, str],
    now_s: int,
    public_key_for: Callable[[str], bytes | None],
    max_age_s: int = 300,
) -> VerifiedRequest:
    """Verify a signed request (PROTOCOL.md section 5) and return what the signature vouches for.

    ``method``, ``authority``, ``path`` and ``query`` are as for ``sign_request``
    but taken from the received request; ``body`` is the raw received body
    (before any content decoding). ``headers`` is looked up case-insensitively.
    ``public_key_for(keyid)`` returns the 32-byte Ed25519 key of an accepted,
    unrevoked node, or None.

    Raises ``InvalidSignature`` with reason ``missing``, ``malformed``,
    ``unknown-key``, ``digest``, ``signature``, ``stale`` or ``expired``, checked
    in that order, so that no time or digest verdict is given about a request
    whose signature did not verify. The nonce replay check is the caller's.
    Exceptions raised by ``public_key_for`` itself propagate unchanged.
    """
    input_lines = _header(headers, "Signature-Input")
    signature_lines = _header(headers, "Signature")
    digest_lines = _header(headers, "Content-Digest")
    if not input_lines or not signature_lines or not digest_lines:
        raise InvalidSignature(
            "missing", "Signature, Signature-Input and Content-Digest are required"
        )
    signature_input = _combine("Signature-Input", input_lines)
    signature_field = _combine("Signature", signature_lines)
    digest_field = _combine("Content-Digest", digest_lines)

    label, signature_params, verified = _parse_signature_input(signature_input)
    signature_label, signature = _parse_signature(signature_field)
    if signature_label != label:
        raise InvalidSignature("malformed", "Signature and Signature-Input labels differ")
    # Parse the digest field now so an unparseable one is "malformed"; its
    # value is checked against the body only at the "digest" step below.
    _parse_dictionary("Content-Digest", digest_field)
    values = _component_values(method, authority, path, query, digest_field)
    if values is None:
        raise InvalidSignature("malformed", "a covered component is not printable ASCII")

    public = public_key_for(verified.keyid)
    if public is None:
        raise InvalidSignature("unknown-key", f"no accepted node {verified.keyid!r}")

    _check_digest(digest_field, body)

    if not verify_ed25519(public, _signature_base(values, signature_params), signature):
        raise InvalidSignature(
            "signature", f"Ed25519 signature by {verified.keyid} does not verify"
        )

    if verified.created < now_s - max_age_s or verified.created > now_s + max_age_s:
        raise InvalidSignature(
            "stale", f"created {verified.created} is not within {max_age_s}s of {now_s}"
        )
    if verified.expires <= now_s:
        raise InvalidSignature("expired", f"expired at {verified.expires}, now {now_s}")
    if verified.expires < verified.created or verified.expires - verified.created > max_age_s:
        raise InvalidSignature(
            "expired", f"lifetime {verified.created}..{verified.expires} exceeds {max_age_s}s"
        )
    return verified
