"""Every vector in tests/vectors (a copy of ../shared/vectors) reproduces exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crypto.descriptor import check_descriptor, endorse, make_descriptor, self_signed
from crypto.envelope import open_bundle, seal_bundle_with, verify_bundle
from crypto.keys import EncryptionKey, IdentityKey
from protocol.audience import origin_acceptable
from protocol.bundle import Audience, check_times, parse_bundle
from protocol.canonical import b64u_decode, canonical, parse_json
from protocol.descriptor import parse_descriptor
from protocol.errors import InvalidBundle, MalformedJSON, RemoteProtocolError
from tests.conftest import load_vector

ENCODING = load_vector("encoding.json")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "vectors"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/vectors not beside this checkout")
def test_copy_matches_shared_vectors():
    for name in ("encoding.json", "nodes.json", "bundles.json"):
        assert json.loads((SHARED / name).read_text()) == load_vector(name), name


@pytest.mark.parametrize("case", ENCODING["canonical"])
def test_canonical_forms(case):
    assert canonical(case["input"]) == case["canonical"].encode("utf-8")
    assert canonical(parse_json(case["canonical"])) == case["canonical"].encode("utf-8")


@pytest.mark.parametrize("case", ENCODING["canonical_reject"], ids=lambda c: c["why"])
def test_canonical_rejects(case):
    with pytest.raises(MalformedJSON):
        parse_json(case["input_json"])


@pytest.mark.parametrize("text", ENCODING["b64u_reject"])
def test_b64u_rejects(text):
    with pytest.raises(MalformedJSON):
        b64u_decode(text)


def _directory(node_vectors):
    return {n["node_id"]: parse_descriptor(n["descriptor"]) for n in node_vectors}


def test_node_ids_and_descriptor_signatures(node_vectors):
    hub = next(n for n in node_vectors if n["descriptor"]["role"] == "hub")
    anchors = {hub["node_id"]: IdentityKey(bytes.fromhex(hub["identity_seed_hex"])).public}
    for n in node_vectors:
        key = IdentityKey(bytes.fromhex(n["identity_seed_hex"]))
        assert key.node_id == n["node_id"]
        descriptor = parse_descriptor(n["descriptor"])
        assert self_signed(descriptor)
        check_descriptor(descriptor, anchors=anchors)
        # Signing the same content again reproduces sig and endorsement byte for byte (Ed25519 is deterministic).
        d = n["descriptor"]
        remade = make_descriptor(
            key, seq=d["seq"], name=d["name"], country=d["country"], role=d["role"],
            regions=d["regions"], endpoints=d["endpoints"], enc_keys=descriptor.enc_keys, issued=d["issued"],
        )
        assert remade.obj["sig"] == d["sig"]
        for e in d["endorsements"]:
            anchor = next(m for m in node_vectors if m["node_id"] == e["by"])
            again = endorse(remade, IdentityKey(bytes.fromhex(anchor["identity_seed_hex"])))
            assert again.obj["endorsements"] == d["endorsements"]


def test_valid_bundle_id_verify_and_open(bundle_vectors, node_vectors):
    valid = bundle_vectors["valid"]
    now = bundle_vectors["now"]
    directory = _directory(node_vectors)
    bundle = parse_bundle(valid["bundle"])
    assert bundle.id == valid["id"]
    assert origin_acceptable(bundle.origin, bundle.created, directory) is None
    verify_bundle(bundle, directory[bundle.origin].identity_key)
    check_times(bundle, now)
    for reader in (valid["recipient"], valid["origin"]):
        priv = next(n["enc_private_hex"] for n in node_vectors if n["node_id"] == reader)
        payload = open_bundle(bundle, reader, [EncryptionKey(bytes.fromhex(priv))], now_ms=now)
        assert payload.to_json() == valid["payload"]


def test_valid_bundle_reseals_identically_with_its_cek(bundle_vectors, node_vectors):
    """Sealing the vector payload with the vector's CEK and nonce reproduces ct (the wraps are random)."""
    valid = bundle_vectors["valid"]
    origin = next(n for n in node_vectors if n["node_id"] == valid["origin"])
    directory = _directory(node_vectors)
    original = parse_bundle(valid["bundle"])
    keys = {r: directory[r].enc_key_at(original.created) for r in original.recipient_ids}
    resealed = seal_bundle_with(
        identity=IdentityKey(bytes.fromhex(origin["identity_seed_hex"])),
        kind=valid["payload"]["kind"], record=valid["payload"]["record"],
        audience=Audience.from_json(valid["payload"]["audience"]), recipient_keys=keys,
        created=original.created, expires=original.expires, urgent=False,
        cek=bytes.fromhex(valid["cek_hex"]), nonce=original.nonce, ephemeral_keys=[bytes([7] * 32)] * len(keys),
    )
    # The header differs in its wraps, so H and ct differ; the opened payload is the same.
    reader = valid["recipient"]
    priv = next(n["enc_private_hex"] for n in node_vectors if n["node_id"] == reader)
    payload = open_bundle(resealed, reader, [EncryptionKey(bytes.fromhex(priv))], now_ms=bundle_vectors["now"])
    assert payload.to_json() == valid["payload"]


def _accept(obj, directory, now):
    bundle = parse_bundle(obj)
    reason = origin_acceptable(bundle.origin, bundle.created, directory)
    if reason:
        raise InvalidBundle(reason)
    verify_bundle(bundle, directory[bundle.origin].identity_key)
    check_times(bundle, now)
    return bundle


EXPECTED_REASON = {
    "ciphertext changed: signature fails": "signature",
    "header changed: signature fails": "signature",
    "signed by another node than origin": "signature",
    "unknown field": "shape",
    "recipients not sorted": "shape",
    "float in bundle": "shape",
}


@pytest.mark.parametrize("index", range(6))
def test_rejected_bundles(index, bundle_vectors, node_vectors):
    case = bundle_vectors["reject"][index]
    with pytest.raises(InvalidBundle) as info:
        _accept(case["bundle"], _directory(node_vectors), bundle_vectors["now"])
    assert info.value.reason == EXPECTED_REASON[case["why"]]


def test_every_reject_has_an_expected_reason(bundle_vectors):
    assert {c["why"] for c in bundle_vectors["reject"]} == set(EXPECTED_REASON)


def test_reject_on_open(bundle_vectors, node_vectors):
    directory = _directory(node_vectors)
    valid = bundle_vectors["valid"]
    priv = next(n["enc_private_hex"] for n in node_vectors if n["node_id"] == valid["recipient"])
    for case in bundle_vectors["reject_on_open"]:
        bundle = _accept(case["bundle"], directory, bundle_vectors["now"])  # a relay accepts it
        with pytest.raises(InvalidBundle) as info:
            open_bundle(bundle, valid["recipient"], [EncryptionKey(bytes.fromhex(priv))], now_ms=bundle_vectors["now"])
        assert info.value.reason == "decrypt"
        assert isinstance(info.value, RemoteProtocolError)
