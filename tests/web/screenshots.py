"""Write screenshots of the officers' pages (docs/img/*.png) from a fresh sample federation.

    .venv/bin/python -m tests.web.screenshots [OUT_DIR]     (default docs/img; scripts/screenshots runs this)
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from tests.federation.harness import Federation
from tests.web.helpers import build_wca, chromium, take_screenshots


async def main(out: Path) -> list[Path]:
    with tempfile.TemporaryDirectory(prefix="cenmesh-shots-") as tmp:
        fed = Federation(Path(tmp))
        _, ng, gh = build_wca(fed)
        await fed.start()
        try:
            async with chromium() as browser:
                return await take_screenshots(browser, fed, ng, gh, out)
        finally:
            await fed.stop()


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img")
    for path in asyncio.run(main(target)):
        print(path)
