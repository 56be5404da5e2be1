"""Typed node settings: ``node.toml`` plus a ``CENMESH_*`` environment overlay, validated once.

Strict and frozen (after Synapse's ParseModel): an unknown key, a typo or a
value of the wrong type fails at start with the setting's dotted name, e.g.
``node.toml: sync.interval_s: Input should be greater than or equal to 5``.
Environment overrides use double underscores for nesting:
``CENMESH_SYNC__INTERVAL_S=10``, ``CENMESH_SERVER__LISTEN=0.0.0.0:8443``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "CENMESH_"


class SettingsError(Exception):
    """node.toml or the environment holds a bad setting; the message names it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class NodeSection(_Strict):
    """Who this node is. Its id is derived from the identity key, never configured."""

    name: str = Field(min_length=1, max_length=200)
    country: str = Field(pattern=r"^[A-Z]{2}$")
    role: Literal["national", "hub"]
    regions: list[str] = Field(min_length=1)
    public_url: str = Field(pattern=r"^https?://[^\s/]+(/[^\s]*)?$")

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: list[str]) -> list[str]:
        for region in value:
            if not re.fullmatch(r"[A-Z]{2,5}", region):
                raise ValueError(f"{region!r} is not a region code (2-5 capital letters)")
        return value


class ServerSection(_Strict):
    """Where the node listens, and optional TLS."""

    listen: str = Field(default="127.0.0.1:8700", pattern=r"^[A-Za-z0-9.\-:\[\]]+:[0-9]{1,5}$")
    tls_cert: str | None = None
    tls_key: str | None = None
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    requests_per_minute: int = Field(default=600, ge=1, description="per peer, federation API")

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


class SyncSection(_Strict):
    """Scheduled pull sync with peers."""

    interval_s: int = Field(default=30, ge=1, le=86400)
    jitter_s: int = Field(default=5, ge=0, le=3600)
    request_timeout_s: int = Field(default=30, ge=1, le=600)
    ca_file: str | None = Field(default=None, description="extra CA bundle for https:// peers")
    directory_every: int = Field(default=10, ge=1, description="refresh directories every N rounds")
    verify_processes: int | None = Field(default=None, ge=1, le=64,
                                         description="worker processes for checking large batches (default: one per core)")


class ProtocolSection(_Strict):
    """Limits from PROTOCOL.md that an operator may tighten."""

    max_bundle_bytes: int = Field(default=262_144, ge=4096, le=262_144)
    bundle_lifetime_days: int = Field(default=365, ge=1, le=400)
    key_rotation_days: int = Field(default=30, ge=1, le=400)


class StoreSection(_Strict):
    """The SQLite database."""

    path: str = "node.db"
    max_size_mb: int | None = Field(default=None, ge=1, description="cap the database (PRAGMA max_page_count)")


class Settings(_Strict):
    """Everything a node reads at start. ``home`` is the node's folder."""

    home: str
    node: NodeSection
    server: ServerSection = ServerSection()
    sync: SyncSection = SyncSection()
    protocol: ProtocolSection = ProtocolSection()
    store: StoreSection = StoreSection()

    def path(self, relative: str) -> Path:
        """A path inside the node's folder (absolute paths are kept)."""
        p = Path(relative)
        return p if p.is_absolute() else Path(self.home) / p


def _env_overlay(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX):].lower().split("__")
        if len(parts) != 2:
            continue
        section, key = parts
        value: Any = raw
        if re.fullmatch(r"-?[0-9]+", raw):
            value = int(raw)
        merged.setdefault(section, {})
        if isinstance(merged[section], dict):
            merged[section][key] = value
    return merged


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        lines.append(f"{where}: {err['msg']}")
    return "; ".join(lines)


def parse_settings(data: dict[str, Any], home: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """Validate a settings mapping (as read from TOML) with the environment laid over it."""
    merged = _env_overlay(data, os.environ if env is None else env)
    if "home" in merged:
        raise SettingsError("node.toml: home: is not a setting (it is the folder node.toml is in)")
    try:
        return Settings.model_validate({**merged, "home": str(home)})
    except ValidationError as exc:
        raise SettingsError(f"node.toml: {_describe(exc)}") from None


def load_settings(home: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read ``HOME/node.toml``; raises SettingsError naming the file, line or setting at fault."""
    path = Path(home) / "node.toml"
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SettingsError(f"{path}: not found (create it with 'cenmesh init --home {home}')") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    return parse_settings(data, home, env)


def render_settings(settings: Settings) -> str:
    """Write settings back as TOML (used by ``cenmesh init``); None values are left out."""
    out = []
    for section in ("node", "server", "sync", "protocol", "store"):
        out.append(f"[{section}]")
        for key, value in getattr(settings, section).model_dump().items():
            if value is None:
                continue
            out.append(f"{key} = {_toml_value(value)}")
        out.append("")
    return "\n".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
