"""quantize: exact totals, live members keep a unit, largest remainder, ties toward current."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from policy import PolicyError, quantize
from policy.quantize import rounding_floor

shares_lists = st.lists(
    st.one_of(st.just(0.0), st.floats(1e-6, 1e3, allow_nan=False)), min_size=1, max_size=40
)


@settings(max_examples=300, deadline=None)
@given(shares_lists, st.integers(6, 16))
def test_weights_sum_exactly_and_live_members_keep_a_unit(shares: list[float], bits: int) -> None:
    total = 1 << bits
    weights = quantize(shares, total)
    s = np.asarray(shares)
    if (s > 0).any():
        assert int(weights.sum()) == total
    assert (weights[s > 0] >= 1).all()
    assert (weights[s == 0] == 0).all()


@settings(max_examples=300, deadline=None)
@given(shares_lists, st.integers(8, 16))
def test_each_weight_is_within_one_unit_of_its_exact_share(shares: list[float], bits: int) -> None:
    s = np.asarray(shares)
    if not (s > 0).any():
        return
    total = 1 << bits
    exact = s / s.sum() * total
    if (exact[s > 0] < 1).any():
        return  # forced minimums may take units from others
    assert (np.abs(quantize(s, total) - exact) < 1).all()


@settings(max_examples=200, deadline=None)
@given(shares_lists, st.integers(6, 12))
def test_current_weights_are_a_fixed_point(shares: list[float], bits: int) -> None:
    total = 1 << bits
    weights = quantize(shares, total)
    assert quantize(weights / total, total, current=weights).tolist() == weights.tolist()


@pytest.mark.parametrize(
    ("current", "expected"),
    [(None, [2, 1, 0]), ([1, 2, 0], [1, 2, 0]), ([2, 1, 0], [2, 1, 0])],
)
def test_ties_go_toward_the_current_weights(current: list[int] | None, expected: list[int]) -> None:
    assert quantize([0.5, 0.5, 0.0], 3, current=current).tolist() == expected


@pytest.mark.parametrize(
    ("shares", "total", "expected"),
    [
        ([1, 1, 1, 1], 256, [64, 64, 64, 64]),
        ([1, 2, 3, 4], 256, [26, 51, 77, 102]),
        ([1000, 1, 1], 4, [2, 1, 1]),
        ([0, 0], 256, [0, 0]),
    ],
)
def test_largest_remainder_examples(shares: list[float], total: int, expected: list[int]) -> None:
    assert quantize(shares, total).tolist() == expected


@pytest.mark.parametrize(
    ("shares", "total", "match"),
    [
        ([1, 1, 1], 2, "cannot each get"),
        ([1, -1], 4, "finite and >= 0"),
        ([1, float("nan")], 4, "finite and >= 0"),
        ([1], -4, "total"),
    ],
)
def test_impossible_requests_are_rejected(shares: list[float], total: int, match: str) -> None:
    with pytest.raises(PolicyError, match=match):
        quantize(shares, total)


def exhaustive_floor(shares: list[float], total: int) -> float:
    """The lowest max/mean of weight / exact weight over every composition of `total`."""
    exact = np.asarray(shares) / sum(shares) * total
    best = np.inf
    for cuts in itertools.combinations(range(1, total), len(shares) - 1):
        weights = np.diff((0, *cuts, total))
        ratio = weights / exact
        best = min(best, float(ratio.max() / ratio.mean()))
    return best


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.05, 5.0), min_size=2, max_size=4),
    st.integers(4, 14),
)
@example([2.0, 0.59375, 0.125], 7)  # the best maximum is far above ceil(exact) / exact
def test_rounding_floor_is_the_exhaustive_optimum(shares: list[float], total: int) -> None:
    if len(shares) > total:
        return
    assert rounding_floor(shares, total) == pytest.approx(exhaustive_floor(shares, total))


def test_rounding_floor_of_a_pool_that_divides_evenly_is_one() -> None:
    assert rounding_floor([1.0, 2.0, 1.0], 8) == pytest.approx(1.0)
    # 1:2:3:4 at 2^8: 25.6 : 51.2 : 76.8 : 102.4, best (26, 52, 78, 100).
    assert rounding_floor([1.0, 2.0, 3.0, 4.0], 256) == pytest.approx(1.0097, abs=1e-4)


def test_rounding_floor_refuses_more_members_than_units() -> None:
    with pytest.raises(PolicyError, match="cannot share"):
        rounding_floor([1.0, 1.0, 1.0], 2)
