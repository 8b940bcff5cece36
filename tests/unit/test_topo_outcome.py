"""Load-generator outcomes, their JSON summary, and request pacing."""

from __future__ import annotations

import pytest

from topo.apps.client import parse_target, request_times
from topo.apps.outcome import ConnectionRecord, route_outcome, shares, summarise


@pytest.mark.parametrize(
    ("servers", "expected", "outcome"),
    [
        (["a", "a"], None, "ok"),
        (["a", "b"], None, "misrouted"),
        (["a"], frozenset({"a", "b"}), "ok"),
        (["c"], frozenset({"a", "b"}), "misrouted"),
        ([], frozenset({"a"}), "ok"),
    ],
)
def test_route_outcome(servers: list[str], expected: frozenset[str] | None, outcome: str) -> None:
    assert route_outcome(servers, expected) == outcome


def _record(outcome: str, server: str | None = "a", latency: float = 0.01) -> ConnectionRecord:
    return ConnectionRecord(start=1.0, outcome=outcome, server=server, latency=latency, requests=1)


def test_summary_counts_every_outcome_and_shares_only_successes() -> None:
    records = [
        _record("ok", "a", 0.010),
        _record("ok", "a", 0.020),
        _record("ok", "b", 0.030),
        _record("failed", None),
        _record("reset", "b"),
        _record("misrouted", "c"),
        _record("corrupt", "a"),
    ]
    report = summarise(records, 2.0)
    assert report["started"] == 7 and report["made"] == 3
    assert (report["failed"], report["reset"], report["misrouted"], report["corrupt"]) == (
        1,
        1,
        1,
        1,
    )
    assert report["broken"] == 4
    assert report["by_server"] == {"a": 2, "b": 1}
    assert report["share"] == pytest.approx({"a": 2 / 3, "b": 1 / 3})
    assert report["latency_ms"]["p50"] == pytest.approx(20.0)
    assert report["latency_ms"]["max"] == pytest.approx(30.0)


def test_empty_summary_is_well_formed() -> None:
    report = summarise([], 0.0)
    assert report["started"] == 0 and report["broken"] == 0 and report["share"] == {}
    assert shares([]) == {}


def test_record_json_round_trips_and_rejects_unknown_outcomes() -> None:
    record = ConnectionRecord(12.5, "reset", None, 0.25, 2, "boom")
    assert ConnectionRecord.from_json(record.to_json()) == record
    with pytest.raises(ValueError, match="weird"):
        ConnectionRecord.from_json({**record.to_json(), "outcome": "weird"})


@pytest.mark.parametrize(
    ("requests", "lifetime", "times"),
    [(1, 0.0, [0.0]), (1, 5.0, [0.0]), (3, 2.0, [0.0, 1.0, 2.0]), (2, 0.0, [0.0, 0.0])],
)
def test_request_times_spread_over_the_lifetime(
    requests: int, lifetime: float, times: list[float]
) -> None:
    assert request_times(requests, lifetime) == pytest.approx(times)


@pytest.mark.parametrize("text", ["10.0.0.1", ":80", "h:0", "h:70000", "h:x"])
def test_parse_target_rejects_bad_endpoints(text: str) -> None:
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        parse_target(text)


def test_parse_target_splits_host_and_port() -> None:
    assert parse_target("10.0.0.100:80") == ("10.0.0.100", 80)
