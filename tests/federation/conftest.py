from __future__ import annotations

import pytest

from tests.federation.harness import Federation


@pytest.fixture
async def fed(tmp_path):
    f = Federation(tmp_path)
    yield f
    await f.stop()
