"""Shared fixtures: the test vectors of ../shared/vectors, copied into tests/vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

VECTORS = Path(__file__).parent / "vectors"


def load_vector(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


@pytest.fixture(scope="session")
def node_vectors() -> list[dict[str, Any]]:
    return load_vector("nodes.json")["nodes"]


@pytest.fixture(scope="session")
def bundle_vectors() -> dict[str, Any]:
    return load_vector("bundles.json")
