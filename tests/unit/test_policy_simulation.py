"""The simulated pool: ratio balances unequal servers better than equal and cpu, steadily."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from policy import make_policy
from policy.simulation import Quality, SimConfig, Trace, simulate, summarise

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
    shares = np.asarray(trace.shares)[:, config.step_server]
    times = np.asarray(trace.times)
    final = shares[-10:].mean()
    # The share dips below its final value only while the backlog drains (a few rounds), and
    # never climbs back above it by more than a weight unit or two.
    later = times > config.step_time + 8
    assert np.abs(shares[later] - final).max() < 0.1 * final
    assert np.ptp(shares[-10:]) < 0.03


def test_the_same_seed_gives_the_same_trace() -> None:
    assert quality("ratio", 3) == quality("ratio", 3)


DEMO = SimConfig(load=0.5, warmup=30.0, duration=90.0, step_time=math.inf)
"""The demo's scenario: capacities 1:2:3:4, half the pool's capacity offered, 30 s on equal
weights first (the weakest server then gets 1.25x its capacity and piles up connections)."""


@pytest.fixture(scope="module")
def backlogged() -> tuple[Trace, Quality]:
    policy = make_policy("ratio", len(DEMO.capacities), [1.0] * len(DEMO.capacities))
    trace = simulate(policy, DEMO, np.random.default_rng(7))
    return trace, summarise(trace, DEMO, window=30.0)


def test_a_backlogged_server_is_not_taken_for_a_strong_one(
    backlogged: tuple[Trace, Quality],
) -> None:
    trace, _ = backlogged
    times = np.asarray(trace.times)
    util = np.asarray(trace.utilisation)[:, 0]
    share = np.asarray(trace.shares)[:, 0]
    capacity_share = DEMO.capacities[0] / sum(DEMO.capacities)
    # The weakest server is saturated when the policy takes over ...
    assert util[(times > DEMO.warmup - 5) & (times <= DEMO.warmup)].min() > 0.99
    # ... yet, while its backlog drains, it never gets much more than its capacity share and
    # on average not more: its many connections are a queue, not capacity.
    policy_rounds = times > DEMO.warmup + 5
    assert share[policy_rounds].max() <= 1.1 * capacity_share
    assert share[policy_rounds].mean() < capacity_share + 0.5 / (1 << DEMO.weight_bits)


def test_ratio_evens_out_the_demo_scenario(backlogged: tuple[Trace, Quality]) -> None:
    trace, q = backlogged
    assert q.after_max_mean <= 1.1
    final = np.asarray(trace.shares)[-10:].mean(axis=0)
    assert list(np.argsort(final)) == [0, 1, 2, 3]


LOW_RATE = SimConfig(
    capacities=(0.1, 0.2, 0.3, 0.4),
    conn_cost=0.01,
    load=0.45,
    warmup=50.0,
    duration=150.0,
    step_time=math.inf,
)
"""The demo's pool at its own rate: ~23 connections a second in all, the weakest server holding
about five connections, so its CPU reads 100 % now and then with no queue behind it."""


def test_cpu_blips_of_a_server_with_few_connections_are_not_drained() -> None:
    halvings = 0
    for seed in range(5):
        policy = make_policy("ratio", 4, [1.0] * 4)
        trace = simulate(policy, LOW_RATE, np.random.default_rng(seed))
        times, shares = np.asarray(trace.times), np.asarray(trace.shares)
        late = shares[times > 90.0]
        halvings += int(np.count_nonzero(late[1:] < 0.7 * late[:-1]))
    # A real burst (demand 1.3x capacity for a second) is still drained now and then; CPU noise
    # over five connections used to be, several times a run.
    assert halvings <= 2


def rise_after_switch(config: SimConfig, seed: int) -> float:
    """How far a share rose above both its value at the switch and its settled value."""
    trace = simulate(make_policy("ratio", 4, [1.0] * 4), config, np.random.default_rng(seed))
    times, shares = np.asarray(trace.times), np.asarray(trace.shares)
    settled = shares[times > config.duration - 60].mean(axis=0)
    at_switch = shares[times <= config.warmup][-1]
    return float((shares[times > config.warmup] - np.maximum(settled, at_switch)).max())


def test_at_a_few_connections_a_second_shares_do_not_chase_counting_noise() -> None:
    # With an estimate trusted alone after 60 finished connections (13 % noise) and backlogs
    # read against it, the median rise was 0.066 and eight of ten seeds were over 0.05 (0.041
    # and two now; five with only the trust raised).
    rises = [rise_after_switch(LOW_RATE, seed) for seed in range(10)]
    assert statistics.median(rises) <= 0.045
    assert sum(r > 0.05 for r in rises) <= 3
