"""ArrivalSpans: the mean new-connection rate between the reports of two looks."""

from __future__ import annotations

import math

import numpy as np

from policy.arrivals import ArrivalSpans


def arr(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def test_the_rate_spans_every_report_since_the_previous_look() -> None:
    spans = ArrivalSpans(2)
    first = spans.rates(arr(1.0, 1.0), arr(0.0, 100.0), arr(0.0, 0.0), arr(40.0, 50.0))
    assert first.tolist() == [40.0, 50.0]  # no previous look: the reports' own rates
    # One second and two reports later: 30 then 10 per second, the latest says 10.
    second = spans.rates(arr(2.0, 2.0), arr(20.0, 150.0), arr(0.0, 0.0), arr(10.0, 60.0))
    assert second.tolist() == [20.0, 50.0]


def test_a_new_count_or_a_report_seen_already_gives_the_reports_rate() -> None:
    spans = ArrivalSpans(3)
    spans.rates(arr(1.0, 1.0, 1.0), arr(50.0, 50.0, 50.0), arr(0.0, 0.0, 0.0), arr(5.0, 5.0, 5.0))
    rates = spans.rates(
        arr(2.0, 1.0, 2.0), arr(4.0, 50.0, 60.0), arr(1.5, 0.0, 0.0), arr(8.0, 5.0, 7.0)
    )
    assert rates.tolist() == [8.0, 5.0, 10.0]


def test_members_without_reports_or_counts_get_their_reports_rate() -> None:
    spans = ArrivalSpans(2)
    nan = math.nan
    spans.rates(arr(nan, 1.0), arr(nan, nan), arr(nan, nan), arr(nan, 3.0))
    rates = spans.rates(arr(2.0, 2.0), arr(10.0, nan), arr(0.0, nan), arr(4.0, 6.0))
    assert rates.tolist() == [4.0, 6.0]
