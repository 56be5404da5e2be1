"""``cenmesh inspect``: explain a rejected or puzzling bundle to an operator.

Runs the checks of PROTOCOL.md section 3.1 one by one against a bundle file
and its origin's descriptor, and with a private key also opens it. Exit 0
when the bundle is valid (and opened, if a key was given), 1 with a reason
code when it is rejected, 2 for bad usage.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crypto.descriptor import self_signed
from crypto.envelope import open_bundle, verify_bundle
from crypto.keys import EncryptionKey
from protocol.bundle import check_times, parse_bundle
from protocol.canonical import parse_json
from protocol.descriptor import parse_descriptor
from protocol.errors import InvalidBundle, InvalidDescriptor, MalformedJSON


class UsageError(Exception):
    """The operator's command line or files are wrong (exit 2)."""


@dataclass
class Report:
    """What inspect found, in the order it checked."""

    checks: list[tuple[str, str, str]] = field(default_factory=list)  # (step, "ok"/"FAIL"/"skip", note)
    header: dict[str, Any] | None = None
    bundle_id: str | None = None
    payload: dict[str, Any] | None = None
    reason: str | None = None

    def step(self, name: str, status: str, note: str = "") -> None:
        self.checks.append((name, status, note))

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.reason is None, "reason": self.reason, "id": self.bundle_id, "header": self.header,
            "checks": [{"step": s, "result": r, "note": n} for s, r, n in self.checks], "payload": self.payload,
        }


def read_file(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{what} {path}: {exc.strerror}") from None


def read_json_file(path: str, what: str) -> Any:
    try:
        return parse_json(read_file(path, what))
    except MalformedJSON as exc:
        raise UsageError(f"{what} {path}: {exc}") from None


def read_private_key(path: str) -> EncryptionKey:
    try:
        text = Path(path).read_text().strip()
        return EncryptionKey(bytes.fromhex(text))
    except OSError as exc:
        raise UsageError(f"--enc-key {path}: {exc.strerror}") from None
    except ValueError:
        raise UsageError(f"--enc-key {path}: expected 64 hex characters (a 32-byte X25519 private key)") from None


def inspect_bundle(bundle_bytes: bytes, descriptor_obj: Any, *, now_ms: int,
                   key: EncryptionKey | None = None, reader: str | None = None) -> Report:
    """Run every check and record each outcome; stops at the first failure like ingest does."""
    report = Report()
    try:
        json.loads(bundle_bytes)
    except ValueError as exc:
        raise UsageError(f"bundle: not a JSON file ({exc})") from None
    try:
        descriptor = parse_descriptor(descriptor_obj)
    except InvalidDescriptor as exc:
        raise UsageError(f"--descriptor: not a valid descriptor ({exc})") from None
    if not self_signed(descriptor):
        raise UsageError("--descriptor: its signature does not verify with its identity key")
    try:
        try:
            bundle_obj = parse_json(bundle_bytes)
        except MalformedJSON as exc:  # JSON, but not JSON this protocol accepts (a float, say)
            raise InvalidBundle("shape", str(exc)) from None
        bundle = parse_bundle(bundle_obj)
        report.header, report.bundle_id = bundle.header(), bundle.id
        report.step("size and shape", "ok", f"{bundle.size} bytes, {len(bundle.recipients)} recipients")
        if descriptor.node != bundle.origin:
            raise InvalidBundle("unknown-origin", f"descriptor is for {descriptor.node}, bundle origin is {bundle.origin}")
        if descriptor.revoked and bundle.created > descriptor.issued:
            raise InvalidBundle("revoked-origin", "created after the origin's revocation")
        report.step("origin", "ok", f"{descriptor.name} ({descriptor.country}, {descriptor.role})")
        verify_bundle(bundle, descriptor.identity_key)
        report.step("signature", "ok", "Ed25519 by the origin's identity key")
        check_times(bundle, now_ms)
        report.step("time", "ok", f"created {bundle.created}, expires {bundle.expires}, now {now_ms}")
        if key is not None and reader is not None:
            payload = open_bundle(bundle, reader, [key], now_ms=now_ms)
            report.payload = payload.to_json()
            report.step("open", "ok", f"{payload.kind} record {payload.record.get('id')}")
        else:
            report.step("open", "skip", "no --enc-key/--as given")
    except InvalidBundle as exc:
        report.reason = exc.reason
        report.step(_STEP_OF.get(exc.reason, exc.reason), "FAIL", str(exc))
    return report


_STEP_OF = {
    "shape": "size and shape", "too-large": "size and shape", "unknown-origin": "origin",
    "revoked-origin": "origin", "signature": "signature", "from-future": "time", "expired": "time",
    "lifetime": "time", "not-recipient": "open", "decrypt": "open", "payload": "open",
}


def render(report: Report) -> str:
    """The human-readable form."""
    lines = []
    if report.bundle_id:
        lines.append(f"bundle   {report.bundle_id}")
    if report.header:
        h = report.header
        lines += [
            f"origin   {h['origin']}",
            f"created  {h['created']}   expires {h['expires']}   urgent {h['urgent']}",
            f"audience {json.dumps(h['audience'], ensure_ascii=False)}",
            f"readers  {', '.join(r['node'] for r in h['recipients'])}",
        ]
    lines.append("")
    width = max(len(s) for s, _, _ in report.checks)
    lines += [f"  {r:<4}  {s:<{width}}  {n}" for s, r, n in report.checks]
    if report.payload is not None:
        lines += ["", json.dumps(report.payload, indent=2, ensure_ascii=False, sort_keys=True)]
    lines += ["", "VALID" if report.reason is None else f"REJECTED: {report.reason}"]
    return "\n".join(lines)


def run(args: Any) -> int:
    """Entry point for the CLI: returns the exit code."""
    if (args.enc_key is None) != (args.as_node is None):
        raise UsageError("--enc-key and --as go together")
    report = inspect_bundle(
        read_file(args.bundle, "bundle"), read_json_file(args.descriptor, "--descriptor"),
        now_ms=args.now if args.now is not None else int(time.time() * 1000),
        key=read_private_key(args.enc_key) if args.enc_key else None, reader=args.as_node,
    )
    print(json.dumps(report.to_json(), ensure_ascii=False) if args.json else render(report))
    return 0 if report.reason is None else 1
