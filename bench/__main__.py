"""Run every bench/bench_*.py and print one table: ``python -m bench [NAME ...]``."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
from pathlib import Path

from bench.common import Result


def _modules(selected: list[str]) -> list[str]:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    return [n for n in names if not selected or any(s in n for s in selected)]


def _row(result: Result) -> str:
    verdict = {True: "ok", False: "MISSED", None: ""}[result.ok]
    value = f"{result.value:.4g} {result.unit}"
    return f"| {result.name} | {value} | {result.target} | {result.peer} | {verdict} |"


def main(argv: list[str]) -> int:
    print("| benchmark | measured | target | peer | |")
    print("|---|---|---|---|---|")
    failed = 0
    for name in _modules(argv):
        try:
            results = importlib.import_module(f"bench.{name}").run()
        except Exception:
            failed += 1
            print(f"| {name} | ERROR | | | |")
            traceback.print_exc()
            continue
        for result in results:
            print(_row(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
