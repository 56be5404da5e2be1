"""Node keys: the Ed25519 identity key and X25519 encryption keys (PROTOCOL.md section 2).

Keys are plain 32-byte values so that callers decide where they live; this
module never reads files, clocks or random sources. Fresh keys come from
``generate_*(rng=...)`` where ``rng(n)`` returns n random bytes (the node
passes ``os.urandom``; tests pass a seeded source).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import nacl.bindings as sodium
from nacl.exceptions import BadSignatureError
from nacl.exceptions import ValueError as NaclValueError

from protocol.canonical import b64u_encode

Rng = Callable[[int], bytes]


def node_id_for(identity_public: bytes) -> str:
    """``"n" + base32(sha256(identity_public_key)[:15])``, lower case, no padding."""
    digest = hashlib.sha256(identity_public).digest()[:15]
    return "n" + base64.b32encode(digest).decode("ascii").lower()


@dataclass(frozen=True)
class IdentityKey:
    """An Ed25519 signing key held as its 32-byte seed."""

    seed: bytes = field(repr=False)
    public: bytes = field(init=False)
    _secret: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        public, secret = sodium.crypto_sign_seed_keypair(self.seed)
        object.__setattr__(self, "public", public)
        object.__setattr__(self, "_secret", secret)

    @property
    def node_id(self) -> str:
        """The node id derived from this key; it never changes."""
        return node_id_for(self.public)

    @property
    def public_b64u(self) -> str:
        """The public key as written in a descriptor."""
        return b64u_encode(self.public)

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""
        signed: bytes = sodium.crypto_sign(message, self._secret)
        return signed[:64]


def generate_identity(rng: Rng) -> IdentityKey:
    """A fresh identity key from ``rng``."""
    return IdentityKey(rng(32))


def verify_ed25519(public: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` by ``public``."""
    if len(public) != 32 or len(signature) != 64:
        return False
    try:
        sodium.crypto_sign_open(signature + message, public)
    except (BadSignatureError, NaclValueError, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True)
class EncryptionKey:
    """An X25519 private key used to open sealed-box key wraps."""

    private: bytes = field(repr=False)
    public: bytes = field(init=False)

    def __post_init__(self) -> None:
        if len(self.private) != 32:
            raise ValueError("an X25519 private key is 32 bytes")
        object.__setattr__(self, "public", sodium.crypto_scalarmult_base(self.private))

    @property
    def public_b64u(self) -> str:
        """The public key as written in a descriptor's ``enc_keys``."""
        return b64u_encode(self.public)


def generate_encryption_key(rng: Rng) -> EncryptionKey:
    """A fresh X25519 key from ``rng``."""
    return EncryptionKey(rng(32))
