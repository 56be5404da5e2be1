from __future__ import annotations

import pytest

from tests.federation.harness import Federation
from tests.web.helpers import CHROMIUM, build_wca, chromium, have_chromium


@pytest.fixture
async def fed(tmp_path):
    f = Federation(tmp_path)
    yield f
    await f.stop()


@pytest.fixture
async def wca(fed):
    """(fed, hub, Nigeria, Ghana), all running."""
    hub, ng, gh = build_wca(fed)
    await fed.start()
    return fed, hub, ng, gh


@pytest.fixture
async def browser():
    if not have_chromium():
        pytest.skip(f"no Chromium at {CHROMIUM}: run scripts/install-browser (Debian's chromium package)")
    async with chromium() as b:
        yield b
