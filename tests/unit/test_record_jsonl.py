"""Recorder: one flushed JSON object per event; None path records nothing."""

from __future__ import annotations

import json
import math
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from controller.shell.record import Recorder, encode_event, read_events


def test_events_are_written_as_json_lines_and_flushed_at_once(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    recorder = Recorder(path)
    recorder.event(1.5, "load", dip="10.1.3.2:8080", cpu=0.25, conns=3, state="up")
    # readable before close: every line is flushed
    assert json.loads(path.read_text().splitlines()[0]) == {
        "t": 1.5,
        "kind": "load",
        "dip": "10.1.3.2:8080",
        "cpu": 0.25,
        "conns": 3,
        "state": "up",
    }
    recorder.event(2.0, "phase", name="policy ratio")
    recorder.close()
    assert [e["kind"] for e in read_events(path)] == ["load", "phase"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"weights": {"a": np.int64(3)}, "pool": 0}, {"weights": {"a": 3}, "pool": 0}),
        ({"count": np.float64(2.5)}, {"count": 2.5}),
        ({"shares": np.array([0.5, 0.5])}, {"shares": [0.5, 0.5]}),
        ({"cpu": math.nan, "x": [math.inf, 1.0]}, {"cpu": None, "x": [None, 1.0]}),
    ],
)
def test_numpy_values_and_non_finite_numbers_become_plain_json(
    fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    line = json.loads(encode_event(0.0, "weights", fields))
    assert {k: v for k, v in line.items() if k not in ("t", "kind")} == expected


@pytest.mark.parametrize(
    ("kind", "fields", "needle"),
    [
        ("loads", {}, "unknown record kind 'loads'"),
        ("load", {"t": 1}, "reserved"),
        ("load", {"kind": "x"}, "reserved"),
    ],
)
def test_bad_events_are_refused(kind: str, fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        encode_event(0.0, kind, fields)


def test_a_recorder_without_a_path_writes_nothing_but_still_checks_kinds(tmp_path: Path) -> None:
    recorder = Recorder(None)
    assert not recorder.enabled
    recorder.event(0.0, "learn", count=4)
    with pytest.raises(ValueError, match="unknown record kind"):
        recorder.event(0.0, "nonsense")
    recorder.close()
    assert list(tmp_path.iterdir()) == []


def test_reading_skips_blank_and_truncated_lines(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl"
    path.write_text('{"t": 0, "kind": "learn", "count": 1}\n\n{"t": 1, "kind": "lea\n[1]\n')
    assert list(read_events(path)) == [{"t": 0, "kind": "learn", "count": 1}]


def test_context_manager_closes_the_file(tmp_path: Path) -> None:
    with Recorder(tmp_path / "r.jsonl") as recorder:
        recorder.event(0.0, "expire", count=2)
    recorder.event(1.0, "expire", count=3)  # dropped after close
    assert len(list(read_events(tmp_path / "r.jsonl"))) == 1


def test_the_record_file_is_private_even_when_it_existed(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text("old\n")
    path.chmod(0o644)
    with Recorder(path) as recorder:
        recorder.event(0.0, "phase", name="start")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith('{"t": 0.0')
