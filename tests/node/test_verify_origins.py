"""A worker gets the descriptors of exactly the origins its bundles name, however the bundles are written."""

from __future__ import annotations

from typing import Any

from node.verify import Snapshot, _only_origins

A, B, C = ("n" + ch * 24 for ch in "abc")


def _kept(*objs: Any) -> set[str]:
    snapshot = Snapshot(me=C, is_hub=False, max_bundle_bytes=1000, origins={A: "da", B: "db", C: "dc"},  # type: ignore[dict-item]
                        enc_private=())
    return set(_only_origins(snapshot, list(objs)).origins)


def test_each_way_of_writing_the_origin_finds_it() -> None:
    assert _kept(f'{{"created":1,"origin":"{A}","v":1}}'.encode()) == {A}  # canonical text
    assert _kept(f'{{"origin" : "{A}", "v":1}}'.encode()) == {A}  # spaced
    assert _kept(f'{{"origin":"{A}","x":"origin","origin":"{B}"}}'.encode()) == {A, B}  # twice
    assert _kept(b'{"origin":"\\u006e' + A[1:].encode() + b'"}') == {A, B, C}  # escaped: every origin goes
    assert _kept({"origin": B}, f'{{"origin":"{A}"}}'.encode()) == {A, B}  # objects and texts mixed
    assert _kept(b'{"v":1}', b"[]") == set()


def test_a_small_directory_goes_whole_to_a_large_chunk() -> None:
    """Finding the origins costs more than sending three descriptors with six bundles."""
    six = [f'{{"origin":"{A}"}}'.encode()] * 6
    assert _kept(*six) == {A, B, C}
    assert _kept(*six[:5]) == {A}
