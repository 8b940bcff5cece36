"""Benchmark runner: `python -m bench` runs every benchmark; `python -m bench NAME [args]` one."""

from __future__ import annotations

import importlib
import sys

# name -> module exposing `main(argv: list[str]) -> int`
BENCHMARKS = {
    "model": "bench.model",
    "policy": "bench.policy",
    "feed": "bench.feed",
    "rollout": "bench.rollout",
    "learn": "bench.learn",
    "pcc": "bench.pcc",
    "chaos": "bench.chaos",
    "reload": "bench.reload",
    "p4runtime": "bench.p4runtime",
    "p4rt-server": "bench.p4rt_server",
}


def main(argv: list[str]) -> int:
    """Dispatch to one benchmark, or run them all with their defaults."""
    if argv and argv[0] in ("-h", "--help"):
        print("usage: python -m bench [" + "|".join(BENCHMARKS) + "] [options]")
        return 0
    if argv:
        name, rest = argv[0], argv[1:]
        if name not in BENCHMARKS:
            print(
                f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr
            )
            return 2
        return int(importlib.import_module(BENCHMARKS[name]).main(rest))
    status = 0
    for module in BENCHMARKS.values():
        status |= int(importlib.import_module(module).main([]))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
