"""Autoscaling end to end: controller + model + fake agents whose CPU follows the active count.

Load is a number of "servers' worth" of work shared evenly by the live active members, so
activating a standby member lowers everyone's CPU as it would on real hosts. Every packet checks
that its connection keeps its DIP (topo.sim) and none is dropped.
"""

from __future__ import annotations

from dataclasses import replace

from agent.wire import LoadReport, encode_report
from controller.config import Config, ControllerSettings, DipConfig, VipConfig
from policy.autoscale import AutoscaleParams, MemberState
from topo.sim import VIP_IP, SimOptions, Simulation

DIPS = tuple(f"10.0.{2 + i}.2:8080" for i in range(4))
SETTINGS = ControllerSettings(
    policy="cpu",
    report_interval=0.5,
    min_rollout_interval=0.5,
    quiet_period=1.0,
    min_weight_change=0.0,
    teardown_linger=0.5,
    tcp_idle_timeout=10.0,
    drain_timeout=30.0,
)
SCALING = AutoscaleParams(
    target=0.6,
    tolerance=0.1,
    min_active=2,
    max_active=3,
    max_step_up=2,
    stabilisation_window=6.0,
    cooldown_up=2.0,
    cooldown_down=3.0,
)


class LoadedPool(Simulation):
    """A 2 active + 2 standby TCP pool; `load` servers' worth of CPU spread on the live members."""

    def __init__(self, load: float) -> None:
        super().__init__(SimOptions(dips=4, udp_fraction=0.0, long_fraction=0.0, seed=21))
        self.load = load
        self.silent: set[str] = set()
        dips = tuple(
            DipConfig(d.split(":")[0], 8080, 1, "active" if i < 2 else "standby")
            for i, d in enumerate(DIPS)
        )
        self.config = Config(
            replace(SETTINGS), (VipConfig("web", VIP_IP, 80, "tcp", dips),), autoscale=SCALING
        )
        self.service = self.make_service()

    def state(self, dip: str) -> MemberState:
        """The member's lifecycle state."""
        return self.service.core.pools[0].member(dip).state

    def weight(self, dip: str) -> int:
        """The member's weight in the active version."""
        return self.service.core.view().pools[0].active_weight(dip)

    def report(self, now: float) -> None:
        """Active members share the load (CPU capped at 1); the others idle."""
        self._report_seq += 1
        active = [m.dip for m in self.service.core.pools[0] if m.state is MemberState.ACTIVE]
        for member in self.service.core.pools[0]:
            if member.dip in self.silent:
                continue
            cpu = min(1.0, self.load / len(active)) if member.dip in active else 0.02
            report = LoadReport(member.dip, self._report_seq, now, cpu, 0)
            self.service.ingest_report(encode_report(report))

    def members(self) -> set[str]:
        """The pool's members."""
        return {m.dip for m in self.service.core.pools[0]}

    def active_count(self) -> int:
        """Members in the ACTIVE state."""
        return sum(m.state is MemberState.ACTIVE for m in self.service.core.pools[0])


def first_dips(sim: Simulation, after: float) -> list[str]:
    """The DIP of every connection whose first packet was sent after `after`."""
    return [c.dip for c in sim.conns if c.due[0] > after and c.dip is not None]


def test_load_rise_activates_standby_then_fall_drains_one_back_to_standby() -> None:
    sim = LoadedPool(load=1.0)
    sim.start()
    sim.open_connections(1500, 0.5, 36.0)
    sim.advance(5.0)
    assert sim.active_count() == 2
    assert sim.weight(DIPS[2]) == sim.weight(DIPS[3]) == 0
    # Load rises: 2.4 servers' worth asks for 4 members; max_active caps it at 3.
    sim.load = 2.4
    rise = sim.clock.seconds()
    activated = sim.advance_until(lambda: sim.weight(DIPS[2]) > 0, limit=3.0)
    assert sim.state(DIPS[2]) is MemberState.ACTIVE
    sim.advance(16.0)
    assert sim.active_count() == 3  # max_active respected...
    assert sim.state(DIPS[3]) is MemberState.STANDBY and sim.weight(DIPS[3]) == 0
    newer = first_dips(sim, activated)
    assert newer.count(DIPS[2]) > len(newer) / 6  # ...and the new member takes its share
    assert DIPS[3] not in first_dips(sim, rise)
    # Load falls: nothing drains before the stabilisation window has passed.
    sim.load = 0.6
    fall = sim.clock.seconds()
    sim.advance(fall + SCALING.stabilisation_window - 1.0)
    assert sim.active_count() == 3
    draining = sim.advance_until(
        lambda: sim.state(DIPS[2]) is MemberState.DRAINING, limit=SCALING.stabilisation_window
    )
    # Equal utilisation: the last active member in config order is the one drained.
    assert draining - fall >= SCALING.stabilisation_window - 0.5
    cutoff = sim.advance_until(lambda: sim.weight(DIPS[2]) == 0, limit=3.0)
    open_then = [c for c in sim.conns if c.dip == DIPS[2] and c.packets < len(c.due)]
    assert open_then  # the drained member still had connections in flight
    back = sim.advance_until(lambda: sim.state(DIPS[2]) is MemberState.STANDBY, limit=15.0)
    last_packet = max(c.due[-1] for c in sim.conns if c.dip == DIPS[2])
    assert back >= last_packet  # it went back to standby only once its connections ended
    assert all(c.packets == len(c.due) for c in open_then)
    assert DIPS[2] not in first_dips(sim, cutoff)
    sim.advance(sim.clock.seconds() + 8.0)
    assert sim.active_count() == 2  # min_active respected: no further drain
    assert sim.state(DIPS[2]) is MemberState.STANDBY  # back to standby, not removed
    assert sim.service.core.members_removed == 0
    result = sim.finish()
    assert result.connections == 1500 and result.broken == 0 and result.dropped == 0
    assert sim.service.unexpected_errors == 0


def test_autoscaler_does_not_undo_an_operator_drain_or_activate_a_dead_standby() -> None:
    sim = LoadedPool(load=1.0)
    sim.start()
    sim.open_connections(600, 0.5, 20.0)
    sim.advance(1.0)
    sim.silent = {DIPS[2]}  # its agent reported, then went quiet: the host is down
    sim.advance(4.0)
    # The operator removes a member the load needs: the autoscaler replaces it with a standby
    # member whose agent reports, never by re-activating the one being removed.
    sim.service.drain_member(DIPS[1], remove=True)
    sim.advance_until(lambda: sim.weight(DIPS[3]) > 0, limit=4.0)
    assert sim.state(DIPS[1]) is MemberState.DRAINING
    assert sim.state(DIPS[2]) is MemberState.STANDBY  # silent: not a candidate
    sim.advance_until(lambda: DIPS[1] not in sim.members(), limit=20.0)
    assert sim.service.core.members_removed == 1
    sim.advance(sim.clock.seconds() + 4.0)
    result = sim.finish()
    assert result.broken == 0 and result.dropped == 0
    assert sim.service.unexpected_errors == 0
