"""The ``cenmesh`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from node import inspect


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cenmesh", description="cenmesh node and operator tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("inspect", help="check a bundle file step by step and explain any rejection")
    p.add_argument("bundle", metavar="BUNDLE.json")
    p.add_argument("--descriptor", required=True, metavar="ORIGIN_DESCRIPTOR.json")
    p.add_argument("--enc-key", metavar="PRIVATE_KEY_HEX_FILE", help="X25519 private key (hex) to open it with")
    p.add_argument("--as", dest="as_node", metavar="NODE_ID", help="the recipient the key belongs to")
    p.add_argument("--now", type=int, metavar="MS", help="check times as of this moment (ms since epoch)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=inspect.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except inspect.UsageError as exc:
        print(f"cenmesh {args.command}: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
