"""Seal, verify and open bundles exactly as PROTOCOL.md section 3.

Every way a bundle can be forged or damaged surfaces as one
``InvalidBundle(reason)``. Randomness (content key, nonce, the ephemeral keys
of the sealed boxes) comes from the caller's ``rng`` or, in the test twin,
is passed in whole, so sealing is a pure function of its inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from hashlib import sha256 as _sha256
from typing import Any

import nacl.bindings as sodium
from nacl.exceptions import CryptoError

from crypto.keys import EncryptionKey, IdentityKey, Rng, verify_ed25519
from protocol.bundle import (
    NONCE_BYTES,
    Audience,
    Bundle,
    Payload,
    header_hash,
    parse_bundle,
    unsigned_parts,
)
from protocol.canonical import b64u_encode, dumps_unchecked
from protocol.errors import InvalidBundle, InvalidRecord, RecordRefused
from protocol.fastpayload import payload_from_plaintext
from protocol.records import check_personal_data, validate_record

CEK_BYTES = 32


def seal_box(message: bytes, recipient_public: bytes, ephemeral_private: bytes) -> bytes:
    """libsodium ``crypto_box_seal`` with the ephemeral key supplied by the caller.

    Same bytes as libsodium would produce for that ephemeral key:
    ``epk || crypto_box(m, blake2b-24(epk || pk), pk, esk)``; any libsodium
    ``crypto_box_seal_open`` opens it.
    """
    ephemeral_public = sodium.crypto_scalarmult_base(ephemeral_private)
    nonce = sodium.crypto_generichash_blake2b_salt_personal(
        ephemeral_public + recipient_public, digest_size=24
    )
    boxed: bytes = sodium.crypto_box(message, nonce, recipient_public, ephemeral_private)
    return ephemeral_public + boxed


def seal_bundle(
    *,
    identity: IdentityKey,
    kind: str,
    record: dict[str, Any],
    audience: Audience,
    recipient_keys: Mapping[str, bytes],
    created: int,
    expires: int,
    urgent: bool,
    rng: Rng,
) -> Bundle:
    """Validate ``record`` and seal it to ``recipient_keys`` (node id -> X25519 public)."""
    return seal_bundle_with(
        identity=identity, kind=kind, record=record, audience=audience,
        recipient_keys=recipient_keys, created=created, expires=expires, urgent=urgent,
        cek=rng(CEK_BYTES), nonce=rng(NONCE_BYTES),
        ephemeral_keys=[rng(32) for _ in recipient_keys],
    )


def seal_bundle_with(
    *,
    identity: IdentityKey,
    kind: str,
    record: dict[str, Any],
    audience: Audience,
    recipient_keys: Mapping[str, bytes],
    created: int,
    expires: int,
    urgent: bool,
    cek: bytes,
    nonce: bytes,
    ephemeral_keys: Sequence[bytes],
) -> Bundle:
    """The deterministic twin of seal_bundle: every random input is passed in.

    Raises RecordRefused when the record is invalid or breaks the personal-data
    rule, and ValueError for a malformed recipient set (our own caller's bug).
    """
    try:
        validate_record(kind, record, now_ms=created)
        check_personal_data(kind, record, audience.scope)
    except InvalidRecord as exc:
        raise RecordRefused(exc.field, exc.why) from None
    origin = identity.node_id
    if origin not in recipient_keys:
        raise ValueError("the origin must be one of the recipients")
    if len(cek) != CEK_BYTES or len(nonce) != NONCE_BYTES or len(ephemeral_keys) != len(recipient_keys):
        raise ValueError("wrong size of content key, nonce or ephemeral key list")
    recipients = [
        {"node": node, "wrap": b64u_encode(seal_box(cek, recipient_keys[node], esk))}
        for node, esk in zip(sorted(recipient_keys), ephemeral_keys, strict=True)
    ]
    header: dict[str, Any] = {
        "v": 1, "origin": origin, "created": created, "expires": expires,
        "audience": audience.to_json(), "urgent": urgent,
        "recipients": recipients, "nonce": b64u_encode(nonce),
    }
    payload = Payload(origin, audience, kind, record).to_json()
    # validate_record type-checked every member of the record (and the rest is
    # ours), so the recursive walk of canonical() would find nothing.
    plaintext = dumps_unchecked(payload)
    ct = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, header_hash(header), nonce, cek)
    unsigned = {**header, "ct": b64u_encode(ct)}
    _, signed = unsigned_parts(unsigned)
    # The parse (its exact fast path) is the self-check that what we send is
    # what a receiver accepts, and it refuses our caller's bad times or flags.
    return parse_bundle({**unsigned, "sig": b64u_encode(identity.sign(signed))})


def verify_bundle(bundle: Bundle, origin_identity_key: bytes) -> None:
    """Step 4 of section 3.1: the origin's signature. Raises InvalidBundle('signature')."""
    if not verify_ed25519(origin_identity_key, bundle.signed_bytes, bundle.sig):
        raise InvalidBundle("signature", f"bundle {bundle.id} from {bundle.origin}")


def unwrap_key(bundle: Bundle, node: str, keys: Sequence[EncryptionKey]) -> bytes:
    """Recover the content key with the first of ``keys`` (newest first) that opens our wrap."""
    wrap = bundle.wrap_for(node)
    if wrap is None:
        raise InvalidBundle("not-recipient", f"{node} is not a recipient of {bundle.id}")
    for key in keys:
        try:
            cek: bytes = sodium.crypto_box_seal_open(wrap, key.public, key.private)
        except CryptoError:
            continue
        if len(cek) == CEK_BYTES:
            return cek
    raise InvalidBundle("decrypt", f"no retained key opens the wrap of {bundle.id}")


def open_bundle(bundle: Bundle, node: str, keys: Sequence[EncryptionKey], *, now_ms: int) -> Payload:
    """Decrypt and validate the payload of an already verified bundle (section 3.1, recipient part).

    Raises InvalidBundle with reason ``not-recipient``, ``decrypt`` or ``payload``.
    """
    cek = unwrap_key(bundle, node, keys)
    try:
        # H = sha256(domain + canonical(header)), hashed here: only a recipient needs it, once.
        aad = _sha256(bundle.header_bytes).digest()
        plaintext = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(bundle.ct, aad, bundle.nonce, cek)
    except CryptoError:
        raise InvalidBundle("decrypt", f"AEAD check fails for {bundle.id}") from None
    payload = payload_from_plaintext(plaintext, bundle.audience, bundle.origin, now_ms=now_ms)
    # The fast path hands back the header's own Audience when the two agree: identity first.
    if payload.origin != bundle.origin or (payload.audience is not bundle.audience and payload.audience != bundle.audience):
        raise InvalidBundle("payload", "payload origin or audience differs from the header")
    return payload
