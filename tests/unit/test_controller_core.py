"""The pure core driven against the in-process model: every call it returns is executed on a
p4model.Switch by a tiny synchronous runner, so tests assert where packets go."""

from __future__ import annotations

from dataclasses import replace
from typing import TypedDict, Unpack

import pytest
from core_runner import CoreRunner

import p4model
from controller.config import Config, ControllerSettings, DipConfig, VipConfig
from controller.core.controller_core import ControllerCore, SwitchView
from controller.core.epochs import FlipVersion, FreshEpochs
from controller.core.loadbook import DipLoad
from controller.core.ops import (
    DefaultActionSet,
    DefaultEntry,
    EntryCount,
    JournalWrite,
    Op,
    TableClear,
    TableDelete,
    TableInsert,
    TableModify,
)
from controller.routing import Route
from policy.autoscale import AutoscaleParams, MemberState
from topo.frames import ACK, PSH, SYN, TCP, FlowKey, build_frame, read_flow

VIP = "10.0.0.100"
DIPS = ("10.0.2.2", "10.0.3.2", "10.0.4.2")
ROUTES = [Route("10.0.1.0/24", 1, "00:01:00:00:00:01", "00:00:00:00:01:02")] + [
    Route(f"{ip}/32", 2 + i, "00:01:00:00:00:01", "00:00:00:00:02:02") for i, ip in enumerate(DIPS)
]


class Overrides(TypedDict, total=False):
    """The ControllerSettings fields these tests override."""

    restart_hold: float
    max_version_connections: int


def config(**settings: Unpack[Overrides]) -> Config:
    dips = tuple(DipConfig(ip, 8080, 1) for ip in DIPS)
    base = ControllerSettings(
        policy="cpu", min_rollout_interval=1.0, quiet_period=1.0, min_weight_change=0.0
    )
    return Config(replace(base, **settings), (VipConfig("web", VIP, 80, "tcp", dips),))


def target(op: Op) -> str:
    """The table an operation writes ("" for the journal)."""
    return "" if isinstance(op, JournalWrite) else op.table


def versions(switch: p4model.Switch) -> DefaultEntry:
    """version_config's default entry, as the shell reads it at start."""
    return DefaultEntry.read(*switch.table_get_default("version_config"))


def active(switch: p4model.Switch) -> int:
    """The active slot the switch holds."""
    return versions(switch).params[0]


def load(ip: str, cpu: float, now: float) -> DipLoad:
    return DipLoad(f"{ip}:8080", "up", cpu, 0, None, now, 0.0, 1, "up")


class Runner(CoreRunner):
    """A CoreRunner that also ticks the core and delivers the model's digests."""

    def tick(self, now: float, cpu: tuple[float, ...] = (0.5, 0.5, 0.5)) -> None:
        self.now = now
        loads = {f"{ip}:8080": load(ip, c, now) for ip, c in zip(DIPS, cpu, strict=True)}
        self.feed(self.core.tick(now, loads))
        self.run()

    def digests(self) -> None:
        for digest in self.switch.pop_digests():
            self.feed(self.core.on_digest(self.now, digest))
        self.run()


def new_core(
    config: Config, capacity: int | None = None, *, journaling: bool = False
) -> ControllerCore:
    dataplane = p4model.load_settings()
    if capacity is not None:
        dataplane = replace(dataplane, conn_table_size=capacity)
    return ControllerCore(config, dataplane, routes=ROUTES, journaling=journaling)


def started(capacity: int = 65536, **settings: Unpack[Overrides]) -> Runner:
    switch = p4model.Switch()
    core = new_core(config(**settings), capacity)
    runner = Runner(core, switch)
    runner.feed(core.bootstrap(0.0, SwitchView(versions(switch), 0, 0)))
    runner.run()
    assert core.started
    return runner


def send(switch: p4model.Switch, sport: int, flags: int = SYN) -> str | None:
    frame = build_frame(
        "00:00:00:00:01:02",
        "00:01:00:00:00:01",
        FlowKey("10.0.1.2", VIP, sport, 80, TCP),
        flags=flags,
    )
    out = switch.process(1, frame)
    if not out:
        return None
    flow = read_flow(out[0][1])
    return f"{flow.dst_ip}:{flow.dst_port}"


def test_cold_start_balances_and_learns_a_connection() -> None:
    runner = started()
    switch = runner.switch
    dip = send(switch, 40000)
    assert dip in {f"{ip}:8080" for ip in DIPS}
    runner.digests()
    assert switch.table_num_entries("conn_table") == 1
    assert runner.core.learner.pending_count(0) == 0
    assert send(switch, 40000, PSH | ACK) == dip
    assert switch.pop_digests() == []  # a conn_table hit raises no new_conn digest


def test_cold_start_gives_every_slot_a_fresh_epoch_then_writes_and_flips() -> None:
    runner = started()
    sets = [op for op in runner.log if isinstance(op, DefaultActionSet)]
    assert len(sets) == 2 and isinstance(sets[0].tag, FreshEpochs)
    assert sets[0].tag.slots == (0, 1, 2, 3)
    assert isinstance(sets[1].tag, FlipVersion)
    assert runner.log.index(sets[0]) < min(
        i for i, op in enumerate(runner.log) if target(op) == "dip_table"
    )
    params = versions(runner.switch).params
    assert params[0] == 0 and sorted(params[1:]) == [1, 2, 3, 4]


def test_rollout_gives_a_fresh_epoch_then_writes_then_flips_last() -> None:
    runner = started()
    before = versions(runner.switch).params
    runner.log.clear()
    runner.tick(5.0, cpu=(0.9, 0.2, 0.2))
    methods = [(type(op), target(op)) for op in runner.log if not isinstance(op, EntryCount)]
    assert methods[0] == methods[-1] == (DefaultActionSet, "version_config")
    writes = [op for op in runner.log if not isinstance(op, EntryCount)]
    fresh, flip = writes[0], writes[-1]
    assert isinstance(fresh, DefaultActionSet) and isinstance(flip, DefaultActionSet)
    # The fresh epoch changes slot 1's epoch only (to one never used), the flip only `active`.
    assert fresh.params == ("0", str(before[1]), "5", str(before[3]), str(before[4]))
    assert flip.params == ("1", *fresh.params[1:])
    assert {m for m in methods[1:-1]} <= {
        (TableInsert, "dip_table"),
        (TableModify, "dip_table"),
        (TableDelete, "dip_table"),
    }
    assert active(runner.switch) == 1
    weights = runner.core.rollouts.table.weights[1]
    assert weights is not None and weights[0]["10.0.2.2:8080"] < weights[0]["10.0.3.2:8080"]


def test_no_rollout_when_weights_do_not_change_or_too_soon() -> None:
    runner = started()
    runner.tick(5.0)
    assert runner.core.rollouts.counters.rollouts == 1  # the initial version only
    runner.tick(5.5, cpu=(0.9, 0.2, 0.2))
    runner.tick(5.6, cpu=(0.2, 0.9, 0.2))
    assert runner.core.rollouts.counters.rollouts == 2


def test_connection_not_yet_installed_holds_its_slot() -> None:
    runner = started()
    runner.tick(5.0, cpu=(0.9, 0.2, 0.2))  # active slot 1 now
    runner.fail = lambda op: target(op) == "conn_table"
    dip = send(runner.switch, 40001)
    runner.digests()
    assert runner.core.learner.pending_count(1) == 1
    loads = [(0.2, 0.9, 0.2), (0.2, 0.2, 0.9), (0.9, 0.2, 0.2), (0.2, 0.9, 0.2)]
    for t, cpu in zip((7.0, 9.0, 11.0, 13.0), loads, strict=True):
        runner.tick(t, cpu)  # slots 2, 3, 0, then slot 1 is due but held
    assert runner.core.rollouts.ledger is not None and runner.core.rollouts.ledger.active == 0
    assert "slot 1: 1 connections not yet installed" in (runner.core.rollouts.backpressure or "")
    assert send(runner.switch, 40001, PSH | ACK) == dip
    runner.fail = lambda op: False
    runner.tick(20.0, cpu=(0.2, 0.2, 0.9))  # installs the connection (retry), then rolls out
    assert runner.core.learner.pending_count(1) == 0
    runner.tick(22.0, cpu=(0.2, 0.2, 0.9))
    assert runner.core.rollouts.ledger.active == 1
    assert send(runner.switch, 40001, PSH | ACK) == dip


def test_failed_dip_write_aborts_and_keeps_the_active_version() -> None:
    runner = started()
    runner.log.clear()
    runner.fail = lambda op: isinstance(op, TableInsert) and op.table == "dip_table"
    runner.tick(5.0, cpu=(0.9, 0.2, 0.2))
    versions = runner.core.rollouts
    assert versions.counters.rollouts_aborted == 1
    assert active(runner.switch) == 0
    assert versions.ledger is not None and versions.ledger.active == 0
    assert not any(
        isinstance(op, DefaultActionSet) and isinstance(op.tag, FlipVersion) for op in runner.log
    )
    runner.fail = lambda op: False
    runner.tick(6.5, cpu=(0.9, 0.2, 0.2))
    assert active(runner.switch) == 1


@pytest.mark.parametrize(("read", "slot"), [(1, 1), (0, 0)])
def test_ambiguous_flip_is_settled_by_reading_version_config(read: int, slot: int) -> None:
    runner = started()
    failed: list[Op] = []

    def flip_fails(op: Op) -> bool:
        if isinstance(op, DefaultActionSet) and isinstance(op.tag, FlipVersion) and not failed:
            failed.append(op)
            if read == 1:  # applied, but the reply was lost
                runner.switch.table_set_default(op.table, op.action, list(op.params))
            return True
        return False

    runner.fail = flip_fails
    runner.tick(5.0, cpu=(0.9, 0.2, 0.2))
    assert runner.core.rollouts.ledger is not None and runner.core.rollouts.ledger.active == slot
    assert runner.core.rollouts.commit is None


def test_full_conn_table_holds_rollouts_back() -> None:
    runner = started(capacity=1)
    send(runner.switch, 40001)
    send(runner.switch, 40002)
    runner.digests()
    assert runner.core.learner.full
    runner.tick(5.0, cpu=(0.9, 0.2, 0.2))
    assert "conn_table full" in (runner.core.rollouts.backpressure or "")
    assert active(runner.switch) == 0


def test_drained_member_gets_no_new_connections_and_leaves_once_idle() -> None:
    runner = started()
    runner.core.drain_member(1.0, "10.0.2.2:8080", remove=True)
    runner.tick(5.0)
    assert all(send(runner.switch, 41000 + n) != "10.0.2.2:8080" for n in range(50))
    runner.digests()
    for t in (8.0, 11.0, 14.0):
        runner.tick(t)
    assert runner.core.take_removed() == ["10.0.2.2:8080"]
    assert [m.dip for m in runner.core.pools[0]] == ["10.0.3.2:8080", "10.0.4.2:8080"]
    assert runner.switch.table_num_entries("dip_reverse") == 2


def test_warm_start_adopts_a_matching_journal_and_holds_reuse() -> None:
    runner = started()
    runner.tick(5.0, cpu=(0.9, 0.2, 0.2))
    journal = runner.core.rollouts.table.journal(None, None, frozenset()).to_json()
    core = new_core(config(restart_hold=10.0))
    fresh = Runner(core, runner.switch)
    dip_entries = runner.switch.table_num_entries("dip_table")
    fresh.feed(core.bootstrap(100.0, SwitchView(versions(runner.switch), 0, dip_entries), journal))
    fresh.run()
    assert core.started and core.rollouts.table.shadow.size() == dip_entries
    fresh.tick(105.0, cpu=(0.2, 0.9, 0.2))
    assert "restart hold" in (core.rollouts.backpressure or "")
    fresh.tick(111.0, cpu=(0.2, 0.9, 0.2))
    assert active(runner.switch) == 2
    assert runner.switch.table_num_entries("dip_table") == core.rollouts.table.shadow.size()


def test_warm_start_without_journal_reclaims_dip_table_after_the_hold() -> None:
    runner = started()
    dip = send(runner.switch, 40001)
    runner.digests()
    core = new_core(config(restart_hold=10.0))
    fresh = Runner(core, runner.switch)
    fresh.feed(
        core.bootstrap(
            100.0,
            SwitchView(versions(runner.switch), 1, runner.switch.table_num_entries("dip_table")),
        )
    )
    fresh.run()
    fresh.tick(105.0)
    assert not any(isinstance(op, TableClear) and op.table == "dip_table" for op in fresh.log)
    fresh.tick(111.0)
    assert any(isinstance(op, TableClear) and op.table == "dip_table" for op in fresh.log)
    assert active(runner.switch) == 1
    assert runner.switch.table_num_entries("dip_table") == core.rollouts.table.shadow.size()
    assert runner.switch.table_num_entries("conn_table") == 1  # connections are never cleared
    assert send(runner.switch, 40001, PSH | ACK) == dip


def test_autoscaling_activates_a_standby_member_under_load() -> None:
    dips = (
        DipConfig(DIPS[0], 8080, 1),
        DipConfig(DIPS[1], 8080, 1),
        DipConfig(DIPS[2], 8080, 1, "standby"),
    )
    settings = ControllerSettings(
        policy="cpu", min_rollout_interval=1.0, quiet_period=1.0, min_weight_change=0.0
    )
    scaled = Config(
        settings,
        (VipConfig("web", VIP, 80, "tcp", dips),),
        autoscale=AutoscaleParams(max_active=3),
    )
    switch = p4model.Switch()
    core = new_core(scaled)
    runner = Runner(core, switch)
    runner.feed(core.bootstrap(0.0, SwitchView(versions(switch), 0, 0)))
    runner.run()
    weights = core.rollouts.table.weights[0]
    assert weights is not None and weights[0][f"{DIPS[2]}:8080"] == 0
    runner.tick(20.0, cpu=(0.95, 0.95, 0.0))
    assert core.pools[0].member(f"{DIPS[2]}:8080").state is MemberState.ACTIVE
    runner.tick(22.0, cpu=(0.95, 0.95, 0.0))
    weights = core.rollouts.table.weights[core.rollouts.ledger.active]  # type: ignore[union-attr]
    assert weights is not None and weights[0][f"{DIPS[2]}:8080"] > 0


def test_a_busy_version_is_refreshed_even_with_unchanged_weights() -> None:
    runner = started(max_version_connections=20)
    runner.tick(5.0)
    assert runner.core.rollouts.counters.rollouts == 1
    for n in range(25):
        send(runner.switch, 42000 + n)
    runner.digests()
    runner.tick(6.0)
    assert runner.core.rollouts.counters.rollouts == 2
    assert active(runner.switch) == 1
    runner.tick(7.5)
    assert runner.core.rollouts.counters.rollouts == 2  # the new version has taken nothing yet


def test_warm_start_with_an_empty_dip_table_programs_it_without_the_hold() -> None:
    runner = started()
    send(runner.switch, 40001)
    runner.digests()
    runner.switch.table_clear("dip_table")
    core = new_core(config(restart_hold=30.0))
    fresh = Runner(core, runner.switch)
    fresh.feed(core.bootstrap(100.0, SwitchView(versions(runner.switch), 1, 0)))
    fresh.run()
    fresh.tick(101.5)
    assert runner.switch.table_num_entries("dip_table") == core.rollouts.table.shadow.size() > 0
    assert send(runner.switch, 40002) is not None


def test_clean_stop_journal_shortens_the_hold_and_carries_unsettled_connections() -> None:
    runner = started()
    runner.fail = lambda op: target(op) == "conn_table"
    dip = send(runner.switch, 40001)
    runner.digests()
    journal = runner.core.journal_at_stop(10.0)
    assert journal is not None and len(journal.unsettled) == 1
    core = new_core(config(restart_hold=30.0))
    fresh = Runner(core, runner.switch)
    entries = runner.switch.table_num_entries("dip_table")
    fresh.feed(
        core.bootstrap(10.5, SwitchView(versions(runner.switch), 0, entries), journal.to_json())
    )
    fresh.run()
    assert runner.switch.table_num_entries("conn_table") == 1  # re-learned from the journal
    assert send(runner.switch, 40001, PSH | ACK) == dip
    fresh.tick(11.0, cpu=(0.9, 0.2, 0.2))
    assert "restart hold" in (core.rollouts.backpressure or "")
    fresh.tick(13.0, cpu=(0.9, 0.2, 0.2))  # hold = quiet 1 s + 2 x downtime 0.5 s
    assert active(runner.switch) == 1


@pytest.mark.parametrize("journal", [True, False])
def test_a_restarted_controller_never_reuses_an_epoch(journal: bool) -> None:
    runner = started()
    for t, cpu in enumerate([(0.9, 0.2, 0.2), (0.2, 0.9, 0.2), (0.2, 0.2, 0.9)]):
        runner.tick(5.0 + 2 * t, cpu)
    issued = runner.core.rollouts.table.journal(None, None, frozenset())
    assert issued.last_epoch == 4 + 3  # four at the cold start, one per rollout
    # With or without the journal, the new controller starts above every epoch it can see.
    core = new_core(config(restart_hold=1.0))
    fresh = Runner(core, runner.switch)
    document = issued.to_json() if journal else None
    entries = runner.switch.table_num_entries("dip_table")
    fresh.feed(core.bootstrap(50.0, SwitchView(versions(runner.switch), 0, entries), document))
    fresh.run()
    fresh.tick(52.0, cpu=(0.9, 0.2, 0.2))
    fresh.tick(54.0, cpu=(0.2, 0.9, 0.2))
    epochs = [
        int(e)
        for op in runner.log + fresh.log
        if isinstance(op, DefaultActionSet) and isinstance(op.tag, FreshEpochs)
        for slot, e in enumerate(op.params[1:])
        if slot in op.tag.slots
    ]
    assert len(epochs) == 4 + 3 + 2 and len(set(epochs)) == len(epochs)


CPU_ROUNDS = [(0.9, 0.2, 0.2), (0.2, 0.9, 0.2), (0.2, 0.2, 0.9), (0.9, 0.5, 0.2), (0.5, 0.2, 0.9)]


def test_killed_at_a_net_zero_point_the_next_controller_adopts_what_the_switch_holds() -> None:
    """The journal's intent names slot 1; the switch applied as many adds as deletes of its
    rewrite when the controller died, so the entry count matches the journal but the content
    does not. The next controller reads dip_table back and rolls out with no abort."""
    switch = p4model.Switch()
    core = new_core(config(), journaling=True)
    runner = Runner(core, switch)
    runner.feed(core.bootstrap(0.0, SwitchView(versions(switch), 0, 0)))
    runner.run()
    for n, cpu in enumerate(CPU_ROUNDS[:4]):  # every slot holds a version now; 0 is active
        runner.tick(5.0 + 2 * n, cpu)
    assert active(switch) == 0
    runner.now = 20.0
    loads = {f"{ip}:8080": load(ip, c, 20.0) for ip, c in zip(DIPS, CPU_ROUNDS[4], strict=True)}
    first = core.tick(20.0, loads)
    writes: list[Op] = []
    for op in first:
        for follow in core.on_outcome(20.0, runner.outcome(op)):
            writes.append(follow)
    deletes = [op for op in writes if isinstance(op, TableDelete) and op.table == "dip_table"]
    adds = [op for op in writes if isinstance(op, TableInsert) and op.table == "dip_table"]
    k = min(len(deletes), len(adds))
    assert k > 0
    for op in deletes[:k] + adds[:k]:  # the switch got this far; then the controller died
        assert runner.outcome(op).ok
    journal = runner.journals[-1]
    assert journal.pending == 1 and journal.shadow.size() == switch.table_num_entries("dip_table")
    fresh_core = new_core(config(restart_hold=1.0), journaling=True)
    fresh = Runner(fresh_core, switch)
    entries = switch.table_num_entries("dip_table")
    view = SwitchView(versions(switch), 0, entries)
    fresh.feed(fresh_core.bootstrap(21.0, view, journal.to_json()))
    fresh.run()
    assert fresh_core.started
    assert fresh_core.rollouts.table.shadow.size() == entries
    for n, cpu in enumerate(CPU_ROUNDS * 2):
        fresh.tick(23.0 + 2 * n, cpu)
    counters = fresh_core.view().rollouts
    assert counters.rollouts >= 8 and counters.rollouts_aborted == 0
    assert switch.table_num_entries("dip_table") == fresh_core.rollouts.table.shadow.size()


def test_a_write_that_contradicts_the_shadow_resynchronises_it_from_the_switch() -> None:
    runner = started()
    for n, cpu in enumerate(CPU_ROUNDS[:4]):  # every slot holds a version; slot 1 is next
        runner.tick(5.0 + 2 * n, cpu)
    shadow = runner.core.rollouts.table.shadow
    for entry in list(shadow.entries(1).values()):  # someone else empties slot 1
        runner.switch.table_delete("dip_table", entry.handle)
    runner.tick(13.0, CPU_ROUNDS[4])
    counters = runner.core.view().rollouts
    assert (counters.rollouts_aborted, counters.resyncs) == (1, 1)
    assert runner.switch.table_num_entries("dip_table") == shadow.size()
    for n, cpu in enumerate(CPU_ROUNDS):
        runner.tick(15.0 + 2 * n, cpu)
    counters = runner.core.view().rollouts
    assert counters.rollouts_aborted == 1 and counters.rollouts >= 9
