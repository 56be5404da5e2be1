"""Benchmark sealing, verifying and opening bundles beside the raw libsodium calls they are made of.

Run it as ``scripts/bench crypto [--quick] [--rounds N] [--batch-seconds S]``.

For each operation and recipient count, "ours" is the library path and "raw"
is only the libsodium (and sha256) calls that path cannot avoid, on inputs of
the same sizes, measured in the same run:

- seal (1, 10, 50 recipients): ``crypto.envelope.seal_bundle`` with
  ``rng=os.urandom`` (record validation, canonical JSON, b64u, and the final
  ``parse_bundle``) beside one ``crypto_box_seal`` of a 32-byte key per
  recipient, one XChaCha20-Poly1305 encryption of a payload-sized plaintext,
  one Ed25519 ``crypto_sign`` of a message of the signed size, and one sha256
  of a header-sized message.
- verify (2, 10, 50): the relay path from the bundle's JSON text, as a node
  receives it (a fetch or push answer is cut into the bundles' own texts):
  ``parse_bundle`` + ``verify_bundle`` + ``check_times``, beside one
  ``crypto_sign_open`` and the sha256 of the signed body that gives the bundle
  id (PROTOCOL.md section 3: a receiver needs the id to know the bundle and
  no field carries it).
- open (2, 10, 50): the whole receiving path, ``parse_bundle`` +
  ``verify_bundle`` + ``check_times`` + ``open_bundle`` for the first
  non-origin recipient, beside ``crypto_sign_open`` + the id's sha256 +
  ``crypto_box_seal_open`` of that reader's wrap + the sha256 that makes the
  AEAD's associated data ``H`` from the header's canonical bytes + the AEAD
  decryption with ``H`` as aad. The two sha256 are there because PROTOCOL.md
  section 3 defines the id and ``aad = H = sha256(domain + canonical(header))``
  and no field carries either: every recipient must hash what it received
  (as the seal side's raw reference includes the sender's sha256 of the
  header).
  The 2-recipient bundle (origin and one reader, like the test vector) is the
  headline: ``ratio_open_vs_raw = open_per_s / raw_open_per_s``.

Timing: each side runs in batches of N calls (N calibrated to about
``--batch-seconds``), in R rounds that alternate ours and raw (the order flips
every round) so both see the same noise; the cyclic GC is off inside a batch,
as with timeit. Ops/s come from the median per-call time of each side.
Many short rounds rather than a few long ones: on a shared machine a slow
spell then spoils a few pairs rather than one side of a round that weighs a
seventh of the result. On this 2-core machine, four runs of 31 rounds of
0.07 s gave ratios of 0.797 to 0.804 where four runs of 7 rounds of 0.3 s
(the old default, same total time) gave 0.695 to 0.835.
``--clock cpu`` times batches with this thread's CPU time instead of the wall
clock: on a machine shared with other jobs, time spent descheduled then
counts for neither side (cache pollution by the other jobs still does).

The last line printed is one JSON object. The exit status is 0 whether or not
the target is met: this is a measurement, not a test.
"""

# ruff: noqa: E402  (the imports below follow the sys.path set-up)

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import nacl
import nacl.bindings as sodium
from benchlib import cpu_model  # scripts/ is on the path when a script runs

from crypto.envelope import open_bundle, seal_bundle, verify_bundle
from crypto.keys import EncryptionKey, IdentityKey
from protocol.bundle import BUNDLE_DOMAIN, Audience, Bundle, check_times, parse_bundle
from protocol.canonical import canonical

TARGET_RATIO_OPEN = 0.8
SEAL_SIZES = (1, 10, 50)
OPEN_SIZES = (2, 10, 50)
HEADLINE_OPEN = 2

CREATED = 1_700_000_000_000
EXPIRES = CREATED + 30 * 24 * 3600 * 1000
NOW = CREATED + 60_000

# The shape of the seizure in tests/vectors/bundles.json (valid.payload.record).
RECORD: dict[str, Any] = {
    "id": "0b9f6f2e-4c1a-4f7e-9d35-2a0c7f1e9b11",
    "version": 1,
    "category": "medicines",
    "date": "2020-03-24",
    "office": {"name": "Lagos Apapa Port", "locode": "NGAPP"},
    "transport_mode": "sea",
    "detection_method": "risk-profiling",
    "concealment": "declared as textiles, masks inside cartons of T-shirts",
    "commodity": {
        "description": "surgical face masks, counterfeit CE marking",
        "hs_code": "630790",
        "brand": "3M",
    },
    "quantity": {"amount": "120000", "unit": "pieces"},
    "route": {"departure": "CN", "destination": "NG", "transit": ["TG"]},
    "conveyance": {"container": "CSQU3054383"},
    "tlp": "AMBER",
}


# --- Fixtures ----------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    identity: IdentityKey
    enc: EncryptionKey

    @property
    def id(self) -> str:
        return self.identity.node_id


def make_nodes(count: int, seed: int = 20240601) -> list[Node]:
    """``count`` nodes with deterministic keys; the first is the origin."""
    rnd = random.Random(seed)
    return [
        Node(IdentityKey(rnd.randbytes(32)), EncryptionKey(rnd.randbytes(32))) for _ in range(count)
    ]


@dataclass(frozen=True)
class Setup:
    """Everything one recipient count needs, built once, outside the timing."""

    count: int
    origin: Node
    reader: Node
    audience: Audience
    recipient_keys: dict[str, bytes]
    bundle: Bundle
    wire: bytes
    payload_bytes: int
    header_bytes: int


def make_setup(nodes: list[Node], count: int) -> Setup:
    chosen = nodes[:count]
    origin = chosen[0]
    others = sorted(n.id for n in chosen[1:])
    # A bundle sealed only to its origin still names an audience; the origin is the natural one.
    audience = Audience("nodes", tuple(others or [origin.id]))
    keys = {n.id: n.enc.public for n in chosen}
    bundle = seal_bundle(
        identity=origin.identity,
        kind="seizure",
        record=RECORD,
        audience=audience,
        recipient_keys=keys,
        created=CREATED,
        expires=EXPIRES,
        urgent=False,
        rng=os.urandom,
    )
    wire = bytes(bytearray(bundle.raw))  # its own copy of the text, as cut from a fetch answer
    payload = {
        "origin": origin.id,
        "audience": audience.to_json(),
        "kind": "seizure",
        "record": RECORD,
    }
    return Setup(
        count=count,
        origin=origin,
        reader=chosen[1] if count > 1 else origin,
        audience=audience,
        recipient_keys=keys,
        bundle=bundle,
        wire=wire,
        payload_bytes=len(canonical(payload)),
        header_bytes=len(canonical(bundle.header())),
    )


# --- The measured operations ---------------------------------------------------


def ours_seal(s: Setup) -> Callable[[], object]:
    identity, audience, keys = s.origin.identity, s.audience, s.recipient_keys
    urandom = os.urandom

    def run() -> object:
        return seal_bundle(
            identity=identity,
            kind="seizure",
            record=RECORD,
            audience=audience,
            recipient_keys=keys,
            created=CREATED,
            expires=EXPIRES,
            urgent=False,
            rng=urandom,
        )

    return run


def raw_seal(s: Setup) -> Callable[[], object]:
    publics = [s.recipient_keys[node] for node in sorted(s.recipient_keys)]
    cek, nonce = os.urandom(32), os.urandom(24)
    plaintext = os.urandom(s.payload_bytes)
    header = os.urandom(s.header_bytes)
    aad = hashlib.sha256(header).digest()
    message = os.urandom(len(s.bundle.signed_bytes))
    _, secret = sodium.crypto_sign_seed_keypair(s.origin.identity.seed)
    box_seal = sodium.crypto_box_seal
    encrypt = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt
    sign = sodium.crypto_sign
    sha256 = hashlib.sha256

    def run() -> object:
        wraps = [box_seal(cek, pk) for pk in publics]
        ct = encrypt(plaintext, aad, nonce, cek)
        sha256(header).digest()
        return wraps, ct, sign(message, secret)

    return run


def ours_verify(s: Setup) -> Callable[[], object]:
    wire, origin_public = s.wire, s.origin.identity.public

    def run() -> object:
        bundle = parse_bundle(wire)
        verify_bundle(bundle, origin_public)
        check_times(bundle, NOW)
        return bundle

    return run


def raw_verify(s: Setup) -> Callable[[], object]:
    signed = s.bundle.sig + s.bundle.signed_bytes
    body = s.bundle.signed_bytes[len(BUNDLE_DOMAIN):]  # the canonical unsigned bundle: its hash is the id
    origin_public = s.origin.identity.public
    sign_open = sodium.crypto_sign_open
    sha256 = hashlib.sha256

    def run() -> object:
        sha256(body).digest()
        return sign_open(signed, origin_public)

    return run


def ours_open(s: Setup) -> Callable[[], object]:
    wire, origin_public = s.wire, s.origin.identity.public
    reader, keys = s.reader.id, [s.reader.enc]

    def run() -> object:
        bundle = parse_bundle(wire)
        verify_bundle(bundle, origin_public)
        check_times(bundle, NOW)
        return open_bundle(bundle, reader, keys, now_ms=NOW)

    return run


def raw_open(s: Setup) -> Callable[[], object]:
    b = s.bundle
    signed = b.sig + b.signed_bytes
    origin_public = s.origin.identity.public
    wrap = b.wrap_for(s.reader.id)
    assert wrap is not None
    reader_public, reader_private = s.reader.enc.public, s.reader.enc.private
    ct, nonce = b.ct, b.nonce
    header = BUNDLE_DOMAIN + canonical(b.header())
    body = b.signed_bytes[len(BUNDLE_DOMAIN):]
    sign_open = sodium.crypto_sign_open
    seal_open = sodium.crypto_box_seal_open
    decrypt = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt
    sha256 = hashlib.sha256

    def run() -> object:
        sha256(body).digest()
        sign_open(signed, origin_public)
        cek = seal_open(wrap, reader_public, reader_private)
        return decrypt(ct, sha256(header).digest(), nonce, cek)

    return run


def sanity_check(s: Setup) -> None:
    """Both sides must do the real work: the payload opens, and raw decrypts the same bytes."""
    payload = ours_open(s)()
    assert payload.to_json()["record"] == RECORD  # type: ignore[attr-defined]
    assert raw_open(s)() == canonical(payload.to_json())  # type: ignore[attr-defined]


# --- Timing --------------------------------------------------------------------


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}
clock = CLOCKS["wall"]


def time_batch(fn: Callable[[], object], calls: int) -> float:
    """Seconds per call over one batch of ``calls``, with the cyclic GC off (as timeit does)."""
    gc.collect()
    gc.disable()
    try:
        start = clock()
        for _ in range(calls):
            fn()
        return (clock() - start) / calls
    finally:
        gc.enable()


def calibrate(fn: Callable[[], object], batch_seconds: float) -> int:
    """Number of calls that takes about ``batch_seconds`` (after a short warm-up)."""
    fn()
    calls = 1
    while True:
        per_call = time_batch(fn, calls)
        if per_call * calls >= min(0.05, batch_seconds / 4):
            return max(1, round(batch_seconds / per_call))
        calls *= 4


@dataclass(frozen=True)
class Result:
    operation: str
    recipients: int
    bundle_bytes: int
    ours_s: float
    raw_s: float
    noise: float

    @property
    def ours_per_s(self) -> float:
        return 1.0 / self.ours_s

    @property
    def raw_per_s(self) -> float:
        return 1.0 / self.raw_s

    @property
    def ratio(self) -> float:
        return self.ours_per_s / self.raw_per_s


def compare(
    operation: str,
    s: Setup,
    ours: Callable[[], object],
    raw: Callable[[], object],
    rounds: int,
    batch_seconds: float,
) -> Result:
    n_ours, n_raw = calibrate(ours, batch_seconds), calibrate(raw, batch_seconds)
    t_ours: list[float] = []
    t_raw: list[float] = []
    for r in range(rounds):
        if r % 2 == 0:
            t_ours.append(time_batch(ours, n_ours))
            t_raw.append(time_batch(raw, n_raw))
        else:
            t_raw.append(time_batch(raw, n_raw))
            t_ours.append(time_batch(ours, n_ours))
    # Per-round ratios are paired (same noise); their spread says how far to trust the medians.
    ratios = [tr / to for to, tr in zip(t_ours, t_raw, strict=True)]
    mid = statistics.median(ratios)
    noise = (max(ratios) - min(ratios)) / 2 / mid if rounds > 1 else 0.0
    return Result(
        operation,
        s.count,
        s.bundle.size,
        statistics.median(t_ours),
        statistics.median(t_raw),
        noise,
    )


# --- Report ---------------------------------------------------------------------


def print_table(results: list[Result]) -> None:
    head = f"{'operation':<40} {'recip':>5} {'bytes':>6} {'ours ops/s':>11} {'raw ops/s':>10} {'ratio':>6} {'+-':>5}"
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r.operation:<40} {r.recipients:>5} {r.bundle_bytes:>6} {r.ours_per_s:>11,.0f} "
            f"{r.raw_per_s:>10,.0f} {r.ratio:>6.2f} {r.noise * 100:>4.0f}%"
        )
    print("(ratio = ours ops/s / raw ops/s; +- = half the range of the per-round paired ratios)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench crypto", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 rounds of short batches (CI smoke test)"
    )
    parser.add_argument(
        "--rounds", type=int, help="alternating rounds per measurement (default 31, --quick 3)"
    )
    parser.add_argument(
        "--batch-seconds", type=float, help="target length of one batch (default 0.07, --quick 0.05)"
    )
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall",
        help="time batches by the wall clock (default) or by this thread's CPU time",
    )
    args = parser.parse_args(argv)
    global clock
    clock = CLOCKS[args.clock]
    rounds = args.rounds or (3 if args.quick else 31)
    batch_seconds = args.batch_seconds or (0.05 if args.quick else 0.07)
    if rounds < 1 or batch_seconds <= 0:
        parser.error("--rounds and --batch-seconds must be positive")

    nodes = make_nodes(max(SEAL_SIZES + OPEN_SIZES))
    setups = {n: make_setup(nodes, n) for n in sorted(set(SEAL_SIZES + OPEN_SIZES))}
    for n in OPEN_SIZES:
        sanity_check(setups[n])

    print(
        f"cenmesh crypto benchmark: {rounds} rounds, batches of ~{batch_seconds:g} s ({args.clock} clock), "
        f"Python {platform.python_version()}, PyNaCl {nacl.__version__}, {cpu_model()} x{os.cpu_count()}"
    )
    print(
        "seizure record as in tests/vectors/bundles.json; bundle bytes = canonical size of the bundle"
    )
    print()
    results: list[Result] = []
    plan: list[
        tuple[
            str,
            tuple[int, ...],
            Callable[[Setup], Callable[[], object]],
            Callable[[Setup], Callable[[], object]],
        ]
    ] = [
        ("seal (seal_bundle)", SEAL_SIZES, ours_seal, raw_seal),
        ("verify (parse+verify+check_times)", OPEN_SIZES, ours_verify, raw_verify),
        ("open (parse+verify+check_times+open)", OPEN_SIZES, ours_open, raw_open),
    ]
    for operation, sizes, ours, raw in plan:
        for n in sizes:
            s = setups[n]
            results.append(compare(operation, s, ours(s), raw(s), rounds, batch_seconds))
            print(f"  measured {operation}, {n} recipients", file=sys.stderr, flush=True)
    print_table(results)

    by = {(r.operation.split()[0], r.recipients): r for r in results}
    headline = by["open", HEADLINE_OPEN]
    meets = headline.ratio >= TARGET_RATIO_OPEN
    print()
    print(
        f"target: ratio_open_vs_raw >= {TARGET_RATIO_OPEN} ({HEADLINE_OPEN} recipients): "
        f"{headline.ratio:.2f} -> {'PASS' if meets else 'FAIL'}"
    )
    seal1 = by["seal", 1]
    summary: dict[str, Any] = {
        "seal_per_s": round(seal1.ours_per_s, 1),
        "raw_seal_per_s": round(seal1.raw_per_s, 1),
        "ratio_seal_vs_raw": round(seal1.ratio, 3),
    }
    for n in SEAL_SIZES[1:]:
        r = by["seal", n]
        summary |= {
            f"seal_per_s_{n}": round(r.ours_per_s, 1),
            f"raw_seal_per_s_{n}": round(r.raw_per_s, 1),
            f"ratio_seal_vs_raw_{n}": round(r.ratio, 3),
        }
    summary |= {
        "open_per_s": round(headline.ours_per_s, 1),
        "raw_open_per_s": round(headline.raw_per_s, 1),
        "ratio_open_vs_raw": round(headline.ratio, 3),
        "open_recipients": HEADLINE_OPEN,
    }
    for n in OPEN_SIZES[1:]:
        r = by["open", n]
        summary |= {
            f"open_per_s_{n}": round(r.ours_per_s, 1),
            f"raw_open_per_s_{n}": round(r.raw_per_s, 1),
            f"ratio_open_vs_raw_{n}": round(r.ratio, 3),
        }
    for n in OPEN_SIZES:
        r = by["verify", n]
        suffix = "" if n == HEADLINE_OPEN else f"_{n}"
        summary |= {
            f"verify_per_s{suffix}": round(r.ours_per_s, 1),
            f"raw_verify_per_s{suffix}": round(r.raw_per_s, 1),
            f"ratio_verify_vs_raw{suffix}": round(r.ratio, 3),
        }
    summary |= {
        "target_ratio_open_vs_raw": TARGET_RATIO_OPEN,
        "meets_target": meets,
        "rounds": rounds,
        "batch_seconds": batch_seconds,
        "clock": args.clock,
        "python": platform.python_version(),
        "pynacl": nacl.__version__,
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(summary, separators=(", ", ": ")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
