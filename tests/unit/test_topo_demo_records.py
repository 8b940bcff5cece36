"""The real demo's reading of client connection logs never shrinks the counts unseen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from topo.apps.outcome import ConnectionRecord
from topo.demo_real import read_records
from topo.mininet_net import NetworkError

GOOD = ConnectionRecord(1.0, "ok", "10.1.3.2:8080", 0.01, 4).to_json()
BROKEN = ConnectionRecord(2.0, "reset", "10.1.4.2:8080", 0.02, 1, "peer reset").to_json()


def _log(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "client.log"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_records_are_read_back_with_their_outcomes(tmp_path: Path) -> None:
    path = _log(tmp_path, json.dumps(GOOD), json.dumps(BROKEN))
    assert [r.outcome for r in read_records([path])] == ["ok", "reset"]


def test_a_record_with_an_unknown_outcome_fails_the_final_read(tmp_path: Path) -> None:
    path = _log(tmp_path, json.dumps(GOOD), json.dumps({**BROKEN, "outcome": "lost"}))
    with pytest.raises(NetworkError, match="not a connection record"):
        read_records([path])


def test_progress_reads_skip_what_the_final_read_would_refuse(tmp_path: Path) -> None:
    path = _log(tmp_path, json.dumps(GOOD), json.dumps({"t": 3.0}))
    assert len(read_records([path], strict=False)) == 1
