"""The ``cenmesh`` command: operator set-up, the node itself, and officer wrappers.

Exit codes: 0 success, 1 the operation failed (rejected bundle, node error),
2 bad usage or bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from config.settings import SettingsError
from node import admin, inspect, officer_cli, query_cli
from node.keystore import KeyFileError


def _print(result: Any, as_json: bool = True) -> int:
    print(result if isinstance(result, str) else json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def _home(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--home", required=required, metavar="DIR", help="the node's folder")


def _api(p: argparse.ArgumentParser) -> None:
    _home(p, required=False)
    p.add_argument("--url", help="node URL (default: from node.toml)")
    p.add_argument("--token", help="API token (default: DIR/admin.token or CENMESH_TOKEN)")
    p.add_argument("--json", action="store_true", help="print the API's JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cenmesh", description="cenmesh: customs enforcement data exchange, node to node")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, fn: Callable[[Any], Any], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=fn)
        return p

    p = cmd("init", lambda a: admin.init(a.home, name=a.name, country=a.country, role=a.role, regions=a.region,
                                         listen=a.listen, public_url=a.public_url), "create a node's folder, keys and database")
    _home(p)
    p.add_argument("--name", required=True)
    p.add_argument("--country", required=True, help="ISO 3166 alpha-2, e.g. NG")
    p.add_argument("--role", required=True, choices=["national", "hub"])
    p.add_argument("--region", required=True, action="append", help="RILO region code; repeat for several")
    p.add_argument("--listen", default="127.0.0.1:8700", metavar="HOST:PORT")
    p.add_argument("--public-url", metavar="URL", help="how peers reach this node (default http://LISTEN)")

    p = cmd("descriptor", lambda a: admin.own_descriptor(a.home), "print this node's signed descriptor")
    _home(p)
    p = cmd("endorse", lambda a: admin.endorse_file(a.home, a.file), "print FILE's descriptor endorsed by this (anchor) node")
    _home(p)
    p.add_argument("file", metavar="FILE")
    p = cmd("trust", lambda a: admin.trust(a.home, a.file), "pin the node whose descriptor is in FILE as a trust anchor")
    _home(p)
    p.add_argument("file", metavar="FILE")

    p = sub.add_parser("directory", help="the nodes this node accepts")
    dsub = p.add_subparsers(dest="action", required=True)
    d = dsub.add_parser("add", help="accept an endorsed descriptor (or take back our own, endorsed)")
    d.set_defaults(handler=lambda a: admin.directory_add(a.home, a.file))
    _home(d)
    d.add_argument("file", metavar="FILE")
    d = dsub.add_parser("pin", help="accept a descriptor without endorsement, by pinning its node")
    d.set_defaults(handler=lambda a: admin.pin(a.home, a.file))
    _home(d)
    d.add_argument("file", metavar="FILE")
    d = dsub.add_parser("list", help="list accepted nodes")
    d.set_defaults(handler=_directory_list)
    _home(d)
    d.add_argument("--json", action="store_true")

    p = sub.add_parser("peer", help="sync peers")
    psub = p.add_subparsers(dest="action", required=True)
    d = psub.add_parser("add", help="fetch URL's descriptor, check it is accepted, and sync with it")
    d.set_defaults(handler=lambda a: admin.peer_add(a.home, a.url))
    _home(d)
    d.add_argument("url", metavar="URL")

    p = sub.add_parser("keys", help="encryption keys")
    ksub = p.add_subparsers(dest="action", required=True)
    d = ksub.add_parser("rotate", help="make a new encryption key and descriptor")
    d.set_defaults(handler=lambda a: admin.keys_rotate(a.home))
    _home(d)

    p = cmd("revoke", lambda a: admin.revoke(a.home, a.node_id), "revoke this node, or as its anchor a node it endorsed")
    _home(p)
    p.add_argument("node_id", metavar="NODE_ID")

    p = sub.add_parser("user", help="officer and analyst accounts")
    usub = p.add_subparsers(dest="action", required=True)
    d = usub.add_parser("add", help="create a user; prints the token once")
    d.set_defaults(handler=lambda a: admin.add_user(a.home, a.name, a.role))
    _home(d)
    d.add_argument("name")
    d.add_argument("--role", required=True, choices=["officer", "analyst", "admin"])

    p = cmd("run", _run, "start the node (SIGTERM or Ctrl-C stops it cleanly)")
    _home(p)
    p.add_argument("--log-level", default="INFO")

    p = cmd("inspect", inspect.run, "check a bundle file step by step and explain any rejection")
    p.add_argument("bundle", metavar="BUNDLE.json")
    p.add_argument("--descriptor", required=True, metavar="ORIGIN_DESCRIPTOR.json")
    p.add_argument("--enc-key", metavar="PRIVATE_KEY_HEX_FILE", help="X25519 private key (hex) to open it with")
    p.add_argument("--as", dest="as_node", metavar="NODE_ID", help="the recipient the key belongs to")
    p.add_argument("--now", type=int, metavar="MS", help="check times as of this moment (ms since epoch)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("record", help="records on the running node")
    rsub = p.add_subparsers(dest="action", required=True)
    d = rsub.add_parser("add", help="record a seizure, alert or message locally (not shared yet)")
    d.set_defaults(handler=officer_cli.record_add)
    _api(d)
    d.add_argument("--kind", required=True, choices=["seizure", "alert", "message"])
    d.add_argument("--file", required=True, help="the record as JSON ('-' for standard input)")

    p = cmd("share", officer_cli.share, "share a record: seal it to an audience and send it")
    _api(p)
    p.add_argument("id", metavar="RECORD_ID")
    p.add_argument("--to", required=True, help="nodes:ID,ID | region:CODE | op:NAME | federation")
    p.add_argument("--urgent", action="store_true", help="push at once instead of waiting for the next sync")
    p = cmd("records", officer_cli.records, "list the records this node can read")
    _api(p)
    p.add_argument("--kind")
    p.add_argument("--limit", type=int, default=50)
    p = cmd("inbox", officer_cli.inbox, "alerts addressed to this node")
    _api(p)
    p = cmd("feedback", officer_cli.feedback, "answer an alert")
    _api(p)
    p.add_argument("id", metavar="ALERT_ID")
    p.add_argument("--outcome", required=True,
                   choices=["acknowledged", "examined-seized", "examined-clear", "not-arrived", "monitoring"])
    p.add_argument("--note")
    p.add_argument("--seizure", metavar="RECORD_ID")
    p = cmd("status", officer_cli.status, "peers, last sync, lag and rejections")
    _api(p)
    p = cmd("sync", officer_cli.sync, "sync with every peer now")
    _api(p)
    query_cli.register(sub, _api)
    return parser


def _directory_list(args: Any) -> Any:
    from node.runtime import open_node

    node = open_node(args.home)
    try:
        rows = [[d.name, d.country, d.role, ",".join(d.regions), d.node, "REVOKED" if d.revoked else ""]
                for d in sorted(node.directory.values(), key=lambda d: d.name)]
        if args.json:
            return [d.obj for d in node.directory.values()]
        return officer_cli.table(rows, ["name", "country", "role", "regions", "node", ""])
    finally:
        node.store.close()


def _run(args: Any) -> int:
    from node.runtime import serve

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(args.home))
    except OSError as exc:  # the listen address is taken or not ours
        print(f"cenmesh run: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except inspect.UsageError as exc:
        print(f"cenmesh {args.command}: {exc}", file=sys.stderr)
        return 2
    except (SettingsError, KeyFileError) as exc:
        print(f"cenmesh {args.command}: {exc}", file=sys.stderr)
        return 2
    except (admin.AdminError, officer_cli.ApiError) as exc:
        print(f"cenmesh {args.command}: {exc}", file=sys.stderr)
        return 1
    if isinstance(result, int):
        return result
    return _print(result)


if __name__ == "__main__":
    sys.exit(main())
