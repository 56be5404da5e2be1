"""Small pieces the benchmark scripts share."""

from __future__ import annotations

import platform


def cpu_model() -> str:
    """The CPU's model name, for the machine line of a benchmark report."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
