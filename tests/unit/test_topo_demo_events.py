"""The demo's time series: what it adds to the controller's record for the plot."""

from __future__ import annotations

from topo.apps.outcome import ConnectionRecord
from topo.demo import enrich_events
from topo.summary import Phase, RunData, UtilSample


def _run(events: tuple[dict[str, object], ...]) -> RunData:
    return RunData(
        dips=("a", "b"),
        phases=(Phase("equal", "equal", 0.0, 10.0), Phase("policy", "ratio", 10.0, 20.0)),
        records=(
            ConnectionRecord(1.0, "ok", "a", 0.1, 1),
            ConnectionRecord(2.0, "ok", "b", 0.1, 1),
            ConnectionRecord(3.0, "reset", "b", 0.1, 0),
            ConnectionRecord(12.0, "ok", "b", 0.1, 1),
        ),
        samples=(UtilSample(1.0, "a", 0.5),),
        events=events,
    )


def test_missing_series_are_filled_from_what_the_demo_measured() -> None:
    events = enrich_events(_run(()))
    kinds = [e["kind"] for e in events]
    assert kinds.count("load") == 1 and kinds.count("phase") == 2
    shares = [e["shares"] for e in events if e["kind"] == "share"]
    assert shares == [{"a": 0.5, "b": 0.5}, {"b": 1.0}]  # 5 s bins of successful connections
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)


def test_controller_series_are_kept_as_they_are() -> None:
    own = (
        {"t": 0.5, "kind": "load", "dip": "a", "cpu": 0.9, "conns": 1, "state": "up"},
        {"t": 0.6, "kind": "share", "pool": "web", "shares": {"a": 1.0}},
        {"t": 0.0, "kind": "phase", "name": "equal", "demo": True},
    )
    events = enrich_events(_run(own))
    assert [e for e in events if e["kind"] == "load"] == [own[0]]
    assert [e for e in events if e["kind"] == "share"] == [own[1]]
    assert [e for e in events if e["kind"] == "phase"] == [own[2]]
