"""Words the pages show for codes: TLP levels, handling codes, categories, audiences, times.

The TLP meanings are those of FIRST's Traffic Light Protocol 2.0. PROTOCOL.md
lists the handling codes ``H0``..``H3`` without defining them; the meanings
below are the ones the pages and docs/officers.md show, kept in this one
table so that a change of wording is made once.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import pycountry

from node.context import Node
from protocol.records import SEIZURE_CATEGORIES

# (short meaning, who may see it) after FIRST TLP 2.0.
TLP: dict[str, tuple[str, str]] = {
    "CLEAR": ("No limit on disclosure", "may be shared publicly, subject to the usual rules on publication"),
    "GREEN": ("Community only", "may be shared with partner agencies in the enforcement community, not published"),
    "AMBER": ("Need to know", "may be shared within your administration and with its partners who need to know"),
    "AMBER+STRICT": ("Your administration only", "may be shared only within your own administration, "
                                                 "on a need-to-know basis"),
    "RED": ("Named recipients only", "for the people it was given to; do not pass it on, not even within "
                                     "your administration"),
}

HANDLING: dict[str, tuple[str, str]] = {
    "H0": ("No extra conditions", "use it within the TLP level"),
    "H1": ("Law enforcement", "may be passed to other law-enforcement agencies of your country"),
    "H2": ("Ask first", "ask the sending administration before passing it on or acting on it openly"),
    "H3": ("Intelligence only", "not to be used as evidence or disclosed without the sender's written consent"),
}

CATEGORIES: dict[str, str] = {
    "ipr": "Intellectual property (IPR)", "medicines": "Medicines", "drugs": "Drugs", "tobacco": "Tobacco",
    "alcohol": "Alcohol", "weapons": "Weapons", "explosives": "Explosives", "environment": "Environment",
    "cultural-heritage": "Cultural heritage", "currency": "Currency", "revenue": "Revenue", "other": "Other",
}
assert set(CATEGORIES) == set(SEIZURE_CATEGORIES)

# Shorter names where space is tight (chart labels).
CATEGORY_SHORT = {**CATEGORIES, "ipr": "IPR"}

OUTCOMES: dict[str, str] = {
    "acknowledged": "Acknowledged (received, no result yet)",
    "examined-seized": "Examined: goods seized",
    "examined-clear": "Examined: nothing found",
    "not-arrived": "Consignment did not arrive",
    "monitoring": "Being monitored",
}

KIND_NAMES = {"seizure": "Seizure", "alert": "Alert", "message": "Message", "feedback": "Feedback",
              "retract": "Retraction", "roster": "Group roster"}


def country_name(code: str | None) -> str:
    """``Nigeria`` for ``NG``; the code itself when unknown."""
    if not code:
        return ""
    if code == "XK":
        return "Kosovo"
    c = pycountry.countries.get(alpha_2=code)
    return str(getattr(c, "common_name", None) or c.name) if c is not None else code


def countries() -> list[tuple[str, str]]:
    """(code, name) of every country, by name: the choices of the country inputs."""
    items = [(c.alpha_2, str(getattr(c, "common_name", None) or c.name)) for c in pycountry.countries]
    return sorted([*items, ("XK", "Kosovo")], key=lambda kv: kv[1])


def node_name(node: Node, node_id: str | None) -> str:
    """An administration's name from the directory, or its id."""
    if not node_id:
        return ""
    d = node.directory.get(node_id)
    return d.name if d is not None else node_id


def audience_words(node: Node, spec: str) -> str:
    """``nodes:ID,ID`` / ``region:WCA`` / ``op:NAME`` / ``federation`` in an officer's words."""
    if spec == "federation":
        return "the whole federation"
    if spec.startswith("region:"):
        return f"RILO region {spec.removeprefix('region:')}"
    if spec.startswith("op:"):
        return f"operation group {spec}"
    if spec.startswith("nodes:"):
        ids = [n for n in spec.removeprefix("nodes:").split(",") if n]
        return ", ".join(node_name(node, n) for n in ids)
    return spec


def when(ms: int | None) -> str:
    """A UTC time to the minute."""
    if ms is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms / 1000))


def ago(ms: int | None, now_ms: int) -> str:
    """How long ago, in the largest fitting unit."""
    if ms is None:
        return "never"
    s = max(0, (now_ms - ms) // 1000)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= size:
            n = s // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now" if s < 10 else f"{s} s ago"


def today(node: Node) -> str:
    """The node's UTC date."""
    return datetime.datetime.fromtimestamp(node.clock(), datetime.UTC).date().isoformat()


def filters() -> dict[str, Any]:
    """The Jinja2 filters the templates use."""
    return {"when": when, "country": country_name, "category": lambda c: CATEGORIES.get(c or "", c or "none"),
            "kindname": lambda k: KIND_NAMES.get(k, k), "outcome": lambda o: OUTCOMES.get(o, o)}
