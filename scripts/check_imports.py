"""Enforce DESIGN.md's import direction with the ast module (no regex guessing).

protocol <- crypto <- node, and config <- node. Nothing imports node.
protocol/ and crypto/ import no I/O framework and read no clock or random source.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IO_MODULES = {"aiohttp", "asyncio", "sqlite3", "sqlite_utils", "apscheduler", "time", "random",
              "secrets", "socket", "subprocess", "urllib", "requests", "os"}
FORBIDDEN = {
    "protocol": IO_MODULES | {"crypto", "node", "config"},
    "crypto": IO_MODULES | {"node", "config"},
    "config": {"node"},
}
# datetime is allowed in the pure core only for date arithmetic; reading the clock is not.
CLOCK_CALLS = {"now", "utcnow", "today", "time", "time_ns", "urandom", "token_bytes", "randbytes"}


def imported_roots(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def clock_reads(tree: ast.AST) -> list[tuple[int, str]]:
    return [
        (node.lineno, node.func.attr)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CLOCK_CALLS
    ]


def main() -> int:
    problems = []
    for package, banned in FORBIDDEN.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            rel = path.relative_to(ROOT)
            problems += [f"{rel}:{line}: imports {mod}" for line, mod in imported_roots(tree) if mod in banned]
            if package in ("protocol", "crypto"):
                problems += [f"{rel}:{line}: reads a clock or random source (.{call}())" for line, call in clock_reads(tree)]
    for line in problems:
        print(line)
    if problems:
        print(f"import rules: {len(problems)} violation(s)")
        return 1
    print("import rules: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
