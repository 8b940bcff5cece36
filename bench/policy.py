"""Policy benchmark: every policy and peer on the same scenarios, bucket entries, churn, timing.

`python -m bench policy [--json PATH] [--seeds N]`. Tables:
1. per scenario (`bench.policy_scenarios`): steady state on 1:2:3:4 and on 16 heterogeneous
   servers (with 8- and 12-bit weights), a capacity step, a x2 load surge, an outage and
   return, an idle pool; every policy and the peers (gRPC weighted_round_robin, LVS wlc),
   median (range) over N seeds (default 10);
2. LPM entries: naive (one per bucket) vs sum popcount vs the fewest possible (ours) vs the
   previous layout (`policy.layout`), at 2^8, 2^12, 2^16 buckets, over 10 random pools each;
3. churn with the entry budget the controller uses (`controller.weighting.entry_budget`, copied
   here as `controller_budget`): one member halving or doubling in 16- and 64-member pools after
   20 rounds of drift, and smooth drift of 1,000 members at 2^16, at DIP_TABLE_SIZE 16,384 and
   65,536; moved hash values vs the 1/2 L1 minimum;
4. layout churn over random weight walks for several fixed budgets;
5. time to compute shares, weights and entries for 1,000 members at 2^16 buckets, and to relayout
   from the previous entries after a 2 % nudge to every weight (1,000 and 64 members).
With --json PATH the tables go to PATH-<scenario>, PATH-entries, PATH-changes, PATH-churn and
PATH-timing (.json).
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

from bench.policy_scenarios import SCENARIOS, STEP_SCENARIO, estimate_rows, scenario_rows
from bench.report import emit
from policy import Observations, make_policy, quantize
from policy.buckets import (
    PrefixEntry,
    bucket_owner,
    moved_values,
    popcount_bound,
    prefix_entries,
)
from policy.layout import fresh_layout
from policy.optimal import minimal_entry_count

HASH_BITS = 16
CAPACITIES = (1.0, 2.0, 3.0, 4.0)
BUDGETS: list[tuple[str, float | None]] = [
    ("max(popcount, installed) (default)", None),
    ("popcount (strict)", 1.0),
    ("2x popcount", 2.0),
    ("none", math.inf),
]


def random_weights(rng: np.random.Generator, members: int, bits: int) -> NDArray[np.int64]:
    """Weights for members of random capacity (0.5-4), summing to 2**bits."""
    return quantize(rng.uniform(0.5, 4.0, members), 1 << bits)


def entry_rows(rng: np.random.Generator, pools: int = 10) -> list[dict[str, Any]]:
    """Table 2: entries per layout at three space sizes and several pool sizes."""
    rows = []
    for bits in (8, 12, 16):
        for members in (4, 16, 100, 1000):
            if members > 1 << bits:
                continue
            pop, best, old = [], [], []
            for _ in range(pools):
                w = random_weights(rng, members, bits)
                entries = prefix_entries(w, HASH_BITS)
                assert (
                    np.bincount(bucket_owner(entries, HASH_BITS), minlength=members).tolist()
                    == (w << (HASH_BITS - bits)).tolist()
                )
                assert len(entries) == minimal_entry_count(w, bits)
                pop.append(popcount_bound(w))
                best.append(len(entries))
                old.append(len(fresh_layout(w, bits)))
            rows.append(
                {
                    "buckets": f"2^{bits}",
                    "members": members,
                    "naive": 1 << bits,
                    "sum popcount": statistics.median(pop),
                    "fewest (ours)": statistics.median(best),
                    "ours / popcount": _range([b / p for b, p in zip(best, pop, strict=True)]),
                    "previous layout / fewest": _range(
                        [o / b for o, b in zip(old, best, strict=True)]
                    ),
                }
            )
    return rows


def _range(values: list[float]) -> str:
    """ "median (min-max)" with two decimals."""
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def controller_budget(weights: NDArray[np.int64], table_size: int, slots: int, pools: int) -> int:
    """The controller's entry budget (controller.weighting.entry_budget, same formula)."""
    bound = popcount_bound(weights)
    return max(min(2 * bound, table_size // (slots * max(pools, 1))), bound)


def _drift(
    rng: np.random.Generator, members: int, bits: int, rounds: int, table: int
) -> tuple[NDArray[np.float64], NDArray[np.int64], list[PrefixEntry], int, int]:
    """A pool after `rounds` of 5 % drift: capacities, weights, entries, moved, minimum."""
    capacity = rng.uniform(0.5, 4.0, members)
    w = quantize(capacity, 1 << bits)
    entries = prefix_entries(w, HASH_BITS)
    moved = least = 0
    for _ in range(rounds):
        capacity = capacity * np.exp(rng.normal(0, 0.05, members))
        new = quantize(capacity, 1 << bits, w)
        budget = controller_budget(new, table, 4, 1)
        new_entries = prefix_entries(new, HASH_BITS, entries, budget)
        moved += moved_values(entries, new_entries, HASH_BITS)
        least += int(np.abs(new - w).sum()) // 2 << (HASH_BITS - bits)
        w, entries = new, new_entries
    return capacity, w, entries, moved, least


def change_rows(seeds: int) -> list[dict[str, Any]]:
    """Table 3: churn of single-member changes and of large-pool drift, controller budget."""
    rows = []
    for members in (16, 64):
        for factor, label in ((0.5, "halves"), (2.0, "doubles")):
            ratios, entries_after, budgets = [], [], []
            for seed in range(seeds):
                rng = np.random.default_rng(seed)
                capacity, w, entries, _, _ = _drift(rng, members, 8, 20, 16384)
                capacity[int(rng.integers(members))] *= factor
                new = quantize(capacity, 1 << 8, w)
                budget = controller_budget(new, 16384, 4, 1)
                after = prefix_entries(new, HASH_BITS, entries, budget)
                least = int(np.abs(new - w).sum()) // 2 << (HASH_BITS - 8)
                ratios.append(moved_values(entries, after, HASH_BITS) / least)
                entries_after.append(len(after))
                budgets.append(budget)
            rows.append(
                {
                    "case": f"{members} members at 2^8, one {label} (after 20 rounds of drift)",
                    "DIP_TABLE_SIZE": 16384,
                    "moved / min": _range(ratios),
                    "entries": statistics.median(entries_after),
                    "budget": statistics.median(budgets),
                }
            )
    for table in (16384, 65536):
        ratios, entries_after, budgets = [], [], []
        for seed in range(max(3, seeds // 3)):
            _, w, entries, moved, least = _drift(np.random.default_rng(seed), 1000, 16, 30, table)
            ratios.append(moved / least)
            entries_after.append(len(entries))
            budgets.append(controller_budget(w, table, 4, 1))
        rows.append(
            {
                "case": "1,000 members at 2^16, 30 rounds of 5 % drift",
                "DIP_TABLE_SIZE": table,
                "moved / min": _range(ratios),
                "entries": statistics.median(entries_after),
                "budget": statistics.median(budgets),
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
    parser.add_argument("--seeds", type=int, default=10, help="seeds per scenario")
    args = parser.parse_args(argv)

    json_path: Path | None = args.json

    def path(suffix: str) -> Path | None:
        if json_path is None:
            return None
        return json_path.with_name(f"{json_path.stem}{suffix}{json_path.suffix or '.json'}")

    rng = np.random.default_rng(2024)
    for number, (title, config) in enumerate(SCENARIOS, start=1):
        emit(f"Scenario {number}: {title}", scenario_rows(config, args.seeds), path(f"-{number}"))
    emit(
        f"ratio's capacity estimate after the step (scenario {STEP_SCENARIO + 1}, 40 seeds)",
        estimate_rows(SCENARIOS[STEP_SCENARIO][1], 40),
        path("-estimate"),
    )
    emit(
        "LPM entries for one pool's weights (10 random pools each)",
        entry_rows(rng),
        path("-entries"),
    )
    emit(
        "Churn with the controller's entry budget (DIP_TABLE_SIZE / 4 slots, 1 pool)",
        change_rows(args.seeds),
        path("-changes"),
    )
    emit("Layout churn over 40 random weight changes", churn_rows(rng), path("-churn"))
    emit("Time to new weights and entries", timing_rows(rng), path("-timing"))
    return 0
