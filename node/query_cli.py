"""``cenmesh query`` and ``cenmesh export``: the officers' search from the command line (registered by node/cli.py).

Both send the parameters of node/search.py to the running node's officer API
(``GET /api/v1/search``, ``GET /api/v1/export``), so the node checks them and
audits the call exactly as for the web pages.

    cenmesh query cocaine --hs 2939 --route EC-NL --since 2024-01-01
    cenmesh export --category tobacco --origin NL --format csv --out tobacco.csv
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from node import officer_cli
from node.officer_cli import ApiError, call, table


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", choices=["seizure", "alert", "message"])
    p.add_argument("--category", help="seizure category (an alert's suspected category), e.g. drugs")
    p.add_argument("--hs", metavar="DIGITS", help="HS code prefix, 2 to 10 digits, e.g. 6307")
    p.add_argument("--route", metavar="FROM-TO", help="departure-destination, e.g. CN-NG (CN-TG-NG: via Togo)")
    p.add_argument("--departure", metavar="CC")
    p.add_argument("--destination", metavar="CC")
    p.add_argument("--transit", metavar="CC[,CC]", help="transit countries that must all be on the route")
    p.add_argument("--since", metavar="YYYY-MM-DD", help="seizure date (alert: respond-by date) from this day")
    p.add_argument("--until", metavar="YYYY-MM-DD", help="... up to and including this day")
    p.add_argument("--origin", metavar="NODE|CC", help="the sharing administration: node id or country code")
    p.add_argument("--tlp", choices=["CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED"])
    p.add_argument("--mode", dest="transport_mode", metavar="MODE", help="transport mode, e.g. sea, air, postal")
    p.add_argument("--has-feedback", choices=["yes", "no"], help="alerts that have (or lack) an answer")
    p.add_argument("--include-retracted", action="store_true", help="also show records their origin retracted")


def params(args: Any) -> dict[str, str]:
    """The query-string parameters of the filters given on the command line."""
    out: dict[str, str] = {}
    text = " ".join(getattr(args, "text", None) or []).strip()
    if text:
        out["q"] = text
    for name in ("kind", "category", "hs", "route", "departure", "destination", "transit", "since", "until",
                 "origin", "tlp", "transport_mode"):
        value = getattr(args, name, None)
        if value:
            out[name] = str(value)
    if getattr(args, "has_feedback", None):
        out["has_feedback"] = "true" if args.has_feedback == "yes" else "false"
    if getattr(args, "include_retracted", False):
        out["include_retracted"] = "true"
    return out


def _row(r: dict[str, Any], names: dict[str, str]) -> list[Any]:
    rec, kind = r["record"], r["kind"]
    origin = names.get(r["origin"]) or r["origin"][:10]
    if kind == "seizure":
        c, q, route = rec.get("commodity", {}), rec.get("quantity", {}), rec.get("route", {})
        legs = [route.get("departure"), *route.get("transit", []), route.get("destination")]
        return [rec.get("date"), origin, rec.get("category"), c.get("description", "")[:40],
                f"{q.get('amount')} {q.get('unit')}", "-".join(str(x) for x in legs if x), r["id"]]
    if kind == "alert":
        s = rec.get("suspected", {})
        dest = rec.get("consignment", {}).get("destination_locode")
        return [rec.get("respond_by"), origin, s.get("category"), "ALERT " + rec.get("title", "")[:34], "-",
                f"->{dest}" if dest else "-", r["id"]]
    return ["-", origin, "-", "MESSAGE " + rec.get("subject", "")[:32], "-", "-", r["id"]]


def _names(args: Any) -> dict[str, str]:
    """Node id -> country code of the sharing administrations, when the node lets us read its directory."""
    try:
        out = call(args, "GET", "/api/v1/directory")
    except ApiError:
        return {}
    return {d["node"]: d["country"] for d in out.get("nodes", [])}


def query(args: Any) -> str | Any:
    p = params(args)
    p["limit"] = str(args.limit)
    if args.offset:
        p["offset"] = str(args.offset)
    out = call(args, "GET", "/api/v1/search?" + urllib.parse.urlencode(p))
    if args.json:
        return out
    names = _names(args) if out["results"] else {}
    rows = [[*(_row(r, names)[:-1]), ("RETRACTED " if r["retracted"] else "") + r["id"]] for r in out["results"]]
    total = f"{out['total']:,}+" if out["total_capped"] else f"{out['total']:,}"
    shown = (f"showing {args.offset + 1}-{args.offset + len(rows)}" if rows else "nothing to show")
    counts = ", ".join(f"{k} {v:,}" for k, v in out["by_category"].items()) or "none"
    scope = " (newest 10,000)" if out["total_capped"] else ""
    noun = "match" if out["total"] == 1 and not out["total_capped"] else "matches"
    return (table(rows, ["date", "origin", "category", "commodity", "quantity", "route", "id"])
            + f"\n{total} {noun}, {shown}\nby category{scope}: {counts}")


def export(args: Any) -> str | Any:
    p = params(args)
    p["format"] = args.format
    if args.limit:
        p["limit"] = str(args.limit)
    url, token = officer_cli._target(args)
    req = urllib.request.Request(url + "/api/v1/export?" + urllib.parse.urlencode(p),  # noqa: S310 - node's URL
                                 headers={"Authorization": f"Bearer {token}"})
    out_path = Path(args.out) if args.out and args.out != "-" else None
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:  # noqa: S310
            if out_path is None:
                shutil.copyfileobj(resp, sys.stdout.buffer)
                sys.stdout.buffer.flush()
                return 0
            with out_path.open("wb") as f:
                shutil.copyfileobj(resp, f)
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read())
        except ValueError:
            raise ApiError(f"HTTP {exc.code}") from None
        raise ApiError(f"HTTP {exc.code}: {err.get('detail') or err}", err) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ApiError(f"export to {args.out}: {getattr(exc, 'reason', None) or exc}") from None
    size = out_path.stat().st_size
    if args.format == "json":
        with out_path.open("rb") as f:
            summary = json.load(f)
        n, capped = summary["count"], summary["capped"]
    else:
        with out_path.open("rb") as f:
            n, capped = max(sum(1 for _ in f) - 1, 0), False
    more = " (capped: narrow the search to get the rest)" if capped else ""
    return {"file": str(out_path), "records": n, "bytes": size} if args.json else \
        f"exported {n:,} record{'' if n == 1 else 's'} to {out_path} ({size:,} bytes){more}"


def register(sub: Any, api_options: Any) -> None:
    """Add the search commands to the ``cenmesh`` parser; ``api_options(p)`` adds --home/--url/--token/--json."""
    p = sub.add_parser("query", help="search every record this node can read",
                       description="Search the records this node can read: words in the goods, brands, "
                                   "concealment, narrative, titles, offices and transport references, and filters. "
                                   "Newest first.")
    p.set_defaults(handler=query)
    api_options(p)
    p.add_argument("text", nargs="*", metavar="TEXT", help="words that must all occur (\"quoted phrase\" allowed)")
    _filters(p)
    p.add_argument("--limit", type=int, default=50, help="records per page (at most 500)")
    p.add_argument("--offset", type=int, default=0, help="skip this many matches (paging)")

    p = sub.add_parser("export", help="export the records a search finds, as CSV or JSON",
                       description="Export every record a search finds (at most 100,000), newest first.")
    p.set_defaults(handler=export)
    api_options(p)
    p.add_argument("text", nargs="*", metavar="TEXT", help="words that must all occur")
    _filters(p)
    p.add_argument("--format", choices=["csv", "json"], default="csv")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the export ('-' for standard output)")
    p.add_argument("--limit", type=int, help="at most this many records (default and maximum 100,000)")
