"""Key files in the node's folder, readable only by the owner (mode 0600).

Layout::

    keys/identity.key          Ed25519 seed, hex
    keys/enc/<not_before>.key  X25519 private keys, hex; the newest is current,
                               older ones are kept for reading until their bundles expire
    descriptor.json            this node's current signed descriptor (with endorsements)
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from crypto.keys import EncryptionKey, IdentityKey
from protocol.descriptor import EncKey

KEY_LIFETIME_MS = 10 * 365 * 24 * 3600 * 1000


class KeyFileError(Exception):
    """A key file is missing, unreadable, malformed or too widely readable."""


def write_secret(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 from the start (never world-readable, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def read_secret(path: Path) -> bytes:
    """Read a hex key file, refusing one that others can read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(f"{path}: missing") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path}: readable by others (mode {oct(mode & 0o777)}); run chmod 600 {path}")
    try:
        raw = bytes.fromhex(path.read_text().strip())
    except ValueError:
        raise KeyFileError(f"{path}: not a hex key") from None
    if len(raw) != 32:
        raise KeyFileError(f"{path}: expected 32 bytes, found {len(raw)}")
    return raw


class KeyStore:
    """The node's keys and its own descriptor on disk."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.keys = self.home / "keys"

    def create_identity(self) -> IdentityKey:
        key = IdentityKey(os.urandom(32))
        write_secret(self.keys / "identity.key", key.seed.hex() + "\n")
        return key

    def identity(self) -> IdentityKey:
        return IdentityKey(read_secret(self.keys / "identity.key"))

    def add_encryption_key(self, not_before: int) -> EncryptionKey:
        key = EncryptionKey(os.urandom(32))
        write_secret(self.keys / "enc" / f"{not_before}.key", key.private.hex() + "\n")
        return key

    def _enc_files(self) -> list[tuple[int, Path]]:
        folder = self.keys / "enc"
        if not folder.is_dir():
            raise KeyFileError(f"{folder}: missing (no encryption keys)")
        files = sorted((int(p.stem), p) for p in folder.glob("*.key") if p.stem.isdigit())
        if not files:
            raise KeyFileError(f"{folder}: no encryption keys")
        return files

    def encryption_keys(self) -> list[EncryptionKey]:
        """Every retained private key, newest first (the order recipients try them)."""
        return [EncryptionKey(read_secret(p)) for _, p in reversed(self._enc_files())]

    def enc_windows(self) -> list[EncKey]:
        """Public keys with their windows: each key is used until the next one starts."""
        files = self._enc_files()
        out = []
        for i, (not_before, path) in enumerate(files):
            not_after = files[i + 1][0] - 1 if i + 1 < len(files) else not_before + KEY_LIFETIME_MS
            out.append(EncKey(EncryptionKey(read_secret(path)).public, not_before, not_after))
        return out


    @property
    def descriptor_path(self) -> Path:
        return self.home / "descriptor.json"

    def descriptor(self) -> dict[str, Any]:
        try:
            obj: dict[str, Any] = json.loads(self.descriptor_path.read_text())
        except FileNotFoundError:
            raise KeyFileError(f"{self.descriptor_path}: missing") from None
        return obj

    def save_descriptor(self, obj: dict[str, Any]) -> None:
        tmp = self.descriptor_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
        tmp.replace(self.descriptor_path)
