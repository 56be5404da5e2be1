"""The audience picker of the seizure, alert and share forms.

Its choices come from what this node knows: national administrations from
the directory (by name and country), RILO regions from the descriptors'
regions, the operation groups this node is a member of (rosters, still
running), and the whole federation. ``check_audience`` refuses what could
not be sealed now (nobody picked, personal data to a public level or the
whole federation, a group that has ended), so nothing is kept half-sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from multidict import MultiMapping

from node import outbox
from node.context import Node
from node.pages import labels
from node.pages.forms import error_key
from protocol.audience import AudienceUnresolvable
from protocol.bundle import Audience
from protocol.errors import InvalidMessage, RecordRefused


@dataclass
class AudienceState:
    """What the picker offers and what was picked."""

    nodes: list[tuple[str, str, str]] = field(default_factory=list)  # (id, name, country)
    regions: list[str] = field(default_factory=list)
    groups: list[tuple[str, str]] = field(default_factory=list)  # (name, until)
    share_now: bool = True
    scope: str = "region"
    picked_nodes: tuple[str, ...] = ()
    region: str = ""
    group: str = ""
    urgent: bool = False


def audience_state(node: Node, form: MultiMapping[Any] | None = None) -> AudienceState:
    """The choices from the directory and rosters; the picks from ``form`` (defaults: our first region)."""
    now = node.now_ms()
    st = AudienceState()
    live = [d for d in node.directory.values() if not d.revoked]
    st.nodes = sorted(((d.node, d.name, d.country) for d in live if d.role == "national" and d.node != node.node_id),
                      key=lambda t: (t[1], t[0]))
    st.regions = sorted({r for d in live for r in d.regions})
    st.groups = [(name, labels.when(r.not_after)[:10]) for name, r in sorted(node.rosters.items())
                 if node.node_id in r.members and r.not_after > now]
    st.region = (node.descriptor.regions or ("",))[0]
    st.group = st.groups[0][0] if st.groups else ""
    if form is not None:
        st.share_now = form.get("share_now") == "on"
        st.scope = str(form.get("audience", ""))
        st.picked_nodes = tuple(str(v) for v in form.getall("audience_nodes", []))
        st.region = str(form.get("audience_region", st.region))
        st.group = str(form.get("audience_group", st.group))
        st.urgent = form.get("urgent") == "on"
    return st


def picked_audience(st: AudienceState) -> Audience:
    """The Audience the picker describes; InvalidMessage (field ``audience``) says what is missing."""
    if st.scope == "nodes":
        known = {n for n, _, _ in st.nodes}
        chosen = [n for n in st.picked_nodes if n in known]
        if not chosen:
            raise InvalidMessage("audience", "tick at least one administration")
        return Audience.parse_spec("nodes:" + ",".join(chosen))
    if st.scope == "region":
        if st.region not in st.regions:
            raise InvalidMessage("audience", "choose a RILO region")
        return Audience.parse_spec("region:" + st.region)
    if st.scope == "group":
        if st.group not in [g for g, _ in st.groups]:
            raise InvalidMessage("audience", "choose an operation group this node belongs to")
        return Audience.parse_spec(st.group)
    if st.scope == "federation":
        return Audience("federation")
    raise InvalidMessage("audience", "choose who receives it")


def check_audience(node: Node, kind: str, record: dict[str, Any], st: AudienceState) -> tuple[Audience | None,
                                                                                              dict[str, str]]:
    """(audience, {}) when ``record`` can be sealed to the picked audience now, else (None, errors)."""
    try:
        audience = picked_audience(st)
        outbox.check_batch(node, kind, [record], audience)
    except InvalidMessage as exc:
        return None, {"audience": exc.why}
    except RecordRefused as exc:
        return None, {error_key(kind, exc.field) or "audience": exc.why.removeprefix(f"record {record['id']}: ")}
    except AudienceUnresolvable as exc:
        return None, {"audience": str(exc)}
    return audience, {}
