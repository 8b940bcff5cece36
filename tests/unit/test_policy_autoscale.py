"""Autoscaling: HPA-like desired count, fast up, stabilised down, bounds, member choice."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy import PolicyError
from policy.autoscale import AutoscaleParams, Autoscaler, MemberState, ScaleDecision

A, S, D, X = MemberState.ACTIVE, MemberState.STANDBY, MemberState.DRAINING, MemberState.DOWN


def apply(states: list[MemberState], decision: ScaleDecision) -> list[MemberState]:
    """What the controller does with a decision."""
    out = list(states)
    for i in decision.activate:
        out[i] = A
    for i in decision.drain:
        out[i] = D
    return out


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 3),
    st.integers(1, 6),
    st.lists(st.lists(st.floats(0, 1), min_size=8, max_size=8), min_size=1, max_size=30),
)
def test_active_count_never_leaves_min_and_max(
    low: int, span: int, rounds: list[list[float]]
) -> None:
    params = AutoscaleParams(
        min_active=low, max_active=low + span, stabilisation_window=5.0, cooldown_down=1.0
    )
    scaler = Autoscaler(params)
    states = [A] * max(low, 1) + [S] * (8 - max(low, 1))
    for k, util in enumerate(rounds):
        decision = scaler.decide(float(k), np.asarray(util), states)
        assert params.min_active <= decision.desired <= params.max_active
        assert all(states[i] in (S, D) for i in decision.activate)
        assert all(states[i] == A for i in decision.drain)
        states = apply(states, decision)
        active = states.count(A)
        assert active <= params.max_active
        assert active >= params.min_active


def test_scale_up_is_immediate_and_bounded_by_the_step() -> None:
    scaler = Autoscaler(AutoscaleParams(target=0.5, max_step_up=2))
    states = [A, S, S, S, S]
    decision = scaler.decide(0.0, np.array([1.0, 0, 0, 0, 0]) * 2.0, states)
    assert decision.desired == 3
    assert decision.activate == (1, 2)


def test_within_tolerance_nothing_changes() -> None:
    scaler = Autoscaler(AutoscaleParams(target=0.6, tolerance=0.1))
    decision = scaler.decide(0.0, np.array([0.64, 0.64, 0.0]), [A, A, S])
    assert decision == ScaleDecision(2)


def test_scale_down_waits_for_the_stabilisation_window() -> None:
    scaler = Autoscaler(AutoscaleParams(stabilisation_window=300.0, cooldown_down=0.0))
    states = [A, A, A, S]
    low = np.array([0.1, 0.1, 0.1, 0.0])
    for now in (0.0, 100.0, 299.0):
        assert scaler.decide(now, low, states).drain == ()
    decision = scaler.decide(300.0, low, states)
    assert decision.drain == (2,)


def test_a_recent_peak_holds_the_scale_down() -> None:
    scaler = Autoscaler(AutoscaleParams(stabilisation_window=10.0, cooldown_down=0.0))
    states = [A, A, A]
    scaler.decide(0.0, np.array([0.6, 0.6, 0.6]), states)
    assert scaler.decide(9.0, np.array([0.6, 0.6, 0.6]), states).drain == ()
    assert scaler.decide(15.0, np.array([0.1, 0.1, 0.1]), states).drain == ()
    assert scaler.decide(30.0, np.array([0.1, 0.1, 0.1]), states).drain != ()


def test_drains_the_least_utilised_member_one_at_a_time() -> None:
    scaler = Autoscaler(AutoscaleParams(stabilisation_window=0.0, cooldown_down=0.0))
    decision = scaler.decide(0.0, np.array([0.05, 0.01, 0.05]), [A, A, A])
    assert decision.drain == (1,)


def test_cooldown_up_spaces_scale_ups() -> None:
    scaler = Autoscaler(AutoscaleParams(target=0.5, max_step_up=1, cooldown_up=10.0))
    hot = np.array([1.0, 1.0, 0.0, 0.0])
    assert scaler.decide(0.0, hot, [A, A, S, S]).activate == (2,)
    assert scaler.decide(5.0, hot, [A, A, A, S]).activate == ()
    assert scaler.decide(10.0, hot * 1.5, [A, A, A, S]).activate == (3,)


def test_a_lost_member_is_replaced_at_once_preferring_a_draining_one() -> None:
    scaler = Autoscaler(AutoscaleParams(min_active=2, cooldown_up=1e9))
    decision = scaler.decide(0.0, np.zeros(4), [A, X, S, D])
    assert decision.activate == (3,)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("target", 0.0),
        ("tolerance", -0.1),
        ("max_active", 0),
        ("max_step_up", 0),
        ("min_active", 1.5),
    ],
)
def test_bad_params_are_rejected(field: str, value: float) -> None:
    with pytest.raises(PolicyError, match=field):
        AutoscaleParams(**{field: value})  # type: ignore[arg-type]


def test_member_states_have_string_values() -> None:
    assert [m.value for m in MemberState] == ["active", "standby", "draining", "down"]
