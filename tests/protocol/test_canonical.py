"""Canonical JSON and b64u: round trips and strict rejection."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import MAX_SAFE_INT, b64u_decode, b64u_encode, canonical, parse_json
from protocol.errors import MalformedJSON

values = st.recursive(
    st.none() | st.booleans() | st.integers(-MAX_SAFE_INT, MAX_SAFE_INT) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(values)
def test_canonical_round_trips(value):
    try:
        encoded = canonical(value)
    except MalformedJSON:  # lone surrogates in generated text
        return
    assert parse_json(encoded) == value
    assert canonical(parse_json(encoded)) == encoded


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=100))
def test_b64u_round_trips(raw):
    text = b64u_encode(raw)
    assert "=" not in text and b64u_decode(text) == raw


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_b64u_decode_raises_only_malformed(text):
    try:
        raw = b64u_decode(text)
    except MalformedJSON:
        return
    assert b64u_encode(raw) == text


@pytest.mark.parametrize("text", ['{"a":1,"a":2}', "[1e5]", "[Infinity]", "[-9007199254740992]", '"\\ud800"', "{", b"\xff"])
def test_parse_rejects(text):
    with pytest.raises(MalformedJSON):
        parse_json(text)


def test_key_order_is_by_code_point_and_text_stays_utf8():
    assert canonical({"é": 1, "z": 2, "A": 3}) == '{"A":3,"z":2,"é":1}'.encode()
    assert json.loads(canonical({"s": "ü"})) == {"s": "ü"}
    with pytest.raises(MalformedJSON):
        canonical({"x": 0.5})
