"""p4lb-plot: series extraction from a record, and a PNG written from a synthetic run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.shell.plot import main, phase_spans, series_from_events, smoothed
from controller.shell.record import Recorder


@pytest.mark.parametrize(
    ("name", "events", "field", "expected"),
    [
        (
            "loads per DIP, times relative to the first event",
            [
                {"t": 10.0, "kind": "load", "dip": "a", "cpu": 0.5, "conns": 1, "state": "up"},
                {"t": 11.0, "kind": "load", "dip": "a", "cpu": 0.7, "conns": 1, "state": "up"},
            ],
            "utilisation",
            {"a": ([0.0, 1.0], [0.5, 0.7])},
        ),
        (
            "weights become fractions of the pool",
            [{"t": 0.0, "kind": "weights", "pool": 0, "weights": {"a": 192, "b": 64}}],
            "weight_share",
            {"a": ([0.0], [0.75]), "b": ([0.0], [0.25])},
        ),
        (
            "shares are kept as recorded",
            [{"t": 0.0, "kind": "share", "pool": 0, "shares": {"a": 0.6, "b": 0.4}}],
            "conn_share",
            {"a": ([0.0], [0.6]), "b": ([0.0], [0.4])},
        ),
        (
            "bad values are skipped",
            [
                {"t": 0.0, "kind": "load", "dip": "a", "cpu": None},
                {"t": "x", "kind": "load", "dip": "a", "cpu": 0.1},
                {"t": 1.0, "kind": "weights", "weights": "nope"},
            ],
            "utilisation",
            {},
        ),
    ],
)
def test_series_from_events(
    name: str, events: list[dict[str, Any]], field: str, expected: dict[str, Any]
) -> None:
    assert getattr(series_from_events(events), field) == expected, name


def test_phases_become_markers() -> None:
    data = series_from_events(
        [{"t": 5.0, "kind": "learn", "count": 1}, {"t": 7.5, "kind": "phase", "name": "ratio"}]
    )
    assert data.phases == ((2.5, "ratio"),)
    assert data.empty


def test_plot_command_writes_a_png(tmp_path: Path) -> None:
    record = tmp_path / "run.jsonl"
    with Recorder(record) as recorder:
        for step in range(20):
            t = step * 0.5
            for dip, cpu in (("10.1.3.2:8080", 0.9 - step * 0.02), ("10.1.4.2:8080", 0.3)):
                recorder.event(t, "load", dip=dip, cpu=cpu, conns=step, state="up")
            recorder.event(
                t,
                "weights",
                pool=0,
                weights={"10.1.3.2:8080": 128 - step, "10.1.4.2:8080": 128 + step},
            )
            recorder.event(t, "share", pool=0, shares={"10.1.3.2:8080": 0.5, "10.1.4.2:8080": 0.5})
            if step == 10:
                recorder.event(t, "phase", name="switch to ratio")
    out = tmp_path / "out.png"
    assert main([str(record), "-o", str(out), "--title", "demo"]) == 0
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000


def test_a_record_without_series_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = tmp_path / "empty.jsonl"
    record.write_text('{"t": 0, "kind": "learn", "count": 1}\n')
    assert main([str(record), "-o", str(tmp_path / "x.png")]) == 1
    assert "no load, weights or share events" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "x.png")]) == 2


def test_smoothing_averages_the_window_before_each_sample() -> None:
    times = [0.0, 1.0, 2.0, 10.0]
    assert smoothed(times, [0.0, 1.0, 0.5, 1.0], window=5.0) == [0.0, 0.5, 0.5, 1.0]


def test_each_phase_lasts_until_the_next_and_the_last_until_the_end() -> None:
    spans = phase_spans(((0.0, "equal"), (50.0, "ratio")), end=150.0)
    assert spans == [(0.0, 50.0, "equal"), (50.0, 150.0, "ratio")]
