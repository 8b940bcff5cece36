"""The standing fault campaign, short: one run of every fault class of `python -m bench chaos`."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import CLASSES, run_class


@pytest.mark.parametrize("fault", CLASSES)
def test_no_fault_breaks_a_connection_or_stops_the_rollouts(fault: str, tmp_path: Path) -> None:
    run = run_class(fault, seed=3, connections=400, faults=2, state_dir=tmp_path)
    assert run.connections == 400
    assert run.broken == 0
    assert run.rollouts_after > 0
    if fault in ("kill", "kill-nostate", "switch-restart"):
        assert run.recover_s is not None and len(run.recover_s) == 2
    if fault == "kill":
        assert run.dropped == 0  # the journal lets the next controller adopt dip_table as is
