"""ReportBuilder: sequence numbers, CPU from consecutive samples, rates, and failing samplers."""

from __future__ import annotations

import logging

import pytest

from agent.parsing import CpuSample, SamplerError
from agent.report import ReportBuilder


class FakeScope:
    """A CPU scope replaying scripted samples (or errors)."""

    name = "fake"

    def __init__(self, samples: list[CpuSample | SamplerError]) -> None:
        self.samples = samples

    def sample(self) -> CpuSample:
        item = self.samples.pop(0)
        if isinstance(item, SamplerError):
            raise item
        return item


def test_reports_carry_increasing_seq_cpu_conns_and_rate() -> None:
    scope = FakeScope([CpuSample(0, 0, 2), CpuSample(1, 1, 2), CpuSample(3, 2, 2)])
    accepted = iter([100, 110, 130])
    builder = ReportBuilder("10.0.0.1:80", scope, lambda port: port // 10, lambda: next(accepted))
    builder.prime(0.0)
    first, second = builder.build(1.0, 1000.0), builder.build(2.0, 1001.0)
    assert (first.seq, first.cpu, first.conns, first.conn_rate) == (0, 0.5, 8, 10.0)
    assert (second.seq, second.cpu, second.conn_rate, second.ts) == (1, 1.0, 20.0, 1001.0)
    assert first.state == "up"


def test_a_failing_cpu_scope_reports_down_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    gone = SamplerError("pid:5 is gone")
    scope = FakeScope([CpuSample(0, 0, 1), gone, SamplerError("pid:5 is gone"), CpuSample(2, 3, 1)])
    builder = ReportBuilder("10.0.0.1:80", scope, lambda port: 0, None, state="drain")
    builder.prime(0.0)
    with caplog.at_level(logging.INFO, logger="agent.report"):
        reports = [builder.build(float(t), 0.0) for t in (1, 2, 3)]
    assert [r.state for r in reports] == ["down", "down", "drain"]
    assert [r.seq for r in reports] == [0, 1, 2]
    assert reports[2].cpu == 0.0  # no usable previous sample after a failure
    assert reports[0].conn_rate is None
    messages = [r.getMessage() for r in caplog.records]
    assert sum("sampling failed" in m for m in messages) == 1
    assert sum("recovered" in m for m in messages) == 1


def test_failing_connection_count_reports_zero() -> None:
    def broken(port: int) -> int:
        raise SamplerError("denied")

    builder = ReportBuilder("10.0.0.1:80", FakeScope([CpuSample(0, 0, 1)] * 2), broken, None)
    builder.prime(0.0)
    assert builder.build(1.0, 0.0).conns == 0


def test_a_service_that_refuses_connections_is_reported_down_until_it_accepts_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="agent.report")
    scope = FakeScope([CpuSample(i, i, 1) for i in range(5)])
    serving = iter([True, False, False, True])
    builder = ReportBuilder(
        "10.0.0.1:80", scope, lambda port: 0, None, state="drain", probe=lambda: next(serving)
    )
    builder.prime(0.0)
    states = [builder.build(float(t), 1000.0 + t).state for t in range(1, 5)]
    assert states == ["drain", "down", "down", "drain"]
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]  # each change once


def test_probe_connections_are_kept_out_of_the_connection_rate() -> None:
    scope = FakeScope([CpuSample(i, i, 1) for i in range(4)])
    accepted = iter([100, 111, 122])  # ten clients a second plus the probe's own connection
    builder = ReportBuilder(
        "10.0.0.1:80", scope, lambda port: 0, lambda: next(accepted), probe=lambda: True
    )
    builder.prime(0.0)
    rates = [builder.build(float(t), 1000.0 + t).conn_rate for t in (1, 2)]
    assert rates == [10.0, 10.0]
