"""ratio after events (capacity step, outage and return, idle pool), and the bench's peers."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from policy import Observations, make_policy
from policy.peers import GrpcWrrParams, GrpcWrrPolicy, WeightedLeastConnection
from policy.scoring import EventQuality, score
from policy.simulation import SimConfig, simulate

CAPACITIES = (1.0, 2.0, 3.0, 4.0)
STEP = SimConfig(capacities=CAPACITIES, duration=110.0, step_time=60.0)
OUTAGE = SimConfig(
    capacities=CAPACITIES, step_time=60.0, outage=30.0, step_factor=1.0, step_server=1
)
"""The bench's outage scenario (seed 9 over-allocated the returning server by 11.5 % while the
policy read each report's own half-second rate as the rate since its previous round)."""
IDLE = SimConfig(capacities=(1.0,) * 4, load=0.05, duration=70.0, step_time=math.inf)


def runs(config: SimConfig, name: str, seeds: range) -> list[EventQuality]:
    """Scores of `name` (a policy, or "grpc") on `config` for each seed."""
    out = []
    for seed in seeds:
        n = len(config.capacities)
        policy = (
            GrpcWrrPolicy(n, [], GrpcWrrParams())
            if name == "grpc"
            else make_policy(name, n, [1.0] * n)
        )
        out.append(score(simulate(policy, config, np.random.default_rng(seed)), config))
    return out


def test_capacity_step_recovers_within_five_rounds_and_sooner_than_grpc() -> None:
    ratio = runs(STEP, "ratio", range(5))
    grpc = runs(STEP, "grpc", range(5))
    assert statistics.median(q.recovery_rounds for q in ratio) <= 5
    assert statistics.median(q.recovery_rounds for q in ratio) < statistics.median(
        q.recovery_rounds for q in grpc
    )
    assert all(q.jitter_pct < 1.0 for q in ratio)


def test_after_a_capacity_step_the_event_round_is_the_worst_one() -> None:
    # Once a report of the drop is in, the stepped server is relieved at once (its cut is not
    # spread over rounds), so no later round is as hot as the one nobody could answer.
    ratio = runs(STEP, "ratio", range(10))
    assert all(q.reaction_peak < q.peak_max_util for q in ratio)
    assert statistics.median(q.reaction_peak for q in ratio) <= 1.25


def test_returning_server_is_not_over_allocated() -> None:
    for q in runs(OUTAGE, "ratio", range(10)):
        assert q.return_overshoot_pct <= 5.0


def test_identical_idle_servers_cause_no_rollout() -> None:
    assert [q.rollouts for q in runs(IDLE, "ratio", range(3))] == [0, 0, 0]


def test_idle_hold_releases_when_membership_changes() -> None:
    policy = make_policy("ratio", 3, [1.0] * 3, {"blackout": 0.0})
    cpu = np.full(3, 0.05)
    for k in range(5):
        shares = policy.update(float(k), Observations.fresh(cpu, np.full(3, 10.0)))
    assert shares == pytest.approx([1 / 3] * 3, abs=0.02)
    live = np.array([True, True, False])
    shares = policy.update(5.0, Observations.fresh(cpu, np.full(3, 10.0), live=live))
    assert shares[2] == 0.0
    assert shares[:2].sum() == pytest.approx(1.0)


def test_grpc_wrr_waits_out_the_blackout_then_weights_qps_over_utilisation() -> None:
    policy = GrpcWrrPolicy(2, [], GrpcWrrParams(blackout_period=2.0))
    rate = np.array([100.0, 100.0])
    obs = Observations.fresh(np.array([0.2, 0.4]), np.zeros(2), conn_rate=rate)
    first = policy.update(0.0, obs)
    assert first == pytest.approx([0.5, 0.5])
    for k in range(1, 4):
        later = policy.update(float(k), obs)
    assert later == pytest.approx([2 / 3, 1 / 3])


def test_grpc_wrr_raises_weights_to_a_tenth_of_the_mean() -> None:
    policy = GrpcWrrPolicy(3, [], GrpcWrrParams(blackout_period=0.0))
    obs = Observations.fresh(
        np.array([0.001, 0.5, 0.5]), np.zeros(3), conn_rate=np.array([100.0, 1.0, 1.0])
    )
    shares = policy.update(0.0, obs)
    mean = np.mean([100.0 / 0.001, 2.0, 2.0])
    assert shares[0] / shares[1] == pytest.approx((100.0 / 0.001) / (0.1 * mean))


@pytest.mark.parametrize(
    ("active", "weights", "arrivals", "expected"),
    [
        ([0, 0], [1.0, 1.0], 4, [2, 2]),
        ([0, 0], [1.0, 3.0], 4, [1, 3]),
        ([6, 0], [1.0, 1.0], 4, [0, 4]),
        ([0, 0], [1.0, 0.0], 3, [3, 0]),  # weight 0: quiesced, gets nothing
    ],
)
def test_wlc_sends_each_connection_to_the_least_active_per_weight(
    active: list[int], weights: list[float], arrivals: int, expected: list[int]
) -> None:
    wlc = WeightedLeastConnection(weights)
    got = wlc.dispatch(np.asarray(active), arrivals, np.ones(len(active), dtype=np.bool_))
    assert got.tolist() == expected
