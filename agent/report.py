"""Turns successive samples of one server into LoadReports (the agent's per-tick logic)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from agent.parsing import CpuSample, SamplerError, rate, utilisation
from agent.samplers import CpuScope
from agent.wire import LoadReport, ReportState, parse_dip

log = logging.getLogger(__name__)

T = TypeVar("T")


def _rounded(value: float | None, digits: int) -> float | None:
    """Round for the wire (shorter JSON); the samplers are not more precise than this anyway."""
    return None if value is None else round(value, digits)


class ReportBuilder:
    """Samples a CPU scope, the service port's connections and accepted-connection counter, and
    (with `probe`) whether the service still accepts connections."""

    def __init__(
        self,
        dip: str,
        scope: CpuScope,
        count_connections: Callable[[int], int],
        accepted_total: Callable[[], int] | None,
        state: ReportState = "up",
        *,
        probe: Callable[[], bool] | None = None,
    ) -> None:
        self.dip = dip
        self.port = parse_dip(dip)[1]
        self.state: ReportState = state
        self._scope = scope
        self._count_connections = count_connections
        self._accepted_total = accepted_total
        self._probe = probe
        self._refusing = False
        self._probes_accepted = 0
        """Probe connections the service accepted: its accept counter includes them."""
        self._seq = 0
        self._previous_cpu: CpuSample | None = None
        self._previous_accepts: tuple[float, int] | None = None
        self._failures: dict[str, str] = {}

    def prime(self, now: float) -> None:
        """Take the baseline samples the first report's rates are measured against."""
        self._cpu()
        self._accepts(now)

    def build(self, now: float, wall: float) -> LoadReport:
        """The next report: `now` is the monotonic time of the sample, `wall` its epoch time."""
        cpu = self._cpu()
        state: ReportState = self.state if cpu is not None else "down"
        if self._probe is not None and not self._serving():
            state = "down"  # a crashed server whose agent lives must stop getting connections
        conns = self._guard("connections", lambda: self._count_connections(self.port))
        report = LoadReport(
            dip=self.dip,
            seq=self._seq,
            ts=wall,
            cpu=0.0 if cpu is None else round(cpu, 4),
            conns=conns or 0,
            conn_rate=_rounded(self._accepts(now), 3),
            state=state,
        )
        self._seq += 1
        return report

    def _serving(self) -> bool:
        assert self._probe is not None
        serving = self._probe()
        self._probes_accepted += serving
        if serving == self._refusing:  # log the changes only
            (log.info if serving else log.warning)(
                "service %s %s", self.dip, "accepts connections again" if serving else "refuses"
            )
        self._refusing = not serving
        return serving

    def _cpu(self) -> float | None:
        current = self._guard("cpu", self._scope.sample)
        previous, self._previous_cpu = self._previous_cpu, current
        if current is None:
            return None
        return 0.0 if previous is None else utilisation(previous, current)

    def _accepts(self, now: float) -> float | None:
        if self._accepted_total is None:
            return None
        total = self._guard("conn_rate", self._accepted_total)
        if total is None:
            self._previous_accepts = None
            return None
        total -= self._probes_accepted  # the probes are not clients: keep them out of the rate
        previous, self._previous_accepts = self._previous_accepts, (now, total)
        return rate(previous, (now, total))

    def _guard(self, what: str, read: Callable[[], T]) -> T | None:
        """Run a sampler; log only when its failure state changes (not once per report)."""
        try:
            value = read()
        except SamplerError as exc:
            if self._failures.get(what) != str(exc):
                log.warning("%s sampling failed: %s", what, exc)
            self._failures[what] = str(exc)
            return None
        if self._failures.pop(what, None) is not None:
            log.info("%s sampling recovered", what)
        return value
