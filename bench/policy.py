"""Policy benchmark: simulated balancing quality per policy, bucket entries, layout churn, timing.

`python -m bench policy [--json PATH] [--seeds N]`. Tables:
1. quality per policy in `policy.simulation` (servers of 1, 2, 3, 4 cores; the 4-core server
   loses half its capacity mid-run), averaged over seeds (settling: median);
2. LPM entries: naive (one per bucket) vs sum popcount vs ours, at 2^8, 2^12, 2^16 buckets;
3. layout churn over random weight walks (every member's capacity drifts 5 % per round): hash
   values moved vs the 1/2 L1 minimum, and entries, for several entry budgets;
4. time to compute shares, weights and entries for 1,000 members at 2^16 buckets, and to relayout
   from the previous entries after a 2 % nudge to every weight (1,000 and 64 members).
With --json PATH the tables go to PATH, PATH-entries, PATH-churn and PATH-timing (.json).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench.report import emit
from policy import Observations, make_policy, quantize
from policy.buckets import (
    bucket_owner,
    naive_entries,
    popcount_bound,
    prefix_entries,
)
from policy.simulation import SimConfig, simulate, summarise

HASH_BITS = 16
CAPACITIES = (1.0, 2.0, 3.0, 4.0)
RUNS: list[tuple[str, str, list[float], float | None]] = [
    ("static (configured 1:2:3:4)", "static", list(CAPACITIES), None),
    ("equal", "equal", [1.0] * 4, None),
    ("connections", "connections", [1.0] * 4, None),
    ("cpu", "cpu", [1.0] * 4, None),
    ("ratio (default)", "ratio", [1.0] * 4, None),
    ("ratio, strict entry budget (popcount)", "ratio", [1.0] * 4, 1.0),
    ("ratio, entry budget 2x popcount", "ratio", [1.0] * 4, 2.0),
]


def quality_rows(seeds: int) -> list[dict[str, Any]]:
    """Table 1: the simulation's quality figures per policy."""
    rows = []
    for label, name, initial, budget in RUNS:
        config = SimConfig(capacities=CAPACITIES, entry_budget=budget)
        runs = []
        for seed in range(seeds):
            policy = make_policy(name, len(CAPACITIES), initial)
            runs.append(summarise(simulate(policy, config, np.random.default_rng(seed)), config))
        moved = statistics.fmean(q.moved_per_rollout for q in runs)
        least = statistics.fmean(q.min_moved_per_rollout for q in runs)
        rows.append(
            {
                "policy": label,
                "steady max/mean": statistics.fmean(q.steady_max_mean for q in runs),
                "after-step max/mean": statistics.fmean(q.after_max_mean for q in runs),
                "overshoot %": 100 * statistics.fmean(q.overshoot for q in runs),
                "settling rounds": statistics.median(q.settling_rounds for q in runs),
                "reversals": statistics.fmean(q.reversals for q in runs),
                "moved/rollout": moved,
                "1/2 L1/rollout": least,
                "moved / min": moved / least if least else math.nan,
                "entries": statistics.fmean(q.mean_entries for q in runs),
            }
        )
    return rows


BUDGETS: list[tuple[str, float | None]] = [
    ("max(popcount, installed) (default)", None),
    ("popcount (strict)", 1.0),
    ("2x popcount", 2.0),
    ("none", math.inf),
]


def random_weights(rng: np.random.Generator, members: int, bits: int) -> NDArray[np.int64]:
    """Weights for members of random capacity (0.5-4), summing to 2**bits."""
    return quantize(rng.uniform(0.5, 4.0, members), 1 << bits)


def entry_rows(rng: np.random.Generator) -> list[dict[str, Any]]:
    """Table 2: entries per layout at three space sizes and several pool sizes."""
    rows = []
    for bits in (8, 12, 16):
        for members in (4, 16, 100, 1000):
            if members > 1 << bits:
                continue
            w = random_weights(rng, members, bits)
            entries = prefix_entries(w, HASH_BITS)
            assert (
                np.bincount(bucket_owner(entries, HASH_BITS), minlength=members).tolist()
                == (w << (HASH_BITS - bits)).tolist()
            )
            rows.append(
                {
                    "buckets": f"2^{bits}",
                    "members": members,
                    "naive": len(naive_entries(w)),
                    "sum popcount": popcount_bound(w),
                    "prefix (ours)": len(entries),
                    "ours / popcount": len(entries) / popcount_bound(w),
                }
            )
    return rows


def churn_rows(rng: np.random.Generator, rounds: int = 40) -> list[dict[str, Any]]:
    """Table 3: moved vs minimum and entries over random walks of the weights."""
    rows = []
    for members, bits in ((4, 8), (16, 8), (100, 12)):
        for budget_label, factor in BUDGETS:
            walk = np.random.default_rng(int(rng.integers(1 << 30)))
            capacity = walk.uniform(0.5, 4.0, members)
            w = quantize(capacity, 1 << bits)
            entries = prefix_entries(w, HASH_BITS)
            moved = least = 0
            counts = []
            for _ in range(rounds):
                capacity = capacity * np.exp(walk.normal(0, 0.05, members))
                new = quantize(capacity, 1 << bits, w)
                limit = None if factor is None else int(min(factor * popcount_bound(new), 1 << 30))
                new_entries = prefix_entries(new, HASH_BITS, entries, max_entries=limit)
                before = bucket_owner(entries, HASH_BITS)
                moved += int(np.count_nonzero(before != bucket_owner(new_entries, HASH_BITS)))
                least += int(np.abs(new - w).sum()) // 2 << (HASH_BITS - bits)
                counts.append(len(new_entries))
                w, entries = new, new_entries
            fresh = len(prefix_entries(w, HASH_BITS))
            rows.append(
                {
                    "members": members,
                    "buckets": f"2^{bits}",
                    "entry budget": budget_label,
                    "moved / min": moved / least if least else math.nan,
                    "mean entries": statistics.fmean(counts),
                    "fresh entries": fresh,
                    "sum popcount": popcount_bound(w),
                }
            )
    return rows


def _best_ms(fn: Callable[[], object], repeat: int = 7) -> float:
    """Best wall time of `fn` in milliseconds."""
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def timing_rows(rng: np.random.Generator) -> list[dict[str, Any]]:
    """Table 4: time for 1,000 members at 2^16 buckets, and the relayout for 64 members."""
    n = 1000
    capacity = rng.uniform(0.5, 4.0, n)
    policy = make_policy("ratio", n, [1.0] * n, {"blackout": 0.0})
    cpu = np.full(n, 0.6)
    obs = Observations.fresh(cpu, capacity * 100 * cpu)
    for k in range(3):
        policy.update(float(k), obs)
    shares = policy.update(3.0, obs)
    weights = quantize(shares, 1 << HASH_BITS)
    entries = prefix_entries(weights, HASH_BITS)
    nudged = quantize(shares * np.exp(rng.normal(0, 0.02, n)), 1 << HASH_BITS, weights)

    def fresh() -> object:
        s = policy.update(4.0, obs)
        return prefix_entries(quantize(s, 1 << HASH_BITS, weights), HASH_BITS)

    rows = [
        {
            "step (2^16 buckets)": "1,000 members: ratio update + quantize + entries (fresh)",
            "best ms": _best_ms(fresh, 21),
            "entries": len(entries),
            "moved / min": math.nan,
        }
    ]
    small = rng.uniform(0.5, 4.0, 64)
    small_weights = quantize(small / small.sum(), 1 << HASH_BITS)
    small_entries = prefix_entries(small_weights, HASH_BITS)
    small_nudged = quantize(
        small * np.exp(rng.normal(0, 0.02, 64)) / small.sum(), 1 << HASH_BITS, small_weights
    )
    cases = [
        ("1,000", nudged, entries, None, "default"),
        ("1,000", nudged, entries, 2 * popcount_bound(nudged), "2x popcount"),
        ("64", small_nudged, small_entries, None, "default"),
    ]
    for members, new, old, budget, label in cases:
        after = prefix_entries(new, HASH_BITS, old, budget)
        before_w = np.bincount(bucket_owner(old, HASH_BITS), minlength=len(new))
        least = int(np.abs(new - before_w).sum()) // 2
        moved = int(
            np.count_nonzero(bucket_owner(old, HASH_BITS) != bucket_owner(after, HASH_BITS))
        )
        rows.append(
            {
                "step (2^16 buckets)": f"{members} members: entries with previous, 2 % nudge to"
                f" all, budget {label}",
                "best ms": _best_ms(partial(prefix_entries, new, HASH_BITS, old, budget), 7),
                "entries": len(after),
                "moved / min": moved / least if least else math.nan,
            }
        )
    return rows


def main(argv: list[str]) -> int:
    """Run the policy benchmark and print its tables."""
    parser = argparse.ArgumentParser(prog="python -m bench policy", description=__doc__)
    parser.add_argument("--json", type=Path, default=None, help="write the tables as JSON")
    parser.add_argument("--seeds", type=int, default=3, help="simulation seeds per policy")
    args = parser.parse_args(argv)

    json_path: Path | None = args.json

    def path(suffix: str) -> Path | None:
        if json_path is None:
            return None
        return json_path.with_name(f"{json_path.stem}{suffix}{json_path.suffix or '.json'}")

    rng = np.random.default_rng(2024)
    emit(
        "Policy quality in simulation (servers 1/2/3/4 cores; 4-core server halves mid-run)",
        quality_rows(args.seeds),
        path(""),
    )
    emit("LPM entries for one pool's weights", entry_rows(rng), path("-entries"))
    emit("Layout churn over 40 random weight changes", churn_rows(rng), path("-churn"))
    emit("Time to new weights and entries", timing_rows(rng), path("-timing"))
    return 0
