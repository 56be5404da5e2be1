"""The officers' search: one query for the API, the command line and the web pages.

``SearchQuery`` is a frozen dataclass that checks itself on construction;
``SearchQuery.from_params`` reads it from a query string and raises
``QueryError(param, why)`` naming the parameter at fault (the API answers
400 with both). The SQL functions take a connection and a query and do no
other I/O; ``run_search`` and ``export_records`` are the thin async side that
resolves ``origin`` through the node's directory and dispatches to a store
reader.

How a search runs is node/store/search_plan.py: every plan walks the index
newest first and stops after the newest ``COUNT_CAP + 1`` matches. The
category of a match is in the low bits of its rowid
(node/store/search_index.py), so the counts by category come with the
rowids. ``total`` stops at ``COUNT_CAP``: ``total_capped`` then says there
are more, and ``by_category`` counts the newest ``COUNT_CAP`` matches (below
the cap every count is exact).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pycountry

from node.context import Node
from node.store.search_index import category_of
from node.store.search_plan import fts_terms, plan
from protocol.records import SEIZURE_CATEGORIES, TLP_LEVELS, TRANSPORT_MODES

COUNT_CAP = 10_000
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_OFFSET = 10_000
EXPORT_CAP = 100_000
EXPORT_PAGE = 1_000
MAX_TEXT = 500
MAX_TERMS = 16

SEARCH_KINDS = ("seizure", "alert", "message")
COUNTRIES = frozenset(c.alpha_2 for c in pycountry.countries) | {"XK"}
_NODE_ID = re.compile(r"n[a-z2-7]{24}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_HS = re.compile(r"\d{2,10}")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")

PARAMS = ("q", "kind", "category", "hs", "departure", "destination", "transit", "route", "since", "until",
          "origin", "tlp", "transport_mode", "has_feedback", "include_retracted", "limit", "offset")


class QueryError(ValueError):
    """A search parameter that cannot be used; ``param`` names it (as in the query string)."""

    def __init__(self, param: str, why: str) -> None:
        super().__init__(f"{param}: {why}")
        self.param = param
        self.why = why


def _country(param: str, value: str) -> str:
    code = value.strip().upper()
    if code not in COUNTRIES:
        raise QueryError(param, f"{value!r} is not an ISO 3166 alpha-2 country code")
    return code


def _day(param: str, value: str) -> str:
    if not _DATE.fullmatch(value):
        raise QueryError(param, f"{value!r} is not a date YYYY-MM-DD")
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        raise QueryError(param, f"{value!r} is not a real calendar date") from None
    return value


def _choice(param: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise QueryError(param, f"{value!r}: must be one of {', '.join(allowed)}")
    return value


def _flag(param: str, value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise QueryError(param, f"{value!r}: must be true or false")


def _int(param: str, value: str, low: int, high: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise QueryError(param, f"{value!r} is not an integer") from None
    if not low <= n <= high:
        raise QueryError(param, f"{n} is out of range ({low} to {high})")
    return n


@dataclass(frozen=True)
class SearchQuery:
    """What an officer is looking for. Every field is optional; the defaults find everything readable.

    ``origin`` is a node id or a country code (the administrations of that
    country, from the directory); ``transit`` countries must all appear on
    the route; ``since``/``until`` bound ``date`` (inclusive); ``hs_prefix``
    is 2 to 10 digits. Construction checks every field and raises QueryError.
    """

    text: str | None = None
    kind: str | None = None
    category: str | None = None
    hs_prefix: str | None = None
    departure: str | None = None
    destination: str | None = None
    transit: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    origin: str | None = None
    tlp: str | None = None
    transport_mode: str | None = None
    has_feedback: bool | None = None
    include_retracted: bool = False
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    def __post_init__(self) -> None:
        if self.text is not None:
            if len(self.text) > MAX_TEXT:
                raise QueryError("q", f"at most {MAX_TEXT} characters")
            terms = fts_terms(self.text)
            if not terms:
                raise QueryError("q", "no words to search for")
            if len(terms) > MAX_TERMS:
                raise QueryError("q", f"at most {MAX_TERMS} words or \"phrases\"")
        if self.kind is not None:
            _choice("kind", self.kind, SEARCH_KINDS)
        if self.category is not None:
            _choice("category", self.category, SEIZURE_CATEGORIES)
        if self.hs_prefix is not None and not _HS.fullmatch(self.hs_prefix):
            raise QueryError("hs", f"{self.hs_prefix!r}: 2 to 10 digits of an HS code")
        for name in ("departure", "destination"):
            value = getattr(self, name)
            if value is not None and value not in COUNTRIES:
                raise QueryError(name, f"{value!r} is not an ISO 3166 alpha-2 country code")
        for code in self.transit:
            if code not in COUNTRIES:
                raise QueryError("transit", f"{code!r} is not an ISO 3166 alpha-2 country code")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                _day(name, value)
        if self.since and self.until and self.since > self.until:
            raise QueryError("until", f"{self.until} is before since ({self.since})")
        if self.origin is not None and not (_NODE_ID.fullmatch(self.origin) or self.origin in COUNTRIES):
            raise QueryError("origin", f"{self.origin!r}: a node id or an ISO 3166 alpha-2 country code")
        if self.tlp is not None:
            _choice("tlp", self.tlp, TLP_LEVELS)
        if self.transport_mode is not None:
            _choice("transport_mode", self.transport_mode, TRANSPORT_MODES)
        if not 1 <= self.limit <= MAX_LIMIT:
            raise QueryError("limit", f"{self.limit} is out of range (1 to {MAX_LIMIT})")
        if not 0 <= self.offset <= MAX_OFFSET:
            raise QueryError("offset", f"{self.offset} is out of range (0 to {MAX_OFFSET}); narrow the search")

    @classmethod
    def from_params(cls, params: Mapping[str, str], *, extra: Iterable[str] = ()) -> SearchQuery:
        """Read a query string (``q``, ``hs``, ``route=CN-NG`` or ``CN-TG-NG``, ...); unknown names are refused.

        ``extra`` names parameters the caller handles itself (``format`` for export).
        """
        allowed = set(PARAMS) | set(extra)
        getall = getattr(params, "getall", None)
        for name in params:
            if name not in allowed:
                raise QueryError(name, f"unknown parameter; use {', '.join(PARAMS)}")
            if getall is not None and len(getall(name)) > 1:
                raise QueryError(name, "given more than once")
        p = {k: v for k, v in params.items() if k in PARAMS and v.strip() != ""}
        kw: dict[str, Any] = {}
        if "q" in p:
            kw["text"] = p["q"].strip()
        for name in ("kind", "category", "tlp", "transport_mode", "since", "until"):
            if name in p:
                kw[name] = p[name].strip()
        if "category" in kw:
            kw["category"] = kw["category"].lower()
        if "kind" in kw:
            kw["kind"] = kw["kind"].lower()
        if "tlp" in kw:
            kw["tlp"] = kw["tlp"].upper()
        if "hs" in p:
            kw["hs_prefix"] = p["hs"].strip().replace(".", "")
        if "departure" in p:
            kw["departure"] = _country("departure", p["departure"])
        if "destination" in p:
            kw["destination"] = _country("destination", p["destination"])
        transit = [_country("transit", c) for c in p.get("transit", "").split(",") if c.strip()]
        if "route" in p:
            parts = [c.strip() for c in p["route"].split("-")]
            if len(parts) < 2 or not all(parts):
                raise QueryError("route", f"{p['route']!r}: write DEPARTURE-DESTINATION, e.g. CN-NG (or CN-TG-NG)")
            dep, dest = _country("route", parts[0]), _country("route", parts[-1])
            for name, value in (("departure", dep), ("destination", dest)):
                if kw.get(name, value) != value:
                    raise QueryError("route", f"disagrees with {name}={kw[name]}")
            kw["departure"], kw["destination"] = dep, dest
            transit += [_country("route", c) for c in parts[1:-1]]
        if transit:
            kw["transit"] = tuple(dict.fromkeys(transit))
        if "origin" in p:
            origin = p["origin"].strip()
            kw["origin"] = origin.upper() if len(origin) == 2 else origin
        if "has_feedback" in p:
            kw["has_feedback"] = _flag("has_feedback", p["has_feedback"])
        if "include_retracted" in p:
            kw["include_retracted"] = _flag("include_retracted", p["include_retracted"])
        if "limit" in p:
            kw["limit"] = _int("limit", p["limit"], 1, MAX_LIMIT)
        if "offset" in p:
            kw["offset"] = _int("offset", p["offset"], 0, MAX_OFFSET)
        return cls(**kw)

    def to_params(self) -> dict[str, str]:
        """The query string that gives this query back (defaults left out)."""
        out: dict[str, str] = {}
        names = {"text": "q", "hs_prefix": "hs"}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value == f.default:
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, tuple):
                value = ",".join(value)
            out[names.get(f.name, f.name)] = str(value)
        return out

    def describe(self) -> str:
        """A short canonical form, for the audit log."""
        return json.dumps(self.to_params(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class SearchResult:
    """One page of matches with the size of the whole set."""

    total: int
    total_capped: bool
    by_category: dict[str, int]
    results: list[dict[str, Any]]
    plan: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "total_capped": self.total_capped, "by_category": self.by_category,
                "results": self.results}


def _records(conn: sqlite3.Connection, rowids: list[int]) -> list[dict[str, Any]]:
    """Records rows (as GET /api/v1/records gives them) for these index rowids, in that order."""
    if not rowids:
        return []
    marks = ",".join("?" * len(rowids))
    rows = {r[0]: r for r in conn.execute(
        f"SELECT f.rowid, r.* FROM record_facets AS f JOIN records AS r ON r.id = f.id"  # noqa: S608
        f" WHERE f.rowid IN ({marks})", rowids)}
    out = []
    for rowid in rowids:
        r = rows.get(rowid)
        if r is None:
            continue
        item = dict(r)
        del item["rowid"]
        item["record"] = json.loads(item.pop("body"))
        item["retracted"] = bool(item["retracted"])
        out.append(item)
    return out


def search(conn: sqlite3.Connection, q: SearchQuery, origins: tuple[str, ...] | None = None) -> SearchResult:
    """Run ``q``: one page of records newest first, the (capped) total and the counts by category.

    One pass fetches the rowids of the newest ``COUNT_CAP + 1`` matches (or
    up to the end of the page); the category of each is in its rowid.
    """
    p = plan(conn, q, origins)
    rowids = p.rowids(conn, max(COUNT_CAP + 1, q.offset + q.limit))
    counts = Counter(category_of(r) or "none" for r in rowids[:COUNT_CAP])
    by_category = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    page = _records(conn, rowids[q.offset:q.offset + q.limit])
    return SearchResult(min(len(rowids), COUNT_CAP), len(rowids) > COUNT_CAP, by_category, page, p.driver)


def export_page(conn: sqlite3.Connection, q: SearchQuery, origins: tuple[str, ...] | None,
                before: int | None, size: int) -> tuple[list[dict[str, Any]], int | None]:
    """Up to ``size`` matches older than rowid ``before`` (None: from the newest); and the rowid to go on from."""
    rowids = plan(conn, q, origins).rowids(conn, size, before)
    return _records(conn, rowids), (rowids[-1] if len(rowids) == size else None)


def explain(conn: sqlite3.Connection, q: SearchQuery, origins: tuple[str, ...] | None = None) -> list[str]:
    """The plan's driver, SQLite's EXPLAIN QUERY PLAN of each part, and the FTS5 expression (for tests and the benchmark)."""
    p = plan(conn, q, origins)
    out = [f"[{p.driver}]"]
    for part in p.parts:
        out += [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + part.sql(), (*part.params, COUNT_CAP + 1))]
    return out + ([f"MATCH {p.match}"] if p.match else [])


# --- Async side -------------------------------------------------------------------------

def resolve_origin(node: Node, origin: str | None) -> tuple[str, ...] | None:
    """The node ids ``origin`` stands for: itself, or every accepted node of that country (ours included)."""
    if origin is None:
        return None
    if _NODE_ID.fullmatch(origin):
        return (origin,)
    return tuple(sorted(d.node for d in node.directory.values() if d.country == origin))


async def run_search(node: Node, q: SearchQuery) -> SearchResult:
    """``search`` on a store reader."""
    return await node.store.read(search, q, resolve_origin(node, q.origin))


async def export_records(node: Node, q: SearchQuery, *, cap: int = EXPORT_CAP) -> AsyncIterator[dict[str, Any]]:
    """Every match (at most ``cap``), newest first, read page by page so the store is never held long."""
    origins = resolve_origin(node, q.origin)
    before: int | None = None
    sent = 0
    while sent < cap:
        size = min(EXPORT_PAGE, cap - sent)
        rows, before = await node.store.read(export_page, q, origins, before, size)
        for row in rows:
            yield row
        sent += len(rows)
        if before is None:
            return
