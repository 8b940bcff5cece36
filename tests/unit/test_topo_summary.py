"""The demo's summary: phase windows, shares, utilisation evenness; and the demo's plan."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topo.apps.outcome import ConnectionRecord
from topo.demo_plan import (
    REQUEST_OVERHEAD_MS,
    PlanError,
    default_capacities,
    make_demo_plan,
    offered_rate,
)
from topo.summary import (
    Phase,
    UtilSample,
    WeightRound,
    build_summary,
    connection_shares,
    max_over_mean,
    mean_utilisation,
    share_overshoot,
    shares_follow_capacities,
)

DIPS = ["a", "b"]


def _ok(t: float, server: str) -> ConnectionRecord:
    return ConnectionRecord(start=t, outcome="ok", server=server, latency=0.1, requests=1)


@pytest.mark.parametrize(
    ("values", "expected"),
    [({"a": 1.0, "b": 1.0}, 1.0), ({"a": 1.0, "b": 0.0}, 2.0), ({"a": 0.0}, 0.0), ({}, 0.0)],
)
def test_max_over_mean(values: dict[str, float], expected: float) -> None:
    assert max_over_mean(values) == pytest.approx(expected)


@given(st.lists(st.floats(0.0, 10.0), min_size=1, max_size=10))
def test_max_over_mean_is_between_one_and_n(values: list[float]) -> None:
    ratio = max_over_mean({str(i): v for i, v in enumerate(values)})
    if sum(values) > 0:
        assert 1.0 - 1e-9 <= ratio <= len(values) + 1e-9
    else:
        assert ratio == 0.0


def test_mean_utilisation_uses_only_the_window() -> None:
    samples = [UtilSample(t, "a", u) for t, u in [(0.0, 9.0), (5.0, 0.5), (6.0, 0.7), (10.0, 9.0)]]
    assert mean_utilisation(samples, DIPS, 5.0, 10.0) == pytest.approx({"a": 0.6, "b": 0.0})


def test_connection_shares_count_successes_started_in_the_window() -> None:
    records = [_ok(1.0, "a"), _ok(2.0, "a"), _ok(3.0, "b"), _ok(9.0, "b")]
    records.append(ConnectionRecord(2.5, "reset", "b", 0.1, 0))
    assert connection_shares(records, DIPS, 0.0, 5.0) == pytest.approx({"a": 2 / 3, "b": 1 / 3})
    assert connection_shares(records, DIPS, 20.0, 30.0) == {"a": 0.0, "b": 0.0}


@pytest.mark.parametrize(
    ("shares", "ordered"),
    [
        ({"a": 0.1, "b": 0.2, "c": 0.7}, True),
        ({"a": 0.3, "b": 0.2, "c": 0.5}, False),
        ({"a": 0.0, "b": 0.5, "c": 0.5}, True),  # ties do not break the order
        ({"a": 0.0, "b": 0.6, "c": 0.4}, False),
    ],
)
def test_shares_follow_capacities(shares: dict[str, float], ordered: bool) -> None:
    assert shares_follow_capacities(shares, {"a": 0.1, "b": 0.2, "c": 0.3}) is ordered


@pytest.mark.parametrize(
    ("phase", "settle", "window"),
    [
        (Phase("x", "equal", 0.0, 60.0), 10.0, (10.0, 60.0)),
        (Phase("x", "equal", 0.0, 10.0), 10.0, (5.0, 10.0)),  # at least the last half
    ],
)
def test_phase_window(phase: Phase, settle: float, window: tuple[float, float]) -> None:
    assert phase.window(settle) == window


def test_build_summary_compares_phases() -> None:
    phases = [Phase("equal", "equal", 100.0, 120.0), Phase("policy", "ratio", 120.0, 160.0)]
    records = [_ok(105.0 + i, "a" if i % 2 else "b") for i in range(10)]
    records += [_ok(150.0 + i / 10, "b" if i % 4 else "a") for i in range(40)]
    records.append(ConnectionRecord(151.0, "misrouted", "a", 0.1, 2))
    samples = [UtilSample(110.0 + i, "a", 1.0) for i in range(5)]
    samples += [UtilSample(110.0 + i, "b", 0.5) for i in range(5)]
    samples += [UtilSample(150.0 + i, d, 0.6) for i in range(5) for d in DIPS]
    summary = build_summary(
        mode="simulate",
        policy="ratio",
        phases=phases,
        records=records,
        samples=samples,
        capacities={"a": 0.1, "b": 0.3},
        settle_before=5.0,
        settle_after=20.0,
        events=[
            {"t": 100.0, "kind": "weights", "pool": "web", "weights": {"a": 128, "b": 128}},
            {"t": 121.0, "kind": "weights", "pool": "web", "weights": {"a": 32, "b": 224}},
            {"t": 125.0, "kind": "weights", "pool": "web", "weights": {"a": 64, "b": 192}},
        ],
    )
    assert summary["weight_share_overshoot"] == {"a": 0.0, "b": 0.125}
    assert summary["connections"] == 51 and summary["made"] == 50 and summary["broken"] == 1
    assert summary["broken_by_kind"]["misrouted"] == 1
    assert summary["max_mean_utilisation"] == {
        "before": pytest.approx(4 / 3, abs=1e-3),
        "after": 1.0,
    }
    assert summary["per_server_share"] == {"a": 0.25, "b": 0.75}
    assert summary["per_server_share_before"] == {"a": 0.5, "b": 0.5}
    assert summary["shares_ordered_like_capacities"] is True
    assert summary["windows"] == {"before": [5.0, 20.0], "after": [40.0, 60.0]}
    with pytest.raises(ValueError, match="phase"):
        build_summary(
            mode="x",
            policy="x",
            phases=phases[:1],
            records=[],
            samples=[],
            capacities={},
            settle_before=0,
            settle_after=0,
            events=[],
        )


def test_share_overshoot_counts_only_what_rose_above_the_switch_and_the_settled_share() -> None:
    rounds = [
        WeightRound(0.0, {"a": 0.5, "b": 0.5}),
        WeightRound(10.0, {"a": 0.2, "b": 0.8}),  # b: 0.05 above where it settles
        WeightRound(12.0, {"a": 0.3, "b": 0.7}),
        WeightRound(20.0, {"a": 0.2, "b": 0.8}),  # held from 20 to 30: settled b 0.75
    ]
    got = share_overshoot(rounds, ["a", "b"], switch=5.0, window=(15.0, 30.0))
    assert got == {"a": 0.0, "b": pytest.approx(0.8 - (0.7 * 5 + 0.8 * 10) / 15)}


def test_default_capacities_are_unequal_and_ordered() -> None:
    assert default_capacities(4) == (0.1, 0.2, 0.3, 0.4)
    assert default_capacities(2) == (0.1, 0.4)
    with pytest.raises(PlanError):
        default_capacities(1)


@given(st.integers(2, 16), st.floats(1.0, 50.0))
def test_offered_rate_overloads_the_weakest_under_equal_weights(n: int, work_ms: float) -> None:
    capacities = default_capacities(n)
    rate = offered_rate(capacities, work_ms)
    per_server_cpu = rate / n * (work_ms + REQUEST_OVERHEAD_MS) / 1000
    assert per_server_cpu > min(capacities)  # the weakest is overloaded by equal weights
    assert rate * (work_ms + REQUEST_OVERHEAD_MS) / 1000 < sum(
        capacities
    )  # the pool as a whole is not


@pytest.mark.parametrize(
    "kwargs", [{"duration": 10.0}, {"work_ms": 0.0}, {"rate": -1.0}, {"n_servers": 40}]
)
def test_demo_plan_rejects_bad_options(kwargs: dict[str, float]) -> None:
    with pytest.raises(PlanError):
        make_demo_plan(**kwargs)  # type: ignore[arg-type]


def test_demo_plan_has_an_equal_phase_first() -> None:
    plan = make_demo_plan("ratio", 4, 150.0)
    assert plan.equal_duration == 50.0
    assert plan.settle_after < plan.duration - plan.equal_duration
