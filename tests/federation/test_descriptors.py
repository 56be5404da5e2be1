"""Descriptor updates: key rotation is accepted as an update, a change of standing is not."""

from __future__ import annotations

import json

from crypto.descriptor import make_descriptor
from node import admin
from node.keystore import KeyStore
from protocol.descriptor import parse_descriptor


def build(fed):
    fed.add("WCA hub", "CI", "hub", ["WCA"])
    fed.add("Nigeria", "NG", "national", ["WCA"])
    fed.add("Ghana", "GH", "national", ["WCA"])
    fed.wire()


def republish(member, **changes):
    """Ghana signs a new descriptor itself (seq + 1), changing what ``changes`` says."""
    keys = KeyStore(member.home)
    current = parse_descriptor(keys.descriptor())
    fields = {"name": current.name, "country": current.country, "role": current.role,
              "regions": list(current.regions), "endpoints": list(current.endpoints)}
    fields.update(changes)
    return make_descriptor(keys.identity(), seq=current.seq + 1, enc_keys=keys.enc_windows(),
                           issued=current.issued + 1, **fields).obj


async def test_rotated_keys_are_accepted_but_a_new_role_or_region_is_not(fed):
    build(fed)
    await fed.start()
    ng, gh = fed.members["Nigeria"], fed.members["Ghana"]
    KeyStore(gh.home).add_encryption_key(not_before=ng.node.now_ms())
    rotated = republish(gh)
    change = await ng.node.merge_descriptors([rotated], source="test")
    assert change.updated == 1 and ng.node.directory[gh.node_id].seq == rotated["seq"]

    for attack in (republish(gh, role="hub"), republish(gh, regions=["WCA", "AP"]), republish(gh, country="NG")):
        attack["seq"] = rotated["seq"] + 1
        attack = {**attack, "sig": attack["sig"]}
        before = ng.node.directory[gh.node_id]
        change = await ng.node.merge_descriptors([attack], source="test")
        assert change.refused == 1, attack
        assert ng.node.directory[gh.node_id] == before


async def test_endorsement_of_a_changed_standing_is_accepted(fed):
    build(fed)
    await fed.start()
    ng, gh, hub = fed.members["Nigeria"], fed.members["Ghana"], fed.members["WCA hub"]
    moved = republish(gh, regions=["WCA", "AP"])
    path = fed.root / "moved.json"
    path.write_text(json.dumps(moved))
    endorsed = admin.endorse_file(str(hub.home), str(path))
    change = await ng.node.merge_descriptors([endorsed], source="test")
    assert change.updated == 1
    assert ng.node.directory[gh.node_id].regions == ("WCA", "AP")


async def test_a_running_node_serves_its_descriptor_once_endorsed_again(fed):
    build(fed)
    await fed.start()
    gh, hub = fed.members["Ghana"], fed.members["WCA hub"]
    KeyStore(gh.home).add_encryption_key(not_before=gh.node.now_ms())
    keys_before = len(gh.node.descriptor.enc_keys)
    rotated = republish(gh)
    KeyStore(gh.home).save_descriptor({**rotated, "endorsements": []})
    path = fed.root / "rotated.json"
    path.write_text(json.dumps(rotated))
    path.write_text(json.dumps(admin.endorse_file(str(hub.home), str(path))))
    admin.directory_add(str(gh.home), str(path))
    await gh.driver.sync_all()  # a sync round re-reads trust and our own descriptor
    assert gh.node.descriptor.seq == rotated["seq"]
    assert len(gh.node.descriptor.enc_keys) == keys_before + 1
    assert len(gh.node.enc_keys) == keys_before + 1  # and can open what is sealed to the new key
    assert [e.by for e in gh.node.descriptor.endorsements] == [hub.node_id]


async def test_directory_answer_follows_an_updated_descriptor(fed):
    """The hub keeps its encoded directory between requests, but never serves it stale."""
    build(fed)
    await fed.start()
    ng, gh, hub = fed.members["Nigeria"], fed.members["Ghana"], fed.members["WCA hub"]
    client = ng.driver.client
    first, etag = await client.directory(hub.url, None)
    assert first is not None and etag
    again, same = await client.directory(hub.url, etag)
    assert again is None and same == etag  # 304: nothing changed

    KeyStore(gh.home).add_encryption_key(not_before=ng.node.now_ms())
    rotated = republish(gh)
    assert (await hub.node.merge_descriptors([rotated], source="test")).updated == 1
    changed, new_etag = await client.directory(hub.url, etag)
    assert changed is not None and new_etag != etag
    assert {json.dumps(d, sort_keys=True) for d in changed} >= {json.dumps(rotated, sort_keys=True)}
