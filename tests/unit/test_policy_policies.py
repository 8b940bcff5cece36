"""Policies: registry and parameters, the shares contract, and the ratio policy's safety rails."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from policy import (
    DEFAULT_POLICY,
    POLICIES,
    Observations,
    Policy,
    PolicyError,
    make_policy,
    policy_params,
)
from policy.capacity import CapacityEstimator, EstimatorSettings

CAPACITY = np.array([1.0, 2.0, 3.0, 4.0])


def obs(
    cpu: list[float],
    conns: list[float],
    live: list[bool] | None = None,
    age: list[float] | None = None,
) -> Observations:
    """Observations with fresh reports unless `age` says otherwise."""
    o = Observations.fresh(
        np.asarray(cpu), np.asarray(conns), None if live is None else np.asarray(live)
    )
    if age is None:
        return o
    return Observations(o.cpu, o.conns, o.conn_rate, np.asarray(age, dtype=np.float64), o.live)


def run_plant(policy: Policy, rounds: int, capacity: np.ndarray = CAPACITY) -> np.ndarray:
    """A noiseless pool: conns follow the shares, cpu = conns / (100 x capacity); last shares."""
    shares = np.full(len(capacity), 1 / len(capacity))
    for k in range(rounds):
        conns = shares * 600.0
        cpu = np.minimum(conns / (100.0 * capacity), 1.0)
        shares = policy.update(float(k), obs(cpu.tolist(), conns.tolist()))
    return shares


def test_registry_names_and_default() -> None:
    assert set(POLICIES) == {"static", "equal", "connections", "cpu", "ratio"}
    assert DEFAULT_POLICY == "ratio"


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_parameter_has_a_float_default(name: str) -> None:
    params = policy_params(name)
    assert all(isinstance(v, float) for v in params.values())
    make_policy(name, 2, [1, 1], params)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("nope", None, "'nope'"),
        ("ratio", {"gainz": 1.0}, "'gainz'"),
        ("ratio", {"gain": -1.0}, "-1.0"),
        ("ratio", {"gain": "fast"}, "'fast'"),
        ("cpu", {"cpu_floor": float("nan")}, "nan"),
        ("connections", {"offset": 0.0}, "0.0"),
    ],
)
def test_bad_names_and_params_are_rejected_showing_the_value(
    name: str, params: dict[str, object] | None, match: str
) -> None:
    with pytest.raises(PolicyError, match=match):
        make_policy(name, 2, [1, 1], params)


def test_bad_initial_weights_are_rejected() -> None:
    with pytest.raises(PolicyError, match="initial_weights"):
        make_policy("static", 2, [1, 2, 3])


@pytest.mark.parametrize("name", sorted(POLICIES))
@pytest.mark.parametrize(
    "live", [[True, True, True, True], [True, False, True, False], [False, False, False, True]]
)
def test_shares_sum_to_one_over_live_members_and_zero_elsewhere(
    name: str, live: list[bool]
) -> None:
    policy = make_policy(name, 4, [1, 2, 3, 4])
    for k in range(5):
        shares = policy.update(float(k), obs([0.2, 0.4, 0.6, 0.8], [10, 20, 30, 40], live))
        assert shares[~np.asarray(live)].tolist() == [0.0] * live.count(False)
        assert shares.sum() == pytest.approx(1.0)
        assert (shares >= 0).all()


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_no_live_member_gives_all_zero(name: str) -> None:
    policy = make_policy(name, 3, [1, 1, 1])
    assert policy.update(0.0, obs([0.5] * 3, [5] * 3, [False] * 3)).tolist() == [0.0] * 3


def test_static_follows_configured_weights() -> None:
    shares = make_policy("static", 3, [1, 1, 2]).update(0.0, obs([0.9] * 3, [1] * 3))
    assert shares.tolist() == [0.25, 0.25, 0.5]


@pytest.mark.parametrize(
    ("name", "cpu", "conns", "favoured"),
    [("connections", [0.5, 0.5], [10, 100], 0), ("cpu", [0.8, 0.2], [10, 10], 1)],
)
def test_baselines_favour_the_less_loaded(
    name: str, cpu: list[float], conns: list[float], favoured: int
) -> None:
    shares = make_policy(name, 2, [1, 1]).update(0.0, obs(cpu, conns))
    assert shares[favoured] > shares[1 - favoured]


def test_ratio_converges_to_capacity_proportions() -> None:
    policy = make_policy("ratio", 4, [1, 1, 1, 1], {"blackout": 0.0})
    shares = run_plant(policy, 30)
    assert shares == pytest.approx(CAPACITY / CAPACITY.sum(), abs=0.01)


def test_ratio_moves_each_share_at_most_max_step_per_round() -> None:
    policy = make_policy("ratio", 4, [1, 1, 1, 1], {"blackout": 0.0, "max_step": 0.2})
    previous = policy.update(0.0, obs([0.5] * 4, [50] * 4))
    for k in range(1, 10):
        shares = policy.update(float(k), obs([0.8, 0.1, 0.1, 0.1], [50, 50, 50, 50]))
        assert np.abs(shares - previous).max() <= 0.2 / 4 + 1e-9
        previous = shares


def test_ratio_takes_a_saturated_members_cut_in_one_round() -> None:
    policy = make_policy(
        "ratio", 4, [1, 1, 1, 1], {"blackout": 0.0, "max_step": 0.2, "evidence": 1.0}
    )
    before = policy.update(0.0, obs([0.5] * 4, [50] * 4))
    after = policy.update(1.0, obs([0.95, 0.1, 0.1, 0.1], [50, 50, 50, 50]))
    # Its estimate says it can take a tenth of the others' share: no rail holds that back.
    assert before[0] - after[0] > 0.2 / 4
    assert after[0] < 0.1


def test_ratio_clamps_shares_around_the_mean() -> None:
    policy = make_policy("ratio", 3, [1, 1, 1], {"blackout": 0.0, "max_step": 100.0})
    for k in range(5):
        shares = policy.update(float(k), obs([0.5, 0.5, 0.5], [1, 1000, 100000]))
    assert shares.min() >= 0.1 / 3 - 1e-9
    assert shares.max() <= 10 / 3 + 1e-9


def test_ratio_blackout_keeps_a_new_reporter_on_its_configured_weight() -> None:
    policy = make_policy("ratio", 2, [1, 1], {"blackout": 5.0})
    for k in range(4):
        shares = policy.update(float(k), obs([0.2, 0.8], [100, 100]))
    assert shares == pytest.approx([0.5, 0.5])
    for k in range(4, 12):
        shares = policy.update(float(k), obs([0.2, 0.8], [100, 100]))
    assert shares[0] > 0.7


def test_ratio_silent_member_falls_back_to_the_mean_estimate() -> None:
    policy = make_policy("ratio", 2, [1, 1], {"blackout": 0.0, "expiry": 3.0, "gain": 0.0})
    for k in range(10):
        policy.update(float(k), obs([0.2, 0.8], [100, 100]))
    for k in range(10, 20):
        shares = policy.update(float(k), obs([0.2, 0.8], [100, 100], age=[0.0, 10.0]))
    assert shares == pytest.approx([0.5, 0.5], abs=0.02)


def test_ratio_slow_start_ramps_a_joining_member() -> None:
    policy = make_policy("ratio", 2, [1, 1], {"blackout": 0.0, "slow_start": 10.0})
    policy.update(0.0, obs([0.5, 0.5], [100, 100], [True, False]))
    seen = []
    for k in range(1, 12):
        shares = policy.update(float(k), obs([0.5, 0.5], [100, 100]))
        seen.append(float(shares[1]))
    assert seen[0] < 0.15
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(seen))
    assert seen[-1] == pytest.approx(0.5, abs=0.02)


def test_ratio_follows_a_capacity_drop() -> None:
    policy = make_policy("ratio", 4, [1, 1, 1, 1], {"blackout": 0.0})
    run_plant(policy, 20)
    dropped = CAPACITY * np.array([1, 1, 1, 0.5])
    shares = run_plant(policy, 20, dropped)
    assert shares == pytest.approx(dropped / dropped.sum(), abs=0.02)


def test_observations_reject_mismatched_lengths() -> None:
    with pytest.raises(PolicyError, match="'cpu'"):
        Observations(np.zeros(2), np.zeros(3), np.zeros(3), np.zeros(3), np.ones(3, dtype=bool))


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_unknown_readings_still_give_valid_shares(name: str) -> None:
    nan = np.full(3, np.nan)
    never = Observations(nan, nan, nan, np.full(3, np.inf), np.ones(3, dtype=bool))
    policy = make_policy(name, 3, [1, 2, 1])
    for k in range(3):
        shares = policy.update(float(k), never)
        assert np.isfinite(shares).all()
        assert shares.sum() == pytest.approx(1.0)


SETTINGS = EstimatorSettings(
    ewma_alpha=0.3, jump=0.15, cpu_floor=0.05, min_cpu=0.02, saturation=0.9, holdoff=2.0
)


@pytest.mark.parametrize(
    ("cpu", "conns", "rate", "expected"),
    [
        # steady: 50 conns/s in and out at half CPU -> 100 completions per CPU-second
        (0.5, [100.0] * 6, 50.0, 100.0),
        # saturated with a growing backlog: 10 of the 50/s pile up, 40/s finish at full CPU
        (1.0, [500.0 + 10 * k for k in range(6)], 50.0, 40.0),
        # draining a backlog: 20/s arrive, the queue shrinks by 20/s, so 40/s finish
        (1.0, [500.0 - 20 * k for k in range(6)], 20.0, 40.0),
    ],
)
def test_estimate_is_completions_per_cpu_second_whatever_the_queue(
    cpu: float, conns: list[float], rate: float, expected: float
) -> None:
    estimator = CapacityEstimator(1, SETTINGS)
    everyone = np.ones(1, dtype=np.bool_)
    for k, c in enumerate(conns):
        o = Observations.fresh(np.array([cpu]), np.array([c]), conn_rate=np.array([rate]))
        estimator.update(float(k), o, everyone)
    assert estimator.estimate[0] == pytest.approx(expected)


def test_the_estimate_divides_by_the_cpu_of_the_completions_span() -> None:
    """A member draining a backlog: its CPU fell within each span, its latest report the lowest."""
    estimator = CapacityEstimator(1, SETTINGS)
    everyone = np.ones(1, dtype=np.bool_)
    for k in range(6):
        # 100 finished a second at a span mean of 0.8 CPU: capacity 125 per CPU-second, whatever
        # the latest half-second's 0.7 says (it would read 143).
        o = Observations(
            cpu=np.array([0.7]),
            conns=np.array([200.0 - 20 * k]),
            conn_rate=np.array([80.0]),
            report_age=np.zeros(1),
            live=everyone,
            cpu_mean=np.array([0.8]),
        )
        estimator.update(float(k), o, everyone)
    assert estimator.estimate[0] == pytest.approx(125.0)


def test_a_backlog_does_not_raise_the_estimate() -> None:
    """Two members of equal capacity; one is saturated from its first sample, its queue growing."""
    estimator = CapacityEstimator(2, SETTINGS)
    everyone = np.ones(2, dtype=np.bool_)
    for k in range(8):
        o = Observations.fresh(
            np.array([0.5, 1.0]),
            np.array([100.0, 400.0 + 50 * k]),
            conn_rate=np.array([50.0, 150.0]),
        )
        estimator.update(float(k), o, everyone)
    assert estimator.estimate == pytest.approx([100.0, 100.0])


def test_saturated_first_sample_without_rates_is_cut_not_taken_as_capacity() -> None:
    estimator = CapacityEstimator(2, SETTINGS)
    everyone = np.ones(2, dtype=np.bool_)
    readings = []
    for k in range(6):
        o = Observations.fresh(np.array([0.5, 1.0]), np.array([100.0, 400.0 + 50 * k]))
        estimator.update(float(k), o, everyone)
        readings.append(float(estimator.estimate[1] / estimator.estimate[0]))
    # conns / cpu would say member 1 has 2x member 0's capacity, and more each round; its first
    # reading is cut by the others' utilisation (0.5) at once
    assert readings[0] <= 0.5 * (400.0 / 1.0) / (100.0 / 0.5)
    assert all(b <= a for a, b in itertools.pairwise(readings[1:]))
    assert readings[-1] < 1.0


def test_ratio_with_rates_converges_to_capacity_proportions() -> None:
    policy = make_policy("ratio", 4, [1, 1, 1, 1], {"blackout": 0.0})
    shares = np.full(4, 0.25)
    for k in range(40):
        rate = shares * 150.0
        conns = rate * 2.0
        cpu = np.minimum(rate / (50.0 * CAPACITY), 1.0)
        o = Observations.fresh(cpu, conns, conn_rate=rate)
        shares = policy.update(float(k), o)
    assert shares == pytest.approx(CAPACITY / CAPACITY.sum(), abs=0.01)


@pytest.mark.parametrize(("per_second", "least", "most"), [(2.0, 0.5, 0.65), (200.0, 0.74, 0.76)])
def test_ratio_trusts_an_estimate_as_far_as_the_connections_behind_it(
    per_second: float, least: float, most: float
) -> None:
    # Member 0 finishes three times what member 1 does at the same CPU. Seen over a handful of
    # connections that may be noise, and the shares stay nearer the prior; over hundreds it is
    # capacity, and the shares follow it (3:1).
    policy = make_policy("ratio", 2, [1, 1], {"blackout": 0.0, "max_step": 10.0})
    for k in range(5):
        o = Observations.fresh(
            np.array([0.5, 0.5]),
            np.array([4.0, 4.0]),
            conn_rate=np.array([3 * per_second, per_second]),
        )
        shares = policy.update(float(k), o)
    assert least < shares[0] < most


def test_ratio_gives_a_drained_members_arrivals_to_the_members_with_room() -> None:
    policy = make_policy("ratio", 3, [1, 1, 1], {"blackout": 0.0, "max_step": 10.0})
    steady = np.full(3, 50.0)
    for k in range(10):
        policy.update(float(k), Observations.fresh(np.full(3, 0.5), steady, conn_rate=steady))
    # Member 0 loses half its capacity and queues; member 1 is busy, member 2 nearly idle.
    shares = policy.update(
        10.0,
        Observations.fresh(
            np.array([0.95, 0.8, 0.2]),
            np.array([60.0, 50.0, 50.0]),
            conn_rate=np.array([60.0, 50.0, 50.0]),
        ),
    )
    # Estimates alone (94 and 106 per CPU-second) put member 2 0.05 above member 1; what
    # member 0's drain withholds goes to member 2 seven times as much as to member 1.
    assert shares[0] < 0.2
    assert shares[2] - shares[1] > 0.07
