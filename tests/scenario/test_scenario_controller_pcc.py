"""Per-packet consistency: controller + in-process model + fake agents on a test clock.

Every simulated packet checks that its connection still reaches the DIP its first packet
reached; loads change every phase so the controller keeps rolling out, with faults injected.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from controller.config import ControllerSettings
from controller.core import slots
from topo.sim import SimOptions, Simulation

FAST = ControllerSettings(
    min_rollout_interval=0.05, quiet_period=2.5, report_interval=0.1, min_weight_change=0.0
)


def test_no_connection_changes_dip_through_rollouts_with_faults() -> None:
    options = SimOptions(
        connections=1500,
        rollouts=15,
        write_latency=(0.01, 0.2),
        write_failure_rate=0.02,
        digest_delay=(0.0, 0.3),
        seed=3,
    )
    result = Simulation(options).run()
    assert result.connections == 1500 and result.packets > 5000
    assert result.rollouts >= 15
    assert result.aborted >= 1  # failed writes did abort rollouts...
    assert result.broken == 0  # ...and no connection ever changed DIP
    assert result.dropped == 0
    assert result.counters["learn_installed_total"] == result.connections
    assert result.share_error_pp <= 5.0  # new connections follow the weights (noise at this N)


def slow_digests(seed: int = 5) -> SimOptions:
    """Rollouts as fast as allowed while digests lag by up to 2 s: only the gate stops breakage."""
    return SimOptions(
        connections=1200,
        rollouts=25,
        phase=0.25,
        write_latency=(0.01, 0.05),
        digest_delay=(0.0, 2.0),
        settings=FAST,
        seed=seed,
    )


def test_slot_reuse_waits_for_late_digests_instead_of_breaking_connections() -> None:
    result = Simulation(slow_digests()).run()
    assert result.broken == 0
    assert result.counters["rollout_backpressure_total"] > 0
    assert result.rollouts >= 10


def test_harness_detects_broken_connections_when_slot_reuse_is_not_gated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def ungated(self: slots.SlotLedger, slot: int, *args: object) -> str | None:
        return "active" if slot == self.active else None

    monkeypatch.setattr(slots.SlotLedger, "blocker", ungated)
    result = Simulation(slow_digests()).run()
    assert result.broken > 0  # the invariant check is live: without the gate it fires


def test_full_conn_table_holds_rollouts_and_breaks_nothing() -> None:
    options = SimOptions(
        connections=800,
        rollouts=8,
        conn_table_size=60,
        udp_fraction=0.0,
        write_latency=(0.01, 0.05),
        seed=7,
    )
    sim = Simulation(options)
    result = sim.run()
    assert result.broken == 0
    assert result.counters["learn_table_full_total"] > 0
    assert result.counters["rollout_backpressure_total"] > 0
    assert sim.switch.table_num_entries("conn_table") <= 60


def test_drain_moves_no_existing_connection_and_gets_no_new_ones() -> None:
    options = SimOptions(connections=900, rollouts=12, write_latency=(0.01, 0.1), seed=11)
    sim = Simulation(options)
    sim.start()
    sim.open_connections(900, 0.5, 18.0)
    sim.new_loads()
    sim.advance(6.0)
    drained = "10.0.3.2:8080"
    before = sum(1 for c in sim.conns if c.dip == drained)
    sim.service.core.drain_member(sim.clock.seconds(), drained, remove=False)
    sim.advance(8.0)
    cutoff = sim.clock.seconds()
    sim.new_loads()
    sim.advance(30.0)
    result = sim.finish()
    assert before > 0
    assert result.broken == 0
    late = [c for c in sim.conns if c.due[0] > cutoff and c.flow.dst_port == 80]
    assert late and all(c.dip != drained for c in late)


@pytest.mark.parametrize("journal", [True, False])
def test_controller_restart_against_a_switch_that_kept_its_state(
    tmp_path: Path, journal: bool
) -> None:
    settings = ControllerSettings(
        min_rollout_interval=1.0,
        quiet_period=1.0,
        report_interval=0.5,
        min_weight_change=0.0,
        restart_hold=3.0,
    )
    options = SimOptions(
        connections=1200, rollouts=12, write_latency=(0.01, 0.1), settings=settings, seed=13
    )
    sim = Simulation(options)
    state = tmp_path / "state.json" if journal else None
    sim.service = sim.make_service(state)
    sim.start()
    sim.open_connections(1200, 0.5, 24.0)
    for t in range(1, 10):
        sim.new_loads()
        sim.advance(t * 1.5)
    entries = sim.switch.table_num_entries("conn_table")
    sim.restart(downtime=1.0, state_path=state)
    assert sim.switch.table_num_entries("conn_table") >= entries - 50  # nothing was cleared
    for t in range(11, 24):
        sim.new_loads()
        sim.advance(t * 1.5)
    sim.advance(45.0)
    result = sim.finish()
    assert result.rollouts >= 10
    assert sim.service.core.view().rollouts.rollouts >= 3  # the new controller rolls out too
    assert result.broken == 0
    if journal:
        assert result.dropped == 0
    # Without the journal dip_table is rebuilt once; packets in that short window may be dropped
    # (a connection not yet installed waits for its entry), never sent to another DIP.


def test_simulated_connections_never_share_a_five_tuple() -> None:
    sim = Simulation(SimOptions(seed=3))
    sim.open_connections(30_000, 0.0, 1.0)  # ~13 birthday collisions if drawn with replacement
    flows = [conn.flow for conn in sim.conns]
    assert len(set(flows)) == len(flows) == 30_000


def test_a_dip_whose_agent_died_gets_nothing_from_a_restarted_controller(tmp_path: Path) -> None:
    sim = Simulation(SimOptions(connections=0, udp_fraction=0.0, seed=5))
    state = tmp_path / "state.json"
    sim.service = sim.make_service(state)
    sim.start()
    sim.advance(3.0)
    dead = "10.0.2.2:8080"
    assert sim.service.core.view().pools[0].active_weight(dead) > 0
    sim.dead_agents.add(dead)  # the agent (and its server) die while the controller restarts
    sim.restart(downtime=0.2, state_path=state)
    sim.advance(sim.clock.seconds() + 4.0)  # down_after, then a rollout without it
    assert sim.service.core.view().pools[0].active_weight(dead) == 0
    start = sim.clock.seconds()
    sim.open_connections(300, start, start + 3.0)
    sim.advance(start + 6.0)
    reached = {c.dip for c in sim.conns if c.dip is not None}
    assert dead not in reached and len(reached) == 3


def test_controller_killed_mid_rollout_and_restarted_with_its_journal_keeps_rolling_out(
    tmp_path: Path,
) -> None:
    settings = ControllerSettings(
        min_rollout_interval=0.5,
        quiet_period=0.5,
        report_interval=0.5,
        min_weight_change=0.0,
        restart_hold=2.0,
    )
    sim = Simulation(
        SimOptions(connections=0, write_latency=(0.005, 0.05), settings=settings, seed=21)
    )
    state = tmp_path / "state.json"
    sim.service = sim.make_service(state)
    sim.start()
    sim.open_connections(1500, 0.5, 40.0)
    rng = random.Random(21)
    t = 0.0
    for _ in range(8):  # kills at arbitrary points, most of them with writes in flight
        for _ in range(2):
            sim.new_loads()
            t += 1.0
            sim.advance(t)
        t += rng.uniform(0.0, 1.0)
        sim.advance(t)
        sim.crash(downtime=rng.uniform(0.05, 0.5), state_path=state)
        t = sim.clock.seconds()
    before = sim.service.core.view().rollouts.rollouts
    for _ in range(10):
        sim.new_loads()
        t += 1.5
        sim.advance(t)
    sim.advance(t + 35.0)
    result = sim.finish()
    assert result.broken == 0
    view = sim.service.core.view().rollouts
    assert view.rollouts - before >= 5  # the last controller is not stuck aborting
    assert view.rollouts_aborted <= 2
