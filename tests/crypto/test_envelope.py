"""Sealed bundles: every single-byte change is rejected; garbage raises only remote-fault errors."""

from __future__ import annotations

import contextlib
import random

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from crypto.envelope import open_bundle, seal_box, seal_bundle, verify_bundle
from crypto.keys import EncryptionKey, IdentityKey
from protocol.bundle import Audience, check_times, parse_bundle
from protocol.canonical import canonical, parse_json
from protocol.errors import InvalidBundle, RecordRefused, RemoteProtocolError

NOW = 1_700_000_100_000


def _rng(seed: int):
    r = random.Random(seed)
    return lambda n: bytes(r.getrandbits(8) for _ in range(n))


ORIGIN = IdentityKey(bytes(range(32)))
ORIGIN_ENC = EncryptionKey(bytes(range(1, 33)))
READER = IdentityKey(bytes(range(2, 34)))
READER_ENC = EncryptionKey(bytes(range(3, 35)))

RECORD = {
    "id": "0b9f6f2e-4c1a-4f7e-9d35-2a0c7f1e9b11", "version": 1, "category": "drugs", "date": "2023-11-01",
    "office": {"name": "Tema Port", "locode": "GHTEM"}, "transport_mode": "sea", "detection_method": "dog",
    "concealment": "inside banana boxes", "commodity": {"description": "cocaine", "hs_code": "293999"},
    "quantity": {"amount": "250.5", "unit": "kg"}, "route": {"departure": "EC", "destination": "GH", "transit": []},
    "tlp": "AMBER",
}


def sealed(seed: int = 1, urgent: bool = False):
    return seal_bundle(
        identity=ORIGIN, kind="seizure", record=RECORD, audience=Audience("nodes", (READER.node_id,)),
        recipient_keys={ORIGIN.node_id: ORIGIN_ENC.public, READER.node_id: READER_ENC.public},
        created=NOW - 1000, expires=NOW + 86_400_000, urgent=urgent, rng=_rng(seed),
    )


def receive(data: bytes):
    """The whole receiving path of PROTOCOL.md 3.1 for a reader, from bytes."""
    bundle = parse_bundle(parse_json(data))
    if bundle.origin != ORIGIN.node_id:
        raise InvalidBundle("unknown-origin")
    verify_bundle(bundle, ORIGIN.public)
    check_times(bundle, NOW)
    return open_bundle(bundle, READER.node_id, [READER_ENC], now_ms=NOW)


def test_round_trip_for_every_recipient():
    b = sealed()
    assert receive(canonical(b.obj)).record == RECORD
    assert open_bundle(b, ORIGIN.node_id, [ORIGIN_ENC], now_ms=NOW).record == RECORD
    assert b.raw == canonical(b.obj) and len(b.id) == 43


def test_sealing_is_deterministic_given_the_random_source():
    assert sealed(7).obj == sealed(7).obj
    assert sealed(7).obj != sealed(8).obj


def test_our_sealed_box_opens_with_libsodium():
    import nacl.bindings as sodium

    box = seal_box(b"k" * 32, READER_ENC.public, bytes(range(100, 132)))
    assert sodium.crypto_box_seal_open(box, READER_ENC.public, READER_ENC.private) == b"k" * 32


def test_an_old_key_still_opens_after_rotation():
    newer = EncryptionKey(bytes(range(40, 72)))
    assert receive_with([newer, READER_ENC]).record == RECORD


def receive_with(keys):
    b = sealed()
    verify_bundle(b, ORIGIN.public)
    return open_bundle(b, READER.node_id, keys, now_ms=NOW)


def test_a_stranger_cannot_open():
    b = sealed()
    try:
        open_bundle(b, "n" + "a" * 24, [EncryptionKey(bytes(32))], now_ms=NOW)
    except InvalidBundle as exc:
        assert exc.reason == "not-recipient"
    else:
        raise AssertionError("opened by a non-recipient")


def test_personal_data_rule_refused_at_the_origin():
    record = {**RECORD, "parties": [{"role": "consignee", "name": "Acme Ltd"}], "tlp": "GREEN"}
    try:
        seal_bundle(identity=ORIGIN, kind="seizure", record=record, audience=Audience("federation"),
                    recipient_keys={ORIGIN.node_id: ORIGIN_ENC.public}, created=NOW, expires=NOW + 1000,
                    urgent=False, rng=_rng(1))
    except RecordRefused as exc:
        assert exc.field == "parties"
    else:
        raise AssertionError("sealed personal data to the federation")


BASE = canonical(sealed().obj)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(0, len(BASE) - 1), value=st.integers(0, 255))
def test_any_single_byte_change_is_rejected(position, value):
    if BASE[position] == value:
        value = (value + 1) % 256
    mutated = BASE[:position] + bytes([value]) + BASE[position + 1:]
    try:
        receive(mutated)
    except RemoteProtocolError:
        return
    raise AssertionError(f"byte {position} changed to {value} was accepted")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=20) | st.floats(allow_nan=True),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_random_json_raises_only_remote_errors(value):
    with contextlib.suppress(RemoteProtocolError):
        parse_bundle(value)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(sorted(sealed().obj)), value=json_values)
def test_mutated_bundles_raise_only_remote_errors(key, value):
    obj = dict(sealed().obj)
    assume(not (type(value) is type(obj[key]) and value == obj[key]))  # an unchanged bundle is valid
    obj[key] = value
    try:
        receive(canonical(obj) if _encodable(obj) else b"{")
    except RemoteProtocolError:
        return
    raise AssertionError(f"bundle with {key}={value!r} accepted")


def _encodable(obj) -> bool:
    try:
        canonical(obj)
        return True
    except RemoteProtocolError:
        return False


def test_version_must_be_the_integer_one():
    for v in (1.0, True, "1", 2):
        obj = {**sealed().obj, "v": v}
        try:
            parse_bundle(obj)
        except InvalidBundle as exc:
            assert exc.reason == "shape"
        else:
            raise AssertionError(f"v={v!r} accepted")
