"""Tests for crypto.httpsig: PROTOCOL.md section 5 request signatures.

Besides round trips and one test per failure reason, the interop tests check
our headers against the independent ``http-message-signatures`` package in
both directions, so the signature base is not only consistent with itself.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import types
from collections.abc import Iterator, Mapping

import http_message_signatures.signatures as hms_signatures
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    MappingKeyResolver,
    algorithms,
)
from http_message_signatures import InvalidSignature as HMSInvalidSignature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, MultiDict

from crypto.httpsig import (
    COVERED_COMPONENTS,
    VerifiedRequest,
    content_digest,
    sign_request,
    verify_request,
)
from crypto.keys import IdentityKey
from protocol.errors import InvalidSignature, LocalProtocolError

KEY = IdentityKey(bytes(range(32)))
OTHER = IdentityKey(bytes(range(1, 33)))
NOW = 1_700_000_000
NONCE = "bm9uY2Utbm9uY2U"
AUTHORITY = "node-a.example:8443"
EMPTY_SHA256 = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
COMPONENTS = '("@method" "@authority" "@path" "@query" "content-digest")'


def keys_for(node_id: str) -> bytes | None:
    """The accepted-node lookup of a node that knows only KEY."""
    return KEY.public if node_id == KEY.node_id else None


def sign(
    *,
    method: str = "POST",
    path: str = "/federation/v1/fetch",
    query: str = "",
    body: bytes = b'{"ids":[]}',
    now_s: int = NOW,
    ttl_s: int = 300,
    key: IdentityKey = KEY,
    label: str = "sig1",
) -> dict[str, str]:
    return sign_request(
        method=method,
        authority=AUTHORITY,
        path=path,
        query=query,
        body=body,
        key=key,
        now_s=now_s,
        nonce=NONCE,
        ttl_s=ttl_s,
        label=label,
    )


def verify(
    headers: Mapping[str, str],
    *,
    method: str = "POST",
    authority: str = AUTHORITY,
    path: str = "/federation/v1/fetch",
    query: str = "",
    body: bytes = b'{"ids":[]}',
    now_s: int = NOW,
) -> VerifiedRequest:
    return verify_request(
        method=method,
        authority=authority,
        path=path,
        query=query,
        body=body,
        headers=headers,
        now_s=now_s,
        public_key_for=keys_for,
    )


def reason_of(headers: Mapping[str, str], **kwargs: object) -> str:
    with pytest.raises(InvalidSignature) as info:
        verify(headers, **kwargs)  # type: ignore[arg-type]
    return info.value.reason


def hand_signed(
    params: str,
    *,
    components: str = COMPONENTS,
    body: bytes = b'{"ids":[]}',
    key: IdentityKey = KEY,
) -> dict[str, str]:
    """Headers with an arbitrary Signature-Input member, signed over a base built by hand.

    The base is written out literally from RFC 9421 section 2.5 rather than
    through crypto.httpsig, so these tests also cross-check the module.
    """
    digest = content_digest(body)
    member = components + params
    base = "\n".join(
        [
            '"@method": POST',
            f'"@authority": {AUTHORITY}',
            '"@path": /federation/v1/fetch',
            '"@query": ?',
            f'"content-digest": {digest}',
            f'"@signature-params": {member}',
        ]
    ).encode("ascii")
    signature = base64.b64encode(key.sign(base)).decode("ascii")
    return {
        "Content-Digest": digest,
        "Signature-Input": f"sig1={member}",
        "Signature": f"sig1=:{signature}:",
    }


def std_params(created: int = NOW, expires: int = NOW + 300) -> str:
    return (
        f';created={created};expires={expires};nonce="{NONCE}";keyid="{KEY.node_id}";alg="ed25519"'
    )


# --- round trips ---------------------------------------------------------------


def test_get_round_trip_signs_the_empty_body() -> None:
    headers = sign(method="GET", path="/federation/v1/directory", body=b"")
    assert headers["Content-Digest"] == f"sha-256=:{EMPTY_SHA256}:"
    assert headers["Signature-Input"] == (
        f"sig1={COMPONENTS};created={NOW};expires={NOW + 300};"
        f'nonce="{NONCE}";keyid="{KEY.node_id}";alg="ed25519"'
    )
    assert headers["Signature"].startswith("sig1=:") and headers["Signature"].endswith(":")
    got = verify(headers, method="GET", path="/federation/v1/directory", body=b"")
    assert got == VerifiedRequest(keyid=KEY.node_id, nonce=NONCE, created=NOW, expires=NOW + 300)


def test_post_round_trip_with_query() -> None:
    body = b'{"bundles":[]}'
    headers = sign(path="/federation/v1/push", query="after=12&limit=500", body=body)
    got = verify(headers, path="/federation/v1/push", query="after=12&limit=500", body=body)
    assert got.keyid == KEY.node_id
    assert got.nonce == NONCE


def test_signature_is_deterministic() -> None:
    # Ed25519 is deterministic: same inputs, same headers; a regression guard.
    assert sign() == sign()


def test_method_and_authority_are_normalized() -> None:
    headers = sign_request(
        method="post",
        authority="Node-A.Example:8443",
        path="/federation/v1/fetch",
        query="",
        body=b'{"ids":[]}',
        key=KEY,
        now_s=NOW,
        nonce=NONCE,
    )
    verify(headers)  # upper-case method, lower-case authority
    verify(headers, method="post", authority="NODE-A.EXAMPLE:8443")


def test_empty_path_signs_as_slash() -> None:
    headers = sign(path="")
    verify(headers, path="/")


def test_label_is_not_significant() -> None:
    headers = sign(label="peer-req")
    assert headers["Signature-Input"].startswith("peer-req=(")
    verify(headers)


def test_other_time_within_window_verifies() -> None:
    headers = sign()
    verify(headers, now_s=NOW + 299)
    verify(headers, now_s=NOW - 300)


# --- header lookup ---------------------------------------------------------------


@pytest.mark.parametrize("case", [str.lower, str.upper, str.title])
def test_header_names_are_case_insensitive(case: object) -> None:
    assert callable(case)
    headers = {case(k): v for k, v in sign().items()}
    verify(headers)


def test_multidict_headers() -> None:
    verify(CIMultiDict(sign()))
    verify(MultiDict({k.lower(): v for k, v in sign().items()}))


def test_second_signature_input_line_is_not_hidden() -> None:
    headers = CIMultiDict(sign())
    headers.add("signature-input", sign(label="sig2", now_s=NOW + 1)["Signature-Input"])
    assert reason_of(headers) == "malformed"


def test_same_header_under_two_spellings_in_a_plain_dict() -> None:
    headers = sign()
    headers["signature-input"] = headers["Signature-Input"]
    assert reason_of(headers) == "malformed"  # duplicate label once combined


def test_surrounding_whitespace_is_trimmed() -> None:
    headers = {k: f"  {v}\t" for k, v in sign().items()}
    verify(headers)


# --- failure reasons -------------------------------------------------------------


@pytest.mark.parametrize("drop", ["Signature", "Signature-Input", "Content-Digest"])
def test_missing(drop: str) -> None:
    headers = sign()
    del headers[drop]
    assert reason_of(headers) == "missing"


def test_missing_everything() -> None:
    assert reason_of({}) == "missing"


MALFORMED_INPUTS = {
    "garbage": "sig1=garbage(",
    "empty": "",
    "not a list": 'sig1="@method"',
    "two labels": f"sig1={COMPONENTS}{std_params()}, sig2={COMPONENTS}{std_params()}",
    "duplicate label": f"sig1={COMPONENTS}{std_params()}, sig1={COMPONENTS}{std_params()}",
    "wrong order": '("@authority" "@method" "@path" "@query" "content-digest")' + std_params(),
    "missing digest": '("@method" "@authority" "@path" "@query")' + std_params(),
    "extra component": '("@method" "@authority" "@path" "@query" "content-digest" "date")'
    + std_params(),
    "component params": '("@method" "@authority" "@path" "@query";req "content-digest")'
    + std_params(),
    "component token": '(@method "@authority" "@path" "@query" "content-digest")' + std_params(),
    "no created": f'{COMPONENTS};expires={NOW};nonce="n";keyid="{KEY.node_id}"',
    "no expires": f'{COMPONENTS};created={NOW};nonce="n";keyid="{KEY.node_id}"',
    "no nonce": f'{COMPONENTS};created={NOW};expires={NOW + 1};keyid="{KEY.node_id}"',
    "no keyid": f'{COMPONENTS};created={NOW};expires={NOW + 1};nonce="n"',
    "empty nonce": f'{COMPONENTS};created={NOW};expires={NOW + 1};nonce="";keyid="{KEY.node_id}"',
    "wrong alg": f'{COMPONENTS};created={NOW};expires={NOW + 1};nonce="n";keyid="{KEY.node_id}";alg="rsa-pss-sha512"',
    "alg token": f'{COMPONENTS};created={NOW};expires={NOW + 1};nonce="n";keyid="{KEY.node_id}";alg=ed25519',
    "created string": f'{COMPONENTS};created="{NOW}";expires={NOW + 1};nonce="n";keyid="{KEY.node_id}"',
    "created boolean": f'{COMPONENTS};created;expires={NOW + 1};nonce="n";keyid="{KEY.node_id}"',
    "created decimal": f'{COMPONENTS};created={NOW}.5;expires={NOW + 1};nonce="n";keyid="{KEY.node_id}"',
    "keyid token": f'{COMPONENTS};created={NOW};expires={NOW + 1};nonce="n";keyid={KEY.node_id}',
    "unknown param": f'{COMPONENTS};created={NOW};expires={NOW + 1};nonce="n";keyid="{KEY.node_id}";x=1',
    "duplicate param": f'{COMPONENTS};created={NOW};created={NOW};expires={NOW + 1};nonce="n";keyid="{KEY.node_id}"',
    "non-ascii": f'{COMPONENTS};created={NOW};expires={NOW + 1};nonce="é";keyid="{KEY.node_id}"',
}


@pytest.mark.parametrize("value", MALFORMED_INPUTS.values(), ids=MALFORMED_INPUTS.keys())
def test_malformed_signature_input(value: str) -> None:
    headers = sign()
    # Bare inner lists get the usual label; the others are whole field values.
    headers["Signature-Input"] = "sig1=" + value if value.startswith("(") else value
    assert reason_of(headers) == "malformed"


@pytest.mark.parametrize(
    "value",
    [
        "sig1=:not base64!:",
        'sig1="text"',
        "sig1=:AAAA:, sig2=:AAAA:",
        "sig2=:AAAA:",  # label differs from Signature-Input
        "sig1=:AAAA:;p=1",
        "sig1",
    ],
)
def test_malformed_signature(value: str) -> None:
    headers = sign()
    headers["Signature"] = value
    assert reason_of(headers) == "malformed"


def test_malformed_content_digest() -> None:
    headers = sign()
    headers["Content-Digest"] = "sha-256=:abc"
    assert reason_of(headers) == "malformed"


def test_malformed_component_value() -> None:
    # A newline in a derived component could fake another line of the base.
    assert reason_of(sign(), path='/x\n"@query": ?') == "malformed"


def test_unknown_key() -> None:
    assert reason_of(sign(key=OTHER)) == "unknown-key"


@pytest.mark.parametrize("offset", [-301, 301])
def test_stale(offset: int) -> None:
    headers = sign(now_s=NOW + offset)
    assert reason_of(headers) == "stale"


def test_expired_at_expiry() -> None:
    headers = sign(now_s=NOW - 100, ttl_s=100)
    assert reason_of(headers) == "expired"  # expires == now


def test_expired_lifetime_too_long() -> None:
    assert reason_of(sign(ttl_s=301)) == "expired"


def test_expired_before_created() -> None:
    headers = hand_signed(std_params(created=NOW, expires=NOW - 1))
    assert reason_of(headers, now_s=NOW - 10) == "expired"


def test_hand_signed_base_agrees_with_module() -> None:
    # Our literal RFC 9421 base must be the one the module verifies.
    verify(hand_signed(std_params()))


def test_params_in_another_order_verify() -> None:
    # The base uses the parameters as received, not our preferred order.
    params = (
        f';keyid="{KEY.node_id}";alg="ed25519";nonce="{NONCE}";expires={NOW + 300};created={NOW}'
    )
    assert verify(hand_signed(params)).created == NOW


def test_alg_is_optional() -> None:
    params = f';created={NOW};expires={NOW + 300};nonce="{NONCE}";keyid="{KEY.node_id}"'
    verify(hand_signed(params))


@pytest.mark.parametrize(
    "digest",
    [
        "sha-512=:" + base64.b64encode(hashlib.sha512(b'{"ids":[]}').digest()).decode() + ":",
        "sha-256=:" + base64.b64encode(hashlib.sha256(b"other").digest()).decode() + ":",
        'sha-256="text"',
        "sha-256=:AAAA:",
    ],
)
def test_digest(digest: str) -> None:
    headers = sign()
    headers["Content-Digest"] = digest
    assert reason_of(headers) == "digest"


def test_bad_signature_bytes() -> None:
    headers = sign()
    headers["Signature"] = "sig1=:" + base64.b64encode(bytes(64)).decode() + ":"
    assert reason_of(headers) == "signature"


def test_signature_wrong_length() -> None:
    headers = sign()
    headers["Signature"] = "sig1=:AAAA:"
    assert reason_of(headers) == "signature"


def test_signature_by_another_key_under_our_keyid() -> None:
    headers = hand_signed(std_params(), key=OTHER)
    assert reason_of(headers) == "signature"


# --- order of checks --------------------------------------------------------------


def test_unknown_key_before_digest() -> None:
    assert reason_of(sign(key=OTHER), body=b"tampered") == "unknown-key"


def test_digest_before_signature() -> None:
    headers = sign()
    headers["Signature"] = "sig1=:" + base64.b64encode(bytes(64)).decode() + ":"
    assert reason_of(headers, body=b"tampered") == "digest"


def test_signature_before_time() -> None:
    headers = sign(now_s=NOW - 10_000)
    headers["Signature"] = "sig1=:" + base64.b64encode(bytes(64)).decode() + ":"
    assert reason_of(headers) == "signature"


def test_forged_times_do_not_pass_as_stale() -> None:
    # Moving created into the window without re-signing must fail the signature.
    headers = sign(now_s=NOW - 10_000)
    headers["Signature-Input"] = headers["Signature-Input"].replace(
        f"created={NOW - 10_000};expires={NOW - 9_700}", f"created={NOW};expires={NOW + 300}"
    )
    assert reason_of(headers) == "signature"


# --- tampering ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("method", "PUT", "signature"),
        ("path", "/federation/v1/push", "signature"),
        ("query", "limit=1", "signature"),
        ("authority", "node-b.example:8443", "signature"),
        ("body", b'{"ids":["x"]}', "digest"),
    ],
)
def test_tampering(field: str, value: object, reason: str) -> None:
    assert reason_of(sign(), **{field: value}) == reason


def test_tampering_with_digest_header_and_body_together() -> None:
    headers = sign()
    body = b'{"ids":["x"]}'
    headers["Content-Digest"] = content_digest(body)
    assert reason_of(headers, body=body) == "signature"


def test_tampering_with_empty_query_marker() -> None:
    headers = sign(query="a=1")
    assert reason_of(headers, query="") == "signature"


# --- local errors when signing ------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"path": "/a\nb"},
        {"path": "/ä"},
        {"nonce": ""},
        {"nonce": "a\nb"},
        {"label": "Sig1"},
        {"ttl_s": 0},
        {"authority": ""},
    ],
)
def test_sign_refuses_what_cannot_be_signed(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "method": "GET",
        "authority": AUTHORITY,
        "path": "/",
        "query": "",
        "body": b"",
        "key": KEY,
        "now_s": NOW,
        "nonce": NONCE,
    }
    args.update(kwargs)
    with pytest.raises(LocalProtocolError):
        sign_request(**args)  # type: ignore[arg-type]


# --- interop with the independent http-message-signatures package ------------------------


class _Request:
    """The request shape http-message-signatures reads: method, absolute url, headers."""

    def __init__(self, method: str, url: str, headers: Mapping[str, str]) -> None:
        self.method = method
        self.url = url
        # A plain dict is enough: the package matches names case-insensitively itself.
        self.headers: dict[str, str] = dict(headers)


class _FrozenDatetime(datetime.datetime):
    @classmethod
    def now(cls, tz: datetime.tzinfo | None = None) -> _FrozenDatetime:
        return cls.fromtimestamp(NOW + 10, tz=tz or datetime.UTC)


@pytest.fixture
def frozen_hms_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Their verifier reads the real clock; our tests use fixed times.
    fake = types.SimpleNamespace(
        datetime=_FrozenDatetime, timezone=datetime.timezone, timedelta=datetime.timedelta
    )
    monkeypatch.setattr(hms_signatures, "datetime", fake)
    yield


def _hms_resolver() -> MappingKeyResolver:
    return MappingKeyResolver(
        public_keys={KEY.node_id: Ed25519PublicKey.from_public_bytes(KEY.public)},
        private_keys={KEY.node_id: Ed25519PrivateKey.from_private_bytes(KEY.seed)},
    )


@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        ("GET", "/federation/v1/directory", "", b""),
        ("GET", "/federation/v1/feed", "after=0&limit=500", b""),
        ("POST", "/federation/v1/push", "", b'{"bundles":[]}'),
        ("POST", "/federation/v1/fetch", "x=%20y", b'{"ids":["a"]}'),
    ],
)
def test_interop_ours_verified_by_theirs(
    frozen_hms_clock: None, method: str, path: str, query: str, body: bytes
) -> None:
    headers = sign_request(
        method=method,
        authority=AUTHORITY,
        path=path,
        query=query,
        body=body,
        key=KEY,
        now_s=NOW,
        nonce=NONCE,
    )
    url = f"https://{AUTHORITY}{path}" + (f"?{query}" if query else "")
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519, key_resolver=_hms_resolver()
    )
    results = verifier.verify(
        _Request(method, url, headers),
        max_age=datetime.timedelta(seconds=300),
        require_components=COVERED_COMPONENTS,
        body=body,
    )
    assert len(results) == 1
    assert results[0].parameters["keyid"] == KEY.node_id
    assert results[0].nonce == NONCE
    assert results[0].body == body


@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        ("GET", "/federation/v1/directory", "", b""),
        ("GET", "/federation/v1/feed", "after=0&limit=500", b""),
        ("POST", "/federation/v1/push", "", b'{"bundles":[]}'),
    ],
)
def test_interop_theirs_verified_by_ours(method: str, path: str, query: str, body: bytes) -> None:
    url = f"https://{AUTHORITY}{path}" + (f"?{query}" if query else "")
    request = _Request(method, url, {})
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=_hms_resolver())
    signer.sign(
        request,
        key_id=KEY.node_id,
        created=datetime.datetime.fromtimestamp(NOW, tz=datetime.UTC),
        expires=datetime.datetime.fromtimestamp(NOW + 300, tz=datetime.UTC),
        nonce=NONCE,
        label="sig1",
        include_alg=True,
        covered_component_ids=COVERED_COMPONENTS,
        body=body,
    )
    headers = dict(request.headers.items())
    # They order the parameters created, keyid, alg, expires, nonce: a
    # different order from ours, which the base must follow as received.
    assert headers["Signature-Input"].startswith(f"sig1={COMPONENTS};created={NOW};keyid=")
    got = verify_request(
        method=method,
        authority=AUTHORITY,
        path=path,
        query=query,
        body=body,
        headers=headers,
        now_s=NOW + 10,
        public_key_for=keys_for,
    )
    assert got == VerifiedRequest(keyid=KEY.node_id, nonce=NONCE, created=NOW, expires=NOW + 300)


def test_interop_default_port_is_a_known_divergence(frozen_hms_clock: None) -> None:
    # RFC 9421 normalizes @authority by dropping a default port; we only lower-case
    # the Host value (we do not know the scheme). A Host of "x:443" over https
    # therefore signs differently from a peer that normalizes; cenmesh peers
    # must send the Host header exactly as they sign it.
    headers = sign_request(
        method="GET",
        authority="node-a.example:443",
        path="/",
        query="",
        body=b"",
        key=KEY,
        now_s=NOW,
        nonce=NONCE,
    )
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519, key_resolver=_hms_resolver()
    )
    with pytest.raises(HMSInvalidSignature):
        verifier.verify(_Request("GET", "https://node-a.example:443/", headers))


# --- properties ----------------------------------------------------------------------------

_VALID = sign()
_FRAGMENTS = [
    "sig1=",
    "sig2=",
    COMPONENTS,
    "(",
    ")",
    '"@method"',
    '"content-digest"',
    ";created=",
    ";expires=",
    ';nonce="',
    ';keyid="',
    ';alg="ed25519"',
    str(NOW),
    "-1",
    "999999999999999",
    "1.5",
    "?1",
    "@1",
    '%"',
    ":",
    "sha-256=",
    ":AAAA:",
    ", ",
    '"',
    "\\",
    " ",
    "\t",
    "*",
    "é",
    "\x00",
    _VALID["Signature-Input"],
    _VALID["Signature"],
    _VALID["Content-Digest"],
]
_header_text = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(_FRAGMENTS), max_size=12).map("".join),
    st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=4)), max_size=12).map("".join),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    # Mixing in the valid value of some headers lets the others reach the
    # later checks (unknown key, digest, signature) instead of stopping at parsing.
    signature_input=st.just(_VALID["Signature-Input"]) | _header_text,
    signature=st.just(_VALID["Signature"]) | _header_text,
    digest=st.just(_VALID["Content-Digest"]) | _header_text,
)
def test_random_headers_only_raise_invalid_signature(
    signature_input: str, signature: str, digest: str
) -> None:
    headers = {"Signature-Input": signature_input, "Signature": signature, "Content-Digest": digest}
    try:
        verify(headers)
    except InvalidSignature:
        return
    # Only the genuine headers, give or take surrounding whitespace, may verify.
    assert {k: v.strip(" \t") for k, v in headers.items()} == _VALID


@settings(max_examples=300)
@given(
    name=st.sampled_from(sorted(_VALID)),
    position=st.integers(min_value=0, max_value=400),
    char=st.characters(max_codepoint=0x7F) | st.sampled_from(["é", "\n", ""]),
)
def test_mutated_headers_pass_or_raise_invalid_signature(
    name: str, position: int, char: str
) -> None:
    headers = dict(_VALID)
    value = headers[name]
    position %= len(value)
    headers[name] = value[:position] + char + value[position + 1 :]
    try:
        got = verify(headers)
    except InvalidSignature:
        return
    # Only an equivalent encoding (e.g. whitespace, base64 padding) may still verify.
    assert got == verify(_VALID)
