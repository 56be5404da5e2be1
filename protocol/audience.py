"""Who may receive what (PROTOCOL.md sections 3 and 4), as pure functions of a directory.

A *directory* is the set of descriptors this node has accepted, keyed by node
id. Rules:

- ``nodes``: the named nodes; ``group region:X``: accepted nodes whose
  descriptor lists X (a hub serving X is one of them); ``group op:NAME``: the
  members of the group's latest roster, while it is in force;
  ``federation``: every accepted node. Revoked nodes never receive.
- The origin is always a recipient, so it can read its own history.
- Serving: a bundle goes to a caller only if the caller is a recipient, or
  the caller is an accepted, unrevoked hub (hubs relay the cleartext header).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from protocol.bundle import Audience, Bundle
from protocol.descriptor import Descriptor
from protocol.errors import LocalProtocolError

Directory = Mapping[str, Descriptor]


@dataclass(frozen=True)
class Roster:
    """The members of a closed operation group, as its owner last sent them."""

    group: str
    owner: str
    members: tuple[str, ...]
    not_after: int


class AudienceUnresolvable(LocalProtocolError):
    """The audience names nodes or a group this node cannot seal to."""


def audience_members(
    audience: Audience, directory: Directory, rosters: Mapping[str, Roster], *, now_ms: int
) -> set[str]:
    """The node ids an audience means today, before adding the origin."""
    live = {n for n, d in directory.items() if not d.revoked}
    if audience.scope == "federation":
        return live
    if audience.scope == "nodes":
        unknown = [n for n in audience.nodes if n not in live]
        if unknown:
            raise AudienceUnresolvable(f"not accepted or revoked: {', '.join(unknown)}")
        return set(audience.nodes)
    if audience.group.startswith("region:"):
        region = audience.group.removeprefix("region:")
        return {n for n in live if region in directory[n].regions}
    roster = rosters.get(audience.group)
    if roster is None:
        raise AudienceUnresolvable(f"no roster known for {audience.group}")
    if roster.not_after <= now_ms:
        raise AudienceUnresolvable(f"{audience.group} ended at {roster.not_after}; nothing new is sealed to it")
    return {n for n in roster.members if n in live}


def resolve_recipients(
    audience: Audience,
    origin: str,
    directory: Directory,
    rosters: Mapping[str, Roster],
    *,
    now_ms: int,
) -> dict[str, bytes]:
    """Recipients (node id -> X25519 key valid at ``now_ms``), origin included, ready to seal.

    Raises AudienceUnresolvable when a named node is unknown, a group has no
    roster, or a recipient has no encryption key valid at ``now_ms``.
    """
    members = audience_members(audience, directory, rosters, now_ms=now_ms) | {origin}
    keys: dict[str, bytes] = {}
    for node in sorted(members):
        descriptor = directory.get(node)
        key = descriptor.enc_key_at(now_ms) if descriptor else None
        if key is None:
            raise AudienceUnresolvable(f"{node} has no encryption key valid now")
        keys[node] = key
    if len(keys) > 512:
        raise AudienceUnresolvable(f"{len(keys)} recipients; a bundle holds at most 512")
    return keys


def may_receive(caller: str, bundle: Bundle, directory: Directory) -> bool:
    """The serving rule of section 4: a recipient, or an accepted, unrevoked hub."""
    return may_receive_header(caller, bundle.recipient_ids, directory)


def may_receive_header(caller: str, recipients: tuple[str, ...] | list[str], directory: Directory) -> bool:
    """may_receive for a stored bundle known only by its recipient list."""
    if caller in recipients:
        return True
    descriptor = directory.get(caller)
    return descriptor is not None and descriptor.is_hub and not descriptor.revoked


def origin_acceptable(origin: str, created: int, directory: Directory) -> str | None:
    """Step 3 of section 3.1; returns a reason code or None when the origin is fine."""
    descriptor = directory.get(origin)
    if descriptor is None:
        return "unknown-origin"
    if descriptor.revoked and created > descriptor.issued:
        return "revoked-origin"
    return None
