"""The ``cenmesh`` command: operator set-up, the node itself, and officer wrappers.

Exit codes: 0 success, 1 the operation failed (rejected bundle, node error),
2 bad usage or bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from config.settings import SettingsError, load_settings
from node import admin, audit, auth, inspect, officer_cli, query_cli
from node.keystore import KeyFileError
from node.store.db import Store


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

    p = cmd("init", _audited(lambda a: admin.init(a.home, name=a.name, country=a.country, role=a.role, regions=a.region,
                                                  listen=a.listen, public_url=a.public_url),
                             lambda a, r: (r["node"], f"node created: {a.name} ({a.country}, {a.role})")),
            "create a node's folder, keys and database")
    _home(p)
    p.add_argument("--name", required=True)
    p.add_argument("--country", required=True, help="ISO 3166 alpha-2, e.g. NG")
    p.add_argument("--role", required=True, choices=["national", "hub"])
    p.add_argument("--region", required=True, action="append", help="RILO region code; repeat for several")
    p.add_argument("--listen", default="127.0.0.1:8700", metavar="HOST:PORT")
    p.add_argument("--public-url", metavar="URL", help="how peers reach this node (default http://LISTEN)")

    p = cmd("descriptor", lambda a: admin.own_descriptor(a.home), "print this node's signed descriptor")
    _home(p)
    p = cmd("endorse", _audited(lambda a: admin.endorse_file(a.home, a.file),
                                lambda a, r: (r["node"], f"endorsed the descriptor of {r['name']} (seq {r['seq']})")),
            "print FILE's descriptor endorsed by this (anchor) node")
    _home(p)
    p.add_argument("file", metavar="FILE")
    p = cmd("trust", _audited(lambda a: admin.trust(a.home, a.file),
                              lambda a, r: (r["anchor"], f"trust anchor added: {r['name']}")), "pin the node whose descriptor is in FILE as a trust anchor")
    _home(p)
    p.add_argument("file", metavar="FILE")

    p = sub.add_parser("directory", help="the nodes this node accepts")
    dsub = p.add_subparsers(dest="action", required=True)
    d = dsub.add_parser("add", help="accept an endorsed descriptor (or take back our own, endorsed)")
    d.set_defaults(handler=_audited(lambda a: admin.directory_add(a.home, a.file),
                                    lambda a, r: (r["node"], "descriptor added to the directory")))
    _home(d)
    d.add_argument("file", metavar="FILE")
    d = dsub.add_parser("pin", help="accept a descriptor without endorsement, by pinning its node")
    d.set_defaults(handler=_audited(lambda a: admin.pin(a.home, a.file),
                                    lambda a, r: (r["pinned"], f"node pinned: {r['name']}")))
    _home(d)
    d.add_argument("file", metavar="FILE")
    d = dsub.add_parser("list", help="list accepted nodes")
    d.set_defaults(handler=_directory_list)
    _home(d)
    d.add_argument("--json", action="store_true")

    p = sub.add_parser("peer", help="sync peers")
    psub = p.add_subparsers(dest="action", required=True)
    d = psub.add_parser("add", help="fetch URL's descriptor, check it is accepted, and sync with it")
    d.set_defaults(handler=_audited(lambda a: admin.peer_add(a.home, a.url),
                                    lambda a, r: (r["peer"], f"peer added: {r['name']} at {r['url']}")))
    _home(d)
    d.add_argument("url", metavar="URL")

    p = sub.add_parser("keys", help="encryption keys")
    ksub = p.add_subparsers(dest="action", required=True)
    d = ksub.add_parser("rotate", help="make a new encryption key and descriptor")
    d.set_defaults(handler=_audited(lambda a: admin.keys_rotate(a.home),
                                    lambda a, r: (r["node"], f"encryption key rotated; descriptor seq {r['seq']}")))
    _home(d)

    p = cmd("revoke", _audited(lambda a: admin.revoke(a.home, a.node_id),
                               lambda a, r: (a.node_id, "node revoked")), "revoke this node, or as its anchor a node it endorsed")
    _home(p)
    p.add_argument("node_id", metavar="NODE_ID")

    p = sub.add_parser("user", help="officer, analyst and admin accounts (on this node's database)")
    usub = p.add_subparsers(dest="action", required=True)
    d = usub.add_parser("add", help="create a user; prints the token once (only its hash is kept)")
    d.set_defaults(handler=_user_add)
    _home(d)
    d.add_argument("name")
    d.add_argument("--role", required=True, choices=list(auth.ROLES),
                   help="officer: record, share, answer, search; analyst: search, export, statistics; "
                        "admin: everything, and users, peers, trust, keys, groups")
    d = usub.add_parser("disable", help="disable a user's token at once (the next request is refused)")
    d.set_defaults(handler=_user_disable)
    _home(d)
    d.add_argument("name")
    d = usub.add_parser("enable", help="enable a disabled user again (same token)")
    d.set_defaults(handler=_user_enable)
    _home(d)
    d.add_argument("name")
    d = usub.add_parser("list", help="list users and their roles")
    d.set_defaults(handler=_user_list)
    _home(d)
    d.add_argument("--json", action="store_true")

    p = cmd("audit", _audit, "read the audit log: who did what, when, from where (--verify checks the chain)")
    _home(p)
    p.add_argument("--verify", action="store_true", help="check that no entry was changed or deleted; exit 1 if so")
    p.add_argument("--limit", type=int, default=100, metavar="N", help="the N newest entries (default 100)")
    p.add_argument("--user", metavar="NAME", help="only this user's entries")
    p.add_argument("--json", action="store_true")

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
    p = cmd("edit", officer_cli.edit, "send a new version of one of this node's shared records, to the same audience")
    _api(p)
    p.add_argument("id", metavar="RECORD_ID")
    p.add_argument("--file", required=True, help="the whole new record as JSON ('-' for standard input)")
    p.add_argument("--urgent", action="store_true", help="push at once (default: as the previous version went)")
    p = cmd("retract", officer_cli.retract, "withdraw one of this node's shared records from its audience")
    _api(p)
    p.add_argument("id", metavar="RECORD_ID")
    p.add_argument("--reason", required=True, help="why it is withdrawn (recipients see this)")
    p = cmd("import", officer_cli.import_csv, "import seizures from a CSV file (docs/csv-import.md): all rows or none")
    _api(p)
    p.add_argument("file", metavar="FILE.csv", help="the CSV file ('-' for standard input)")
    p.add_argument("--share", metavar="AUDIENCE", help="also share every imported seizure: nodes:ID,ID | region:CODE | "
                                                       "op:NAME | federation")

    p = sub.add_parser("group", help="closed operation groups (op:NAME)")
    gsub = p.add_subparsers(dest="action", required=True)
    d = gsub.add_parser("create", help="create (or change) a group owned by this node; its roster goes to the members")
    d.set_defaults(handler=officer_cli.group_create)
    _api(d)
    d.add_argument("name", metavar="op:NAME")
    d.add_argument("--member", required=True, action="append", metavar="NODE_ID", help="a member; repeat for each")
    d.add_argument("--until", required=True, metavar="YYYY-MM-DD", help="the group's last day (UTC)")
    p = cmd("groups", officer_cli.groups, "the operation groups this node knows, with members and end date")
    _api(p)

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


def _operator() -> str:
    """Who runs this command, as the audit log names them."""
    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a bare container)
        return f"cli:uid{os.getuid()}"


def _with_store(home: str, fn: Callable[[Store], Any]) -> Any:
    settings = load_settings(home)
    store = Store(settings.path(settings.store.path), max_size_mb=settings.store.max_size_mb)
    try:
        return fn(store)
    finally:
        store.close()


def _audit_local(home: str, action: str, target: str | None, detail: str | None) -> None:
    """Append an operator's command to the node's audit chain (source 'cli')."""
    user, at = _operator(), admin.now_ms()
    _with_store(home, lambda st: st.write_now(lambda c: audit.append(
        c, at=at, user=user, role="admin", action=action, target=target, detail=detail, source="cli")))


def _audited(fn: Callable[[Any], Any], describe: Callable[[Any, Any], tuple[str | None, str]]) -> Callable[[Any], Any]:
    """Run an operator command, then record it in the audit log (target, detail from its arguments and result)."""

    def run(args: Any) -> Any:
        result = fn(args)
        target, detail = describe(args, result)
        _audit_local(args.home, "admin", target, detail)
        return result

    return run


def _user_add(args: Any) -> Any:
    def add(store: Store) -> str:
        token: str = store.write_now(auth.create_token, args.name, args.role, admin.now_ms())
        return token

    try:
        token = _with_store(args.home, add)
    except ValueError as exc:
        raise admin.AdminError(str(exc)) from None
    _audit_local(args.home, "admin", args.name, f"user added with role {args.role}")
    return {"name": args.name, "role": args.role, "token": token,
            "note": "the token is shown only this once; give it to the user"}


def _user_switch(args: Any, disabled: bool) -> Any:
    try:
        row = _with_store(args.home, lambda st: st.write_now(auth.set_disabled, args.name, disabled))
    except ValueError as exc:
        raise admin.AdminError(str(exc)) from None
    _audit_local(args.home, "admin", args.name, "user disabled" if disabled else "user enabled")
    return f"user {args.name} ({row['role']}) {'disabled: its token is refused from now on' if disabled else 'enabled'}"


def _user_disable(args: Any) -> Any:
    return _user_switch(args, True)


def _user_enable(args: Any) -> Any:
    return _user_switch(args, False)


def _user_list(args: Any) -> Any:
    users = _with_store(args.home, lambda st: st.read_now(auth.list_users))
    if args.json:
        return users
    rows = [[u["name"], u["role"], "DISABLED" if u["disabled"] else "active",
             time.strftime("%Y-%m-%d %H:%M", time.gmtime(u["created"] / 1000))] for u in users]
    return officer_cli.table(rows, ["name", "role", "state", "created (UTC)"])


def _audit(args: Any) -> Any:
    if args.verify:
        check = _with_store(args.home, lambda st: st.read_now(audit.verify))
        if args.json:
            _print({"ok": check.ok, "entries": check.entries, "first_bad": check.first_bad, "why": check.why})
        elif check.ok:
            print(f"audit chain intact: {check.entries} entries")
        else:
            print(f"audit chain BROKEN at entry {check.first_bad}: {check.why}", file=sys.stderr)
        return 0 if check.ok else 1
    if args.limit < 1:
        raise admin.AdminError("--limit: must be 1 or more")
    rows = _with_store(args.home, lambda st: st.read_now(lambda c: audit.entries(c, limit=args.limit, user=args.user)))
    rows.reverse()  # oldest first, like a log
    if args.json:
        return [{k: r[k] for k in ("seq", "at", "user", "role", "action", "target", "detail", "source", "hash")}
                for r in rows]
    table = [[r["seq"], time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["at"] / 1000)), r["user"], r["role"],
              r["action"], r["target"], (r["detail"] or "")[:70], r["source"]] for r in rows]
    return officer_cli.table(table, ["#", "at (UTC)", "user", "role", "action", "target", "detail", "from"])


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
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # it logs every tick at INFO
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
