"""ReportSpans: means of per-run counts (arrivals, busy CPU-seconds) between two looks."""

from __future__ import annotations

import math

import numpy as np

from policy.spans import ReportSpans


def arr(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def cols(*columns: tuple[float, ...]) -> np.ndarray:
    return np.column_stack([arr(*c) for c in columns])


def test_the_means_span_every_report_since_the_previous_look() -> None:
    spans = ReportSpans(2, 2)
    first = spans.means(
        arr(1.0, 1.0), arr(0.0, 0.0), cols((0.0, 100.0), (0.0, 10.0)), cols((40, 50), (0.5, 0.9))
    )
    # No previous look: the reports' own rate and CPU.
    assert first.tolist() == [[40.0, 0.5], [50.0, 0.9]]
    # One second and two reports later: 30 then 10 per second at CPU 0.8 then 0.4; the latest
    # report says 10 at 0.4.
    second = spans.means(
        arr(2.0, 2.0), arr(0.0, 0.0), cols((20.0, 150.0), (0.6, 10.9)), cols((10, 60), (0.4, 0.9))
    )
    assert np.allclose(second, [[20.0, 0.6], [50.0, 0.9]])


def test_a_new_count_or_a_report_seen_already_gives_the_reports_figures() -> None:
    spans = ReportSpans(4, 2)
    spans.means(
        arr(1.0, 1.0, 1.0, 1.0),
        arr(0.0, 0.0, 0.0, 0.0),
        cols((50.0, 50.0, 50.0, 50.0), (5.0, 5.0, 5.0, 5.0)),
        cols((5.0, 5.0, 5.0, 5.0), (0.5, 0.5, 0.5, 0.5)),
    )
    means = spans.means(
        arr(2.0, 1.0, 2.0, 2.0),
        arr(1.5, 0.0, 0.0, 0.0),  # the first member's agent started a new run
        cols((4.0, 50.0, 60.0, 60.0), (0.3, 5.0, 5.5, 4.0)),  # the last one's busy count fell
        cols((8.0, 5.0, 7.0, 7.0), (0.3, 0.5, 0.6, 0.6)),
    )
    assert np.allclose(means, [[8.0, 0.3], [5.0, 0.5], [10.0, 0.5], [10.0, 0.6]])


def test_members_without_reports_or_counts_get_their_reports_figures() -> None:
    spans = ReportSpans(2, 2)
    nan = math.nan
    spans.means(
        arr(nan, 1.0), arr(nan, nan), cols((nan, nan), (nan, nan)), cols((nan, 3), (nan, 1))
    )
    means = spans.means(
        arr(2.0, 2.0), arr(0.0, nan), cols((10.0, nan), (1.0, nan)), cols((4.0, 6.0), (0.2, 0.7))
    )
    assert means.tolist() == [[4.0, 0.2], [6.0, 0.7]]


def test_an_unknown_count_leaves_the_other_counts_means() -> None:
    spans = ReportSpans(1, 2)
    spans.means(arr(1.0), arr(0.0), cols((10.0,), (math.nan,)), cols((10.0,), (0.5,)))
    means = spans.means(arr(2.0), arr(0.0), cols((40.0,), (math.nan,)), cols((50.0,), (0.7,)))
    assert means.tolist() == [[30.0, 0.7]]
