"""Command-line wrappers that talk to a running node's officer API (``/api/v1``).

Each prints a readable table by default and the API's JSON with ``--json``.
The node's URL and token default to the node folder's ``node.toml`` and
``admin.token``; ``--url`` and ``--token`` (or CENMESH_TOKEN) override them.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from config.settings import Settings, load_settings


class ApiError(Exception):
    """The node answered with an error, or could not be reached; ``answer`` is its JSON error, if any."""

    def __init__(self, message: str, answer: Any = None) -> None:
        super().__init__(message)
        self.answer = answer


def _local_url(s: Settings) -> str:
    """How a command on the node's own machine reaches it.

    Plain HTTP: the listen address (a wildcard means this machine). TLS: the
    public URL, whose host name the certificate carries.
    """
    if s.server.tls_cert:
        return s.node.public_url
    host = s.server.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - reading the setting, not binding
        host = "127.0.0.1"
    return f"http://{host if ':' not in host else f'[{host}]'}:{s.server.port}"


def _trust(s: Settings) -> ssl.SSLContext | None:
    """Trust the node's own certificate (often self-signed or from a national CA) and the CA file."""
    if not s.server.tls_cert:
        return None
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=str(s.path(s.server.tls_cert)))
    if s.sync.ca_file:
        ctx.load_verify_locations(cafile=str(s.path(s.sync.ca_file)))
    return ctx


def ssl_context(args: Any) -> ssl.SSLContext | None:
    """What to trust when the node in ``--home`` serves TLS (None: the system's defaults)."""
    return _trust(load_settings(args.home)) if args.home else None


def _target(args: Any) -> tuple[str, str]:
    url, token = args.url, args.token or os.environ.get("CENMESH_TOKEN")
    if args.home:
        url = url or _local_url(load_settings(args.home))
        if token is None:
            path = Path(args.home) / "admin.token"
            if path.exists():
                token = path.read_text().strip()
    if not url or not token:
        raise ApiError("give --home DIR (or --url and --token) so the command can reach the node")
    return url.rstrip("/"), token


def call(args: Any, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
         content_type: str = "application/json", timeout: float = 60) -> Any:
    """One officer API request; the JSON answer, or ApiError with the node's message."""
    url, token = _target(args)
    ctx = ssl_context(args)
    data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method,  # noqa: S310 - URL from node.toml
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:  # noqa: S310
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read())
        except ValueError:
            raise ApiError(f"HTTP {exc.code}") from None
        detail = err.get("detail") if isinstance(err, dict) else None
        raise ApiError(f"HTTP {exc.code}: {detail or err}", err) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ApiError(f"cannot reach the node at {url}: {getattr(exc, 'reason', exc)}") from None


def table(rows: list[list[Any]], headers: list[str]) -> str:
    """A plain aligned table."""
    cells = [[str(c) if c is not None else "-" for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, *body]) if body else line + "\n(none)"


def _ts(ms: int | None) -> str:
    return "-" if ms is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(ms / 1000))


def _summary(kind: str, rec: dict[str, Any]) -> str:
    if kind == "seizure":
        c = rec.get("commodity", {})
        q = rec.get("quantity", {})
        r = rec.get("route", {})
        return f"{rec.get('category')}: {c.get('description', '')[:40]} ({q.get('amount')} {q.get('unit')}) {r.get('departure')}->{r.get('destination')}"
    if kind == "alert":
        return f"[{rec.get('urgency')}] {rec.get('title', '')[:50]}"
    if kind == "feedback":
        return f"{rec.get('outcome')} on {rec.get('ref', '')[:8]}"
    return str(rec.get("title") or rec.get("subject") or rec.get("reason") or rec.get("group") or "")[:60]


def _read_record(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        return json.loads(text)
    except OSError as exc:
        raise ApiError(f"{path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ApiError(f"{path}: not JSON: {exc}") from None


def record_add(args: Any) -> str | Any:
    out = call(args, "POST", "/api/v1/records", {"kind": args.kind, "record": _read_record(args.file)})
    return out if args.json else f"recorded {args.kind} {out['id']} (local; share it with 'cenmesh share')"


def share(args: Any) -> str | Any:
    out = call(args, "POST", f"/api/v1/records/{args.id}/share", {"audience": args.to, "urgent": args.urgent})
    if args.json:
        return out
    return (f"shared as bundle {out['bundle']} to {out['audience']}{' (urgent)' if out['urgent'] else ''}; "
            f"{len(out['recipients'])} recipients")


def records(args: Any) -> str | Any:
    q = f"?limit={args.limit}" + (f"&kind={args.kind}" if args.kind else "")
    out = call(args, "GET", "/api/v1/records" + q)
    if args.json:
        return out
    rows = [[r["id"][:8], r["kind"], f"v{r['version']}", r["origin"][:10], _ts(r["created"]),
             ("RETRACTED " if r["retracted"] else "") + _summary(r["kind"], r["record"])] for r in out["records"]]
    return table(rows, ["id", "kind", "ver", "origin", "created (UTC)", "summary"])


def inbox(args: Any) -> str | Any:
    out = call(args, "GET", "/api/v1/inbox")
    if args.json:
        return out
    rows = [[a["id"], a["origin"][:10], a["record"].get("urgency"), a["record"].get("respond_by"),
             ("acknowledged: " + ",".join(a["our_outcomes"])) if a["acknowledged"]
             else ("OVERDUE" if a["overdue"] else "open"), a["record"].get("title", "")[:50]]
            for a in out["alerts"]]
    return table(rows, ["alert id", "from", "urgency", "respond by", "state", "title"])


def feedback(args: Any) -> str | Any:
    body: dict[str, Any] = {"outcome": args.outcome}
    if args.note:
        body["note"] = args.note
    if args.seizure:
        body["seizure"] = args.seizure
    out = call(args, "POST", f"/api/v1/alerts/{args.id}/feedback", body)
    return out if args.json else f"feedback {out['record']['id']} ({args.outcome}) sent as bundle {out['bundle']}"


def status(args: Any) -> str | Any:
    out = call(args, "GET", "/api/v1/status")
    if args.json:
        return out
    head = (f"{out['name']} ({out['role']}, {', '.join(out['regions'])})  node {out['node']}\n"
            f"bundles: {out['bundles']}  directory: {out['directory']} nodes  uptime {out['uptime_s']} s\n")
    store = out.get("store") or {}
    if store:
        cap = f" of {store['max_size_mb']} MB allowed" if store["max_size_mb"] else ""
        head += f"store: {store['size_mb']} MB{cap}, {store['disk_free_mb']} MB free on its disk\n"
        if store["last_full_at"]:
            head += f"STORE FULL at {_ts(store['last_full_at'])} UTC (last refusal): {store['last_full_message']}\n"
    rows = [[p["name"] or p["node"][:10], p["url"], p["cursor"], _ts(p["last_ok"]), p["failures"],
             (p["last_error"] or "")[:40]] for p in out["peers"]]
    rej = ", ".join(f"{r['peer'][:10]}:{r['reason']}={r['count']}" for r in out["rejections"]) or "none"
    return head + table(rows, ["peer", "url", "cursor", "last ok (UTC)", "failures", "last error"]) + f"\nrejections: {rej}"


def sync(args: Any) -> str | Any:
    out = call(args, "POST", "/api/v1/sync", {"directory": True})
    return out if args.json else "\n".join(f"{k[:12]}  {v}" for k, v in out["peers"].items()) or "no peers"


def edit(args: Any) -> str | Any:
    body: dict[str, Any] = {"record": _read_record(args.file)}
    if args.urgent:
        body["urgent"] = True
    out = call(args, "PATCH", f"/api/v1/records/{args.id}", body)
    if args.json:
        return out
    return (f"record {args.id} is now version {out['version']}; sent as bundle {out['bundle']} to "
            f"{out['audience']} ({len(out['recipients'])} recipients)")


def retract(args: Any) -> str | Any:
    out = call(args, "POST", f"/api/v1/records/{args.id}/retract", {"reason": args.reason})
    if args.json:
        return out
    return (f"record {args.id} retracted (retraction {out['id']}, bundle {out['bundle']}) for "
            f"{out['audience']} ({len(out['recipients'])} recipients)")


def group_create(args: Any) -> str | Any:
    out = call(args, "POST", "/api/v1/groups", {"name": args.name, "members": args.member, "not_after": args.until})
    if args.json:
        return out
    verb = "created" if out["version"] == 1 else f"changed (roster version {out['version']})"
    return (f"{out['group']} {verb}: {len(out['members'])} members including this node, open until {args.until} "
            f"(UTC); the roster goes to the members as bundle {out['bundle']}")


def groups(args: Any) -> str | Any:
    out = call(args, "GET", "/api/v1/groups")
    if args.json:
        return out
    rows = [[g["group"], g["owner"][:10], g["until"], "open" if g["active"] else "ENDED",
             "yes" if g["member"] else "no",
             ", ".join(g["names"].get(m) or m[:10] for m in g["members"])] for g in out["groups"]]
    return table(rows, ["group", "owner", "until (UTC)", "state", "member", "members"])


def import_csv(args: Any) -> str | Any:
    """Send a seizures CSV to the node; progress goes to standard error, phase by phase."""
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise ApiError(f"{args.file}: {exc.strerror}") from None
    lines = sum(1 for line in data.splitlines() if line.strip()) - 1

    def say(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    say(f"read {args.file}: {len(data)} bytes, about {max(lines, 0)} rows")
    say("sending it to the node to validate every row (all rows are imported, or none)...")
    path = "/api/v1/import" + (f"?share={urllib.parse.quote(args.share, safe=':,')}" if args.share else "")
    try:
        out = call(args, "POST", path, raw=data, content_type="text/csv", timeout=600)
    except ApiError as exc:
        answer = exc.answer if isinstance(exc.answer, dict) else {}
        problems = answer.get("errors")
        if not problems:
            raise
        lines_wrong = sorted({p["line"] for p in problems})
        text = "\n".join(f"  {p['message']}" for p in problems)
        raise ApiError(f"{len(lines_wrong)} of {answer.get('rows', '?')} rows are wrong; nothing was imported:\n"
                       f"{text}", answer) from None
    say(f"validated {out['rows']} rows; imported {out['imported']} seizures as local records")
    if out["shared"]:
        say(f"shared {len(out['shared']['bundles'])} seizures to {out['shared']['audience']}")
    if args.json:
        return out
    return "\n".join(out["ids"])
