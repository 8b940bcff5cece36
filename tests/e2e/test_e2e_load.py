"""Injected CPU load on one server: its weight falls and its share of new connections follows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from topo.lab import Lab, LabOptions
from topo.mininet_net import stop_process, unavailable_reason
from topo.services import ControllerKnobs

REASON = unavailable_reason()
pytestmark = [pytest.mark.mininet, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    workdir = Path(tmp_path_factory.mktemp("e2e-load"))
    with Lab(workdir, LabOptions(knobs=ControllerKnobs(policy="ratio"))) as running:
        yield running


def _mean(weights: dict[str, int]) -> float:
    return sum(weights.values()) / len(weights)


def test_cpu_burner_moves_weight_and_new_connections_away(lab: Lab) -> None:
    hot, others = lab.dips[0], lab.dips[1:]
    background = lab.client("h1", 30, 300, name="background", extra=["--timeout", "30"])
    lab.wait_weights(
        lambda w: set(w) == set(lab.dips) and min(w.values()) > 0.5 * _mean(w),
        60,
        "weights on every server",
    )
    burner = lab.burn("h3")
    try:
        weights = lab.wait_weights(
            lambda w: w[hot] < 0.4 * _mean(w), 90, f"the weight of {hot} to fall"
        )
        probe = lab.finish(lab.client("h2", 40, 8, name="probe"), timeout=90)
        after = lab.weights()
    finally:
        stop_process(burner)
    report = lab.finish(background, timeout=90, interrupt=True)
    assert report["broken"] == 0 and probe["broken"] == 0, (report, probe, lab.workdir)
    share = probe["share"].get(hot, 0.0)
    weight_share = max(weights[hot] / sum(weights.values()), after[hot] / sum(after.values()))
    # the share of new connections follows the weight (both far below an equal quarter)
    assert share < 0.125, (probe["share"], weights, after)
    assert share <= weight_share + 0.06, (probe["share"], weights, after)
    assert all(probe["share"].get(d, 0.0) > share for d in others), probe["share"]
