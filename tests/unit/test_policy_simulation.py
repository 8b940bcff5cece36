"""The simulated pool: ratio balances unequal servers better than equal and cpu, steadily."""

from __future__ import annotations

import math

import numpy as np
import pytest

from policy import make_policy
from policy.simulation import Quality, SimConfig, simulate, summarise

CONFIG = SimConfig(duration=40.0, step_time=math.inf)


def quality(name: str, seed: int = 11) -> Quality:
    """Run the short scenario under policy `name`."""
    policy = make_policy(name, len(CONFIG.capacities), [1.0] * len(CONFIG.capacities))
    trace = simulate(policy, CONFIG, np.random.default_rng(seed))
    return summarise(trace, CONFIG, window=15.0)


@pytest.fixture(scope="module")
def results() -> dict[str, Quality]:
    return {name: quality(name) for name in ("equal", "cpu", "ratio")}


def test_ratio_balances_unequal_capacities_better_than_equal_and_cpu(
    results: dict[str, Quality],
) -> None:
    ratio = results["ratio"].steady_max_mean
    assert ratio < results["equal"].steady_max_mean
    assert ratio < results["cpu"].steady_max_mean
    assert ratio < 1.1


def test_ratio_does_not_oscillate_where_cpu_does(results: dict[str, Quality]) -> None:
    assert results["ratio"].reversals < results["cpu"].reversals / 3
    assert results["cpu"].reversals > 20


def test_equal_overloads_the_smallest_server(results: dict[str, Quality]) -> None:
    assert results["equal"].steady_max_mean > 2.0


def test_capacity_step_is_followed_without_sustained_oscillation() -> None:
    config = SimConfig(duration=50.0, step_time=20.0)
    policy = make_policy("ratio", 4, [1.0] * 4)
    trace = simulate(policy, config, np.random.default_rng(5))
    q = summarise(trace, config, window=10.0)
    assert q.after_max_mean < 1.15
    assert q.overshoot < 0.5
    shares = np.asarray(trace.shares)[-10:, config.step_server]
    assert np.ptp(shares) < 0.03


def test_the_same_seed_gives_the_same_trace() -> None:
    assert quality("ratio", 3) == quality("ratio", 3)
