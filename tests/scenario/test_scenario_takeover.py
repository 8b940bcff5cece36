"""Two controllers on one switch: the backup takes over from the primary under traffic.

P4Runtime's arbitration is modelled by `FaultySwitch.demoted`: a backup's writes fail as
NOT_PRIMARY without reaching the switch, and it receives no digests or idle notices. Controller
B starts as the backup and waits while A programs the switch and carries thousands of
connections; then A loses the switch (a higher election ID took it) and B is promoted. B adopts
what the switch holds, as a restarted controller does, and carries on; A writes nothing more,
and no connection breaks.
"""

from __future__ import annotations

import pytest
from twisted.internet import defer

from controller.shell.app import ControllerService
from controller.switch.faults import FaultySwitch
from topo.sim import SimOptions, Simulation


class TwoControllers(Simulation):
    """topo.sim's run with a second controller on the same switch; agents report to both."""

    def __init__(self, faults: bool) -> None:
        latency, failures = ((0.0, 0.05), 0.05) if faults else ((0.0, 0.0), 0.0)
        options = SimOptions(
            udp_fraction=0.2, seed=11, write_latency=latency, write_failure_rate=failures
        )
        super().__init__(options)
        self.backup: ControllerService = self.make_service()
        self.others: list[ControllerService] = [self.backup]

    def report(self, now: float) -> None:
        """Every agent reports to every controller (as when given both controllers)."""
        primary = self.service
        for other in self.others:
            self.service = other
            super().report(now)
            self._report_seq -= 1  # one round, one sequence number
        self.service = primary
        super().report(now)


def arbitration(service: ControllerService) -> FaultySwitch:
    """The service's switch client, where the test decides who is primary."""
    assert isinstance(service.switch, FaultySwitch)
    return service.switch


@pytest.mark.parametrize("faults", [False, True], ids=["clean", "slow-and-failing-writes"])
def test_the_backup_takes_over_without_breaking_a_connection(faults: bool) -> None:
    sim = TwoControllers(faults)
    first, second = sim.service, sim.backup
    arbitration(second).demoted = True
    sim.start()
    waiting = defer.ensureDeferred(second.start())
    sim.open_connections(3000, 0.5, 30.0)
    for phase in range(1, 7):  # load changes: the primary rolls out
        sim.new_loads()
        sim.advance(phase * 1.5)
    # The backup waits and never even tries to write.
    assert not waiting.called and arbitration(second).writes == arbitration(second).refused == 0
    assert first.core.rollouts.counters.rollouts > 1

    # A higher election ID took the switch from `first`; `second` is next in line.
    arbitration(first).demoted = True
    arbitration(second).demoted = False
    handed_over = sim.clock.seconds()
    while not waiting.called:
        sim.advance(sim.clock.seconds() + sim.options.step)
        assert sim.clock.seconds() < handed_over + 10.0, "the backup never took over"
    assert waiting.result is None
    sim.others, sim.service = [first], second
    # What `first` sent in the moment before it learnt (a refused write, or its next tick) was
    # refused by the switch; nothing reached it.
    writes, refused = arbitration(first).writes, arbitration(first).refused
    for phase in range(1, 9):
        sim.new_loads()
        sim.advance(handed_over + phase * 4.0)
    sim.advance(sim.clock.seconds() + 35.0)  # every connection has ended

    assert not first.running and second.running
    # The demoted controller stopped: nothing more reached the switch, nothing more was tried.
    assert (arbitration(first).writes, arbitration(first).refused) == (writes, refused)
    assert second.core.rollouts.counters.rollouts > 0
    assert second.core.learner.counters.installed > 0
    result = sim.finish()
    assert result.connections == 3000
    assert result.broken == 0 and result.dropped == 0
    assert first.unexpected_errors == 0 and second.unexpected_errors == 0
