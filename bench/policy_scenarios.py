"""Policy scenarios of `python -m bench policy`: every policy and peer, same scenarios and seeds.

Each row is one policy on one scenario; each figure is the median over the seeds with the
range (min-max) in brackets. Definitions are in `policy.scoring.score`. A first row gives the
rounding floor (`policy.quantize.rounding_floor`). The peers are gRPC's
weighted_round_robin (gRFC A58) and LVS wlc (configured with the true capacities), from
`policy.peers`; `static` is also configured with the true capacities.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from policy import make_policy
from policy.base import FloatArray, Observations, Policy
from policy.peers import GrpcWrrParams, GrpcWrrPolicy, WeightedLeastConnection
from policy.quantize import rounding_floor
from policy.ratio import RatioParams, RatioPolicy
from policy.scoring import EventQuality, score
from policy.simulation import Dispatcher, SimConfig, simulate

CAPACITIES = (1.0, 2.0, 3.0, 4.0)
HETEROGENEOUS = tuple(
    float(x) for x in np.round(np.random.default_rng(16).uniform(0.5, 4.0, 16), 1)
)
"""A fixed 16-server pool of 0.5-4 cores."""

SCENARIOS: list[tuple[str, SimConfig]] = [
    ("steady, 1:2:3:4", SimConfig(capacities=CAPACITIES, step_time=math.inf, duration=100.0)),
    (
        "steady, 16 heterogeneous",
        SimConfig(capacities=HETEROGENEOUS, step_time=math.inf, duration=100.0),
    ),
    (
        "steady, 16 heterogeneous, 12-bit weights",
        SimConfig(capacities=HETEROGENEOUS, step_time=math.inf, duration=100.0, weight_bits=12),
    ),
    ("capacity step: 4-core server halves at 75 s", SimConfig(capacities=CAPACITIES)),
    (
        "load surge x2 at 75 s (0.4 -> 0.8 of capacity)",
        SimConfig(capacities=CAPACITIES, load=0.4, surge_factor=2.0, step_factor=1.0),
    ),
    (
        "outage: 2-core server dead 60-90 s, then back",
        SimConfig(
            capacities=CAPACITIES, step_factor=1.0, step_time=60.0, outage=30.0, step_server=1
        ),
    ),
    (
        "idle: 4 identical servers at 5 % load, 70 s",
        SimConfig(capacities=(1.0,) * 4, load=0.05, step_time=math.inf, duration=70.0),
    ),
]

STEP_SCENARIO = 3
"""Index in SCENARIOS of the capacity step."""

Maker = Callable[[SimConfig], Policy | Dispatcher]


def _named(name: str) -> Maker:
    def make(config: SimConfig) -> Policy | Dispatcher:
        n = len(config.capacities)
        return make_policy(name, n, [1.0] * n)

    return make


def _static(config: SimConfig) -> Policy | Dispatcher:
    return make_policy("static", len(config.capacities), list(config.capacities))


def _grpc(config: SimConfig) -> Policy | Dispatcher:
    return GrpcWrrPolicy(len(config.capacities), [], GrpcWrrParams())


def _wlc(config: SimConfig) -> Policy | Dispatcher:
    return WeightedLeastConnection(list(config.capacities))


POLICIES: list[tuple[str, Maker]] = [
    ("static (true capacities)", _static),
    ("equal", _named("equal")),
    ("connections", _named("connections")),
    ("cpu", _named("cpu")),
    ("gRPC WRR (A58)", _grpc),
    ("LVS wlc (true weights)", _wlc),
    ("ratio", _named("ratio")),
]

COLUMNS: list[tuple[str, str, int]] = [
    ("steady max/mean", "steady_max_mean", 3),
    ("peak max util", "peak_max_util", 2),
    ("peak after reacting", "reaction_peak", 2),
    ("rounds to <=1.15", "recovery_rounds", 0),
    ("overshoot %", "overshoot_pct", 0),
    ("settling", "settling_rounds", 0),
    ("jitter %/round", "jitter_pct", 2),
    ("reversals", "reversals", 0),
    ("p99 slowdown", "p99_slowdown", 2),
    ("return overshoot %", "return_overshoot_pct", 1),
    ("rollouts", "rollouts", 0),
]


def _spread(values: Sequence[float], digits: int) -> str:
    """ "median (min-max)"; "-" where the figure does not apply."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "-"

    def fmt(v: float) -> str:
        return "inf" if math.isinf(v) else f"{v:.{digits}f}"

    med, low, high = statistics.median(finite), min(finite), max(finite)
    return fmt(med) if low == high else f"{fmt(med)} ({fmt(low)}-{fmt(high)})"


def scenario_rows(config: SimConfig, seeds: int) -> list[dict[str, Any]]:
    """One row per policy: its figures on `config` over `seeds` seeds; first, the steady
    max/mean of the best integer weights for the true capacities, without noise (no fixed
    weights summing to 2^weight_bits do better)."""
    floor = rounding_floor(config.capacities, 1 << config.weight_bits)
    rows: list[dict[str, Any]] = [
        {"policy": "best fixed integer weights, no noise"}
        | {title: "-" for title, _, _ in COLUMNS}
        | {"steady max/mean": f"{floor:.3f}"}
    ]
    for label, make in POLICIES:
        runs: list[EventQuality] = [
            score(simulate(make(config), config, np.random.default_rng(seed)), config)
            for seed in range(seeds)
        ]
        row: dict[str, Any] = {"policy": label}
        for title, attr, digits in COLUMNS:
            row[title] = _spread([float(getattr(q, attr)) for q in runs], digits)
        rows.append(row)
    return rows


ESTIMATE_ROUNDS = (3, 5, 8, 10, 15, 20, 40)
"""Rounds after the capacity step at which `estimate_rows` reads ratio's estimate."""


class _EstimateProbe:
    """ratio, with its capacity estimate copied at each round of ESTIMATE_ROUNDS."""

    def __init__(self, config: SimConfig) -> None:
        n = len(config.capacities)
        self.ratio = RatioPolicy(n, [1.0] * n, RatioParams())
        self.step_time = config.step_time
        self.seen: dict[int, FloatArray] = {}

    def update(self, now: float, obs: Observations) -> FloatArray:
        shares = self.ratio.update(now, obs)
        k = round(now - self.step_time)
        if k in ESTIMATE_ROUNDS:
            self.seen[k] = self.ratio.estimate.copy()
        return shares


def _rms(values: Sequence[float]) -> float:
    return math.sqrt(statistics.fmean(v * v for v in values))


def estimate_rows(config: SimConfig, seeds: int) -> list[dict[str, Any]]:
    """How close ratio's capacity estimate is k rounds after the step, over `seeds` seeds.

    The error is that of the stepped server's share of the estimated capacity against its true
    share. Settling counts rounds until the share stays within 2 % of its final value; a share
    that follows an estimate this far off cannot settle sooner on every seed.
    """
    true = np.asarray(config.capacities, dtype=np.float64)
    true[config.step_server] *= config.step_factor
    truth = true[config.step_server] / true.sum()
    errors: dict[int, list[float]] = {k: [] for k in ESTIMATE_ROUNDS}
    for seed in range(seeds):
        probe = _EstimateProbe(config)
        simulate(probe, config, np.random.default_rng(seed))
        for k, estimate in probe.seen.items():
            errors[k].append(estimate[config.step_server] / estimate.sum() / truth - 1)
    return [
        {
            "rounds after the step": k,
            "rms error of the share %": f"{100 * _rms(errs):.1f}",
            "seeds more than 2 % off": f"{sum(abs(e) > 0.02 for e in errs)} of {len(errs)}",
        }
        for k, errs in errors.items()
    ]
