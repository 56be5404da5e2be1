"""How a search runs: the plan of SQLite and FTS5 queries for a ``SearchQuery`` (see node/search.py).

Plain functions of a connection. Rowid order is ``created`` order
(node/store/search_index.py), so every plan walks backwards and stops after
the newest matches it was asked for, never sorting. ``plan`` picks one of
- an equality index that covers the filters exactly (route; origin and
  category): an index yields equal keys in rowid order and ends with
  ``retracted``, so the table is not read;
- one FTS5 expression over ``text`` (the words, each quoted) and ``tags``
  (a token per facet value: HS prefixes, origin, route, ...), so words and
  filters are intersected inside the full-text index and only the page's
  rows are read;
- the table itself, backwards, when nothing narrows the search;
and a date range narrows the last two to a window of rowids in which the
rowid itself mostly tells whether a record's date is in the range
(``_date_check``), with two small extra parts for records dated in the
range but created far from it.
"""

from __future__ import annotations

import datetime
import re
import sqlite3
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from node.store.search_index import LAG_DAYS, rowid_base, tag

if TYPE_CHECKING:
    from node.search import SearchQuery

# --- Full-text query ------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+")  # letters and digits: what the unicode61 tokenizer keeps
_PHRASE = re.compile(r'"([^"]*)"?')


def fts_terms(text: str) -> list[tuple[str, bool]]:
    """The words and "quoted phrases" of ``text``, as (words, is_phrase); operators are plain words."""
    out: list[tuple[str, bool]] = []
    pos = 0
    text = unicodedata.normalize("NFC", text)
    for m in _PHRASE.finditer(text):
        out += [(w, False) for w in _WORD.findall(text[pos:m.start()])]
        words = _WORD.findall(m.group(1))
        if len(words) > 1:
            out.append((" ".join(words), True))
        elif words:
            out.append((words[0], False))
        pos = m.end()
    out += [(w, False) for w in _WORD.findall(text[pos:])]
    return out


def fts_match(text: str) -> str:
    """An FTS5 MATCH expression for ``text``: every word (or phrase) must occur; the last word may be a prefix.

    Every word is quoted, so AND/OR/NOT/NEAR, '*', '^', ':' and parentheses
    typed by an officer are searched as text, never parsed as syntax.
    """
    terms = fts_terms(text)
    parts = []
    for i, (words, phrase) in enumerate(terms):
        quoted = '"' + words.replace('"', '""') + '"'
        if i == len(terms) - 1 and not phrase and len(words) >= 3:
            # The word itself is stemmed like the text (masks -> mask); the prefix is not, so keep both.
            quoted = f"({quoted} OR {quoted}*)"
        parts.append(quoted)
    return " AND ".join(parts)


# --- Plans and SQL ----------------------------------------------------------------------

# Equality indexes (each ends with ``retracted``) and the filters they answer on their own: the
# two-column searches, where FTS5 would intersect two long doclists (3 to 20 times slower,
# measured). A single filter is a walk along one token's doclist, as fast as an index.
EQ_INDEXES: tuple[tuple[str, frozenset[str]], ...] = (
    ("facets_origin_category", frozenset({"origin", "category"})),
    ("facets_route", frozenset({"departure", "destination"})),
)
# A date range is searched among the records created from EARLY_DAYS before it to LATE_DAYS
# after it (alerts are sent before they are due, seizures shared after they happen); records
# dated in the range but created outside that window are found by their date tokens.
EARLY_DAYS = 45
LATE_DAYS = 31
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Part:
    """One query of a plan: the rowids it selects from ``source``, newest first, in ``key`` order."""

    source: str
    where: str
    params: tuple[Any, ...]
    key: str = "rowid"

    def sql(self, *, before: bool = False) -> str:
        """The query (rowids older than a given one when ``before``); its last parameter is LIMIT."""
        where = f"{self.where} AND {self.key} < ?" if before else self.where
        return f"SELECT {self.key} FROM {self.source} WHERE {where} ORDER BY {self.key} DESC LIMIT ?"  # noqa: S608


@dataclass(frozen=True)
class Plan:
    """How a search finds its rowids, newest first.

    ``driver`` names the way (an index name, ``fts``, ``fts+dates``, ``scan``,
    ``scan+dates`` or ``empty``); ``parts`` cover disjoint rowid ranges, the
    newest range first, so their answers simply follow one another.
    """

    driver: str
    parts: tuple[Part, ...]
    match: str | None = None

    def rowids(self, conn: sqlite3.Connection, n: int, before: int | None = None) -> list[int]:
        """The newest ``n`` matching rowids (below ``before`` if given)."""
        out: list[int] = []
        for part in self.parts:
            if len(out) >= n:
                break
            args = (*part.params, before) if before is not None else part.params
            out += [r[0] for r in conn.execute(part.sql(before=before is not None), (*args, n - len(out)))]
        return out


EMPTY = Plan("empty", ())


def date_cover(since: datetime.date, until: datetime.date) -> list[str]:
    """The fewest day / month / year tokens (search_index.date_tags) whose dates are exactly since..until."""
    out: list[str] = []
    d = since
    one = datetime.timedelta(days=1)
    while d <= until:
        year_end = datetime.date(d.year, 12, 31)
        month_end = (d.replace(day=28) + datetime.timedelta(days=4)).replace(day=1) - one
        if d.month == 1 and d.day == 1 and year_end <= until:
            out.append(f"y{d.year:04d}")
            end = year_end
        elif d.day == 1 and month_end <= until:
            out.append(f"m{d.year:04d}{d.month:02d}")
            end = month_end
        else:
            out.append(f"d{d.year:04d}{d.month:02d}{d.day:02d}")
            end = d
        if end == datetime.date.max:
            break
        d = end + one
    return out


def _any(tokens: list[str]) -> str:
    return tokens[0] if len(tokens) == 1 else "(" + " OR ".join(tokens) + ")"


def _span(conn: sqlite3.Connection, expr: str) -> tuple[int, int] | None:
    """The lowest and highest rowid matching ``expr``; each end is one step of FTS5 from a doclist's end."""
    sql = "SELECT rowid FROM records_fts WHERE records_fts MATCH ? ORDER BY rowid {} LIMIT 1"
    lo = conn.execute(sql.format("ASC"), (expr,)).fetchone()
    hi = conn.execute(sql.format("DESC"), (expr,)).fetchone()
    return None if lo is None or hi is None else (lo[0], hi[0])


def _ms(day: str) -> int:
    return int(datetime.datetime.fromisoformat(day).replace(tzinfo=datetime.UTC).timestamp() * 1000)


def _date_check(key: str, since: str, until: str) -> tuple[str, tuple[Any, ...]]:
    """SQL true when the record at rowid ``key`` is dated ``since``..``until``, mostly decided by the rowid alone.

    A record of lag class k (search_index.LAG_DAYS) created on day c is dated
    c-k..c: certainly inside when since+k <= c <= until, certainly outside
    when c < since or c > until+k; only the rest (lag class 0, and the k
    days at either edge) has its date looked up in ``record_facets``.
    """
    start, end = _ms(since), _ms(until) + DAY_MS
    lookup = f"EXISTS (SELECT 1 FROM record_facets AS d WHERE d.rowid = {key} AND d.date >= ? AND d.date <= ?)"  # noqa: S608
    whens, params = [], []
    for cls in (1, 2, 3):
        k = LAG_DAYS[cls] * DAY_MS
        whens.append(f"WHEN {cls} THEN CASE WHEN {key} >= ? AND {key} < ? THEN 1 WHEN {key} < ? OR {key} >= ? THEN 0"
                     f" ELSE {lookup} END")
        params += [rowid_base(start + k), rowid_base(end), rowid_base(start), rowid_base(end + k), since, until]
    return f"CASE ({key} >> 4) & 3 {' '.join(whens)} ELSE {lookup} END", (*params, since, until)


def _with_dates(conn: sqlite3.Connection, q: SearchQuery, base: str | None, negative: list[str],
                facet_conds: list[str]) -> Plan:
    """A plan for a date range on top of ``base`` (an FTS5 expression, or None: only facet conditions).

    Rowids follow ``created``, which follows the date closely, so the main
    part walks only the records created in a window around the range
    (EARLY_DAYS before, LATE_DAYS after) and decides most of them by their
    rowid's lag class (``_date_check``). Records dated in the range but
    created outside the window are found by the range's day / month / year
    tokens, in a part above and a part below the window, which run only when
    the ends of those tokens' doclists (two cheap FTS5 steps) show there are
    any. Intersecting a wide range's dense month and year tokens all along,
    or subtracting its complement, cost several times more (measured at a
    million records).
    """
    low = conn.execute("SELECT min(date) FROM record_facets").fetchone()[0]
    high = conn.execute("SELECT max(date) FROM record_facets").fetchone()[0]
    if low is None:
        return EMPTY
    since, until = max(q.since or low, low), min(q.until or high, high)
    if since > until:
        return EMPTY
    # Every indexed record has a date, none outside the years of the oldest and newest held.
    a = datetime.date.fromisoformat(since) if since > low else datetime.date(int(low[:4]), 1, 1)
    b = datetime.date.fromisoformat(until) if until < high else datetime.date(int(high[:4]), 12, 31)
    inside = "tags : " + _any(date_cover(a, b))
    span = _span(conn, inside)
    if span is None:
        return EMPTY
    window_lo = max(span[0], rowid_base(_ms(since) - EARLY_DAYS * DAY_MS))
    window_hi = min(span[1], rowid_base(_ms(until) + (LATE_DAYS + 1) * DAY_MS))
    tail = f" NOT tags : {_any(negative)}" if negative else ""
    dated = f"({base} AND {inside}){tail}" if base else f"({inside}){tail}"
    parts = []
    if span[1] > window_hi:
        parts.append(Part("records_fts", "records_fts MATCH ? AND rowid > ?", (dated, window_hi)))
    if window_lo <= window_hi:
        if base:
            check, params = _date_check("records_fts.rowid", since, until)
            parts.append(Part("records_fts", f"records_fts MATCH ? AND rowid >= ? AND rowid <= ? AND {check}",
                              (f"({base}){tail}", window_lo, window_hi, *params)))
        else:
            conds = " AND ".join([*facet_conds, "f.date >= ?", "f.date <= ?"])
            parts.append(Part("record_facets AS f", f"f.rowid >= ? AND f.rowid <= ? AND {conds}",
                              (window_lo, window_hi, since, until), "f.rowid"))
    if span[0] < window_lo:
        parts.append(Part("records_fts", "records_fts MATCH ? AND rowid < ?", (dated, window_lo)))
    return Plan("fts+dates" if base else "scan+dates", tuple(parts), dated)


def plan(conn: sqlite3.Connection, q: SearchQuery, origins: tuple[str, ...] | None) -> Plan:
    """Choose how to run ``q``; ``origins`` are the node ids ``q.origin`` stands for (None: any origin).

    - Only equality filters that one index covers exactly (route; origin and
      category), retracted records left out: that index, which holds
      every column the search needs (``INDEXED BY``: our choice, not a guess
      from statistics that a growing store would make stale).
    - Words or any other filter: one FTS5 expression over ``text`` (the
      words) and ``tags`` (the filters), with ``rt1`` (retracted) subtracted.
    - Nothing that narrows the search: the table, backwards.
    A date range adds a window of rowids to either of the last two (see
    ``_with_dates``).
    """
    if origins is not None and not origins:
        return EMPTY
    eq: dict[str, str] = {}
    for name in ("kind", "category", "departure", "destination"):
        if getattr(q, name):
            eq[name] = getattr(q, name)
    if origins is not None and len(origins) == 1:
        eq["origin"] = origins[0]
    others = (q.text or q.hs_prefix or q.since or q.until or q.transit or q.tlp or q.transport_mode
              or q.has_feedback is not None or (origins is not None and len(origins) > 1))
    if eq and not others and not q.include_retracted:
        for name, cols in EQ_INDEXES:
            if cols == set(eq):
                conds = [f"{c} = ?" for c in eq]
                where = " AND ".join([*conds, "retracted = 0"])
                return Plan(name, (Part(f"record_facets INDEXED BY {name}", where, tuple(eq.values())),))
    positive: list[str] = []
    for prefix, name in (("kind", "kind"), ("cat", "category"), ("dep", "departure"), ("dst", "destination"),
                         ("tlp", "tlp"), ("mode", "transport_mode")):
        value = getattr(q, name)
        if value:
            positive.append(tag(prefix, value))
    positive += [tag("via", c) for c in q.transit]
    if origins is not None:
        positive.append(_any([tag("org", o) for o in origins]))
    if q.hs_prefix:
        n = len(q.hs_prefix)
        positive.append(f"hs{q.hs_prefix}" if n % 2 == 0 else f'"hs{q.hs_prefix}"*')
    if q.has_feedback:
        positive.append("fb1")
    negative = [t for t, wanted in (("rt1", not q.include_retracted), ("fb1", q.has_feedback is False)) if wanted]
    parts = []
    if q.text:
        parts.append(f"text : ({fts_match(q.text)})")
    if positive:
        parts.append("tags : (" + " AND ".join(positive) + ")")
    base = " AND ".join(parts) or None
    facet_conds = [c for c, wanted in (("f.retracted = 0", not q.include_retracted),
                                       ("f.has_feedback = 0", q.has_feedback is False)) if wanted]
    if q.since or q.until:
        return _with_dates(conn, q, base, negative, facet_conds)
    if base is None:
        return Plan("scan", (Part("record_facets AS f NOT INDEXED", " AND ".join(facet_conds) or "1", (),
                                  "f.rowid"),))
    match = f"({base}) NOT tags : {_any(negative)}" if negative else base
    return Plan("fts", (Part("records_fts", "records_fts MATCH ?", (match,)),), match)
