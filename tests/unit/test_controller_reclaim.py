"""Reclaiming a full dip_table: the room check, which slots, fresh-epoch-before-delete, and the core
driving it against the model (never the active slot, never a slot with pending connections or
within its quiet period, rollouts resuming, a table too small failing fast)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace

import pytest
from core_runner import CoreRunner
from hypothesis import given
from hypothesis import strategies as st

import p4model
from controller.config import Config, ControllerSettings, DipConfig, VipConfig
from controller.core.controller_core import ControllerCore, SwitchView
from controller.core.epochs import EpochCounter, FlipVersion, FreshEpochs, VersionConfig
from controller.core.loadbook import DipLoad
from controller.core.ops import (
    DefaultActionSet,
    DefaultEntry,
    Op,
    Outcome,
    TableDelete,
    TableInsert,
)
from controller.core.reclaim import Reclaim, ReclaimPlan, RoomCheck, choose_slots
from controller.core.shadow import BucketKey, DipTarget, DipWrite, WriteKind
from controller.routing import Route
from topo.frames import ACK, FIN, PSH, SYN, TCP, FlowKey, build_frame, read_flow

VIP = "10.0.0.100"
DIPS = ("10.0.2.2", "10.0.3.2", "10.0.4.2")
ROUTES = [Route("10.0.1.0/24", 1, "00:01:00:00:00:01", "00:00:00:00:01:02")] + [
    Route(f"{ip}/32", 2 + i, "00:01:00:00:00:01", "00:00:00:00:02:02") for i, ip in enumerate(DIPS)
]
LOADS = [(0.9, 0.2, 0.2), (0.2, 0.9, 0.3), (0.3, 0.2, 0.9), (0.7, 0.6, 0.1), (0.1, 0.5, 0.8)]


# -- pure: the room check and the choice of slots


@pytest.mark.parametrize(
    ("check", "after", "shortfall", "too_small"),
    [
        pytest.param(RoomCheck(1, 10, 20, 0, 10, 40), 30, 0, False, id="fits"),
        pytest.param(RoomCheck(1, 10, 38, 0, 10, 40), 48, 8, False, id="short"),
        pytest.param(RoomCheck(1, 10, 38, 8, 10, 40), 40, 0, False, id="diff-replaces-own"),
        pytest.param(RoomCheck(1, 31, 10, 0, 10, 40), 41, 1, True, id="never-fits"),
        pytest.param(RoomCheck(0, 40, 0, 0, 0, 40), 40, 0, False, id="initial-fits"),
        pytest.param(RoomCheck(0, 41, 0, 0, 0, 40), 41, 1, True, id="initial-too-big"),
    ],
)
def test_room_check(check: RoomCheck, after: int, shortfall: int, too_small: bool) -> None:
    assert (check.after, check.shortfall, check.too_small) == (after, shortfall, too_small)
    assert f"needs {check.need} entries" in check.describe()
    assert f"of {check.size}" in check.describe()


@pytest.mark.parametrize(
    ("shortfall", "candidates", "chosen"),
    [
        pytest.param(0, [(2, 9), (3, 8)], (), id="nothing-short"),
        pytest.param(5, [(2, 9), (3, 8)], (2,), id="oldest-first"),
        pytest.param(12, [(2, 9), (3, 8)], (2, 3), id="fewest-that-cover"),
        pytest.param(5, [(2, 0), (3, 8)], (3,), id="empty-slot-skipped"),
        pytest.param(20, [(2, 9), (3, 8)], (), id="cannot-cover-wait"),
        pytest.param(3, [], (), id="no-candidate"),
    ],
)
def test_choose_slots(
    shortfall: int, candidates: list[tuple[int, int]], chosen: tuple[int, ...]
) -> None:
    assert choose_slots(shortfall, candidates) == chosen


# -- pure: the reclaim protocol


def deletes(slot: int, n: int) -> tuple[DipWrite, ...]:
    target = DipTarget("10.0.0.1", 80)
    return tuple(
        DipWrite(WriteKind.DELETE, slot, BucketKey(0, i, 16), target, 100 * slot + i)
        for i in range(n)
    )


def plan_for(deleting: dict[int, tuple[DipWrite, ...]]) -> ReclaimPlan:
    fresh = EpochCounter(VersionConfig(0, (1, 2, 3, 4))).fresh(list(deleting))
    return ReclaimPlan(fresh, deleting, decided_at=1.0)


def test_reclaim_gives_fresh_epochs_in_one_write_and_deletes_only_after_it() -> None:
    plan = plan_for({2: deletes(2, 2), 3: deletes(3, 3)})
    assert plan.fresh.config == VersionConfig(0, (1, 2, 5, 6)) and plan.fresh.slots == (2, 3)
    reclaim = Reclaim(plan)
    assert reclaim.begin(1.0) == [plan.fresh]
    released = reclaim.step_done(1.1, plan.fresh)
    assert released == [*deletes(2, 2), *deletes(3, 3)]
    for write in released[:-1]:
        assert reclaim.outcome is None
        assert reclaim.step_done(1.3, write) == []
    assert reclaim.step_failed(1.4, released[-1], "gone") == []
    outcome = reclaim.outcome
    assert outcome is not None and not outcome.complete
    assert outcome.freshened == (2, 3) and outcome.deleted == 4 and outcome.plan.entries == 5


def test_failed_epoch_write_deletes_nothing() -> None:
    plan = plan_for({2: deletes(2, 2)})
    reclaim = Reclaim(plan)
    reclaim.begin(1.0)
    assert reclaim.step_failed(1.1, plan.fresh, "switch down") == []
    outcome = reclaim.outcome
    assert outcome is not None and outcome.deleted == 0 and outcome.freshened == ()
    assert "slots (2,)" in outcome.failures[0]


@given(
    st.dictionaries(st.integers(0, 3), st.integers(0, 4), min_size=1, max_size=3),
    st.lists(st.tuples(st.integers(0, 50), st.booleans()), min_size=40, max_size=40),
)
def test_reclaim_never_deletes_before_or_without_its_slots_fresh_epoch(
    sizes: dict[int, int], draws: list[tuple[int, bool]]
) -> None:
    reclaim = Reclaim(plan_for({s: deletes(s, n) for s, n in sizes.items()}))
    outstanding: list[FreshEpochs | DipWrite] = list(reclaim.begin(0.0))
    reset_ok: set[int] = set()
    deleted = 0
    pool = deque(draws)
    while outstanding:
        pick, ok = pool.popleft() if pool else (0, True)
        step = outstanding.pop(pick % len(outstanding))
        if isinstance(step, DipWrite):
            assert step.slot in reset_ok  # released only by the acknowledged epoch write
            deleted += ok
        elif ok:
            reset_ok.update(step.slots)
        outstanding += reclaim.step_done(1.0, step) if ok else reclaim.step_failed(1.0, step, "x")
    outcome = reclaim.outcome
    assert outcome is not None
    assert set(outcome.freshened) == reset_ok and outcome.deleted == deleted
    assert outcome.complete == (deleted == sum(sizes.values()) and reset_ok == set(sizes))


# -- the core against the model, with an invariant checker on every call


def config(**settings: float) -> Config:
    values = {"min_rollout_interval": 1.0, "quiet_period": 1.0, "min_weight_change": 0.0}
    dips = tuple(DipConfig(ip, 8080, 1) for ip in DIPS)
    return Config(
        ControllerSettings(policy="cpu", **{**values, **settings}),  # type: ignore[arg-type]
        (VipConfig("web", VIP, 80, "tcp", dips),),
    )


class Checked(CoreRunner):
    """Runs the core's operations on a model with a small dip_table, checking each before it
    runs: a fresh epoch (after start-up) only for a slot that is inactive, past its quiet period
    and without pending connections; a dip_table delete only of an inactive slot that got a fresh
    epoch since it was last active."""

    def __init__(self, size: int, believed: int | None = None, **settings: float) -> None:
        switch = p4model.Switch(replace(p4model.load_settings(), dip_table_size=size))
        self.config = config(**settings)
        dataplane = replace(p4model.load_settings(), dip_table_size=believed or size)
        super().__init__(ControllerCore(self.config, dataplane, routes=ROUTES), switch)
        self.check = self.check_op
        self.done = self.note_done
        self.booted = False
        self.active = 0
        self.left: dict[int, float] = {}  # slot -> when it stopped being active
        self.reset_since_active: set[int] = set()
        self.slot_of: dict[int, int] = {}  # dip_table handle -> slot
        self.resets: list[tuple[float, int]] = []
        self.deleted: list[int] = []  # slots of deleted dip_table entries
        versions = DefaultEntry.read(*switch.table_get_default("version_config"))
        self.queue.extend(self.core.bootstrap(0.0, SwitchView(versions, 0, 0)))
        self.run()
        self.booted = True

    def check_op(self, op: Op) -> None:
        if not self.booted:
            return
        if isinstance(op, DefaultActionSet) and isinstance(op.tag, FreshEpochs):
            for slot in op.tag.slots:
                assert slot != self.active
                assert self.now - self.left.get(slot, -1e9) > self.config.controller.quiet_period
                assert self.core.learner.pending_count(slot) == 0
        if isinstance(op, TableDelete) and op.table == "dip_table":
            slot = self.slot_of[op.handle]
            assert slot != self.active and slot in self.reset_since_active

    def note_done(self, outcome: Outcome) -> None:
        op = outcome.op
        tag = op.tag if isinstance(op, DefaultActionSet) else None
        if isinstance(tag, FreshEpochs) and self.booted:
            self.reset_since_active.update(tag.slots)
            self.resets.extend((self.now, slot) for slot in tag.slots)
        elif isinstance(tag, FlipVersion):
            if tag.slot != self.active:
                self.left[self.active] = self.now
            self.active = tag.slot
            self.reset_since_active.discard(self.active)
        elif isinstance(op, TableInsert) and op.table == "dip_table":
            assert outcome.handle is not None
            self.slot_of[outcome.handle] = int(op.keys[0])
        elif isinstance(op, TableDelete) and op.table == "dip_table":
            self.deleted.append(self.slot_of.pop(op.handle))

    def tick(self, now: float, cpu: tuple[float, ...]) -> None:
        self.now = now
        loads = {
            f"{ip}:8080": DipLoad(f"{ip}:8080", "up", c, 0, None, now, 0.0, 1, "up")
            for ip, c in zip(DIPS, cpu, strict=True)
        }
        self.queue.extend(self.core.tick(now, loads))
        self.run()
        for digest in self.switch.pop_digests():
            self.queue.extend(self.core.on_digest(now, digest))
        self.run()

    def send(self, sport: int, flags: int = SYN) -> str | None:
        flow = FlowKey("10.0.1.2", VIP, sport, 80, TCP)
        out = self.switch.process(
            1, build_frame("00:00:00:00:01:02", "00:01:00:00:00:01", flow, flags=flags)
        )
        if not out:
            return None
        seen = read_flow(out[0][1])
        return f"{seen.dst_ip}:{seen.dst_port}"

    def faults(self, what: str) -> list[str]:
        records = self.core.take_records()
        return [str(r.fields["detail"]) for r in records if r.fields.get("what") == what]


def run_phases(checked: Checked, phases: int, start: float = 2.0, step: float = 0.5) -> None:
    """Ticks every `step` s with loads that change every 1.5 s, a new connection each tick whose
    every later packet must reach the same DIP."""
    live: dict[int, str | None] = {}
    t = start
    for n in range(int(phases * 1.5 / step)):
        checked.tick(t, LOADS[int(t / 1.5) % len(LOADS)])
        live[50000 + n] = checked.send(50000 + n)
        assert all(checked.send(p, PSH) == dip for p, dip in live.items())
        t += step


def test_a_table_for_two_versions_keeps_rolling_out_by_reclaiming_idle_slots() -> None:
    checked = Checked(24)
    run_phases(checked, 12)
    counters = checked.core.rollouts.counters
    assert counters.rollouts >= 10  # + the initial version
    assert counters.reclaims > 0 and counters.entries_reclaimed > 0
    assert counters.rollouts_aborted == counters.write_failures == 0
    shadow = checked.core.rollouts.table.shadow
    assert checked.switch.table_num_entries("dip_table") == shadow.size() <= 24
    assert checked.deleted  # the checker saw reclaim deletes, each after its slot's reset
    assert any("fresh epochs" in d for d in checked.faults("dip_table_reclaim"))


def test_slot_with_a_pending_connection_is_never_reclaimed() -> None:
    checked = Checked(24)
    checked.tick(2.0, LOADS[0])  # slot 1 active
    checked.fail = lambda op: isinstance(op, TableInsert) and op.table == "conn_table"
    dip = checked.send(40001)
    checked.tick(2.1, LOADS[0])
    assert checked.core.learner.pending_count(1) == 1
    mark = len(checked.resets)
    for n, t in enumerate((3.5, 4.0, 5.0, 5.5, 6.5, 7.0, 8.0, 8.5)):
        checked.tick(t, LOADS[1 + n // 2 % 4])  # the checker refuses a fresh epoch for slot 1
        assert checked.send(40001, PSH) == dip  # still on slot 1's entries, via bloom_1
    assert 1 not in {slot for _, slot in checked.resets[mark:]}
    assert 1 not in checked.deleted
    assert "idle slots" in (checked.core.rollouts.backpressure or "")
    checked.fail = lambda op: False
    run_phases(checked, 6, start=20.0)
    assert checked.send(40001, PSH) == dip
    assert checked.core.rollouts.counters.reclaims > 0


def _ended_under_slot_1_then_idle(
    checked: Checked, until: float, failing: Callable[[Op], bool] | None = None
) -> None:
    """Connection 41001 starts and ends under slot 1; slot 2 is active from 3.5 s on (from then
    on the writes `failing` picks fail), and the loads stay put (no further rollout) until
    `until`."""
    checked.tick(2.0, LOADS[0])
    ledger = checked.core.rollouts.table.ledger
    assert ledger is not None and ledger.active == 1
    checked.send(41001)
    checked.tick(2.1, LOADS[0])  # installed under slot 1
    checked.send(41001, FIN | ACK)  # ends: its conn_table entry goes after the linger
    checked.tick(3.5, LOADS[1])  # rolls out to slot 2: slot 1 is idle from now on
    if failing is not None:
        checked.fail = failing
    t = 4.0
    while t <= until:
        checked.tick(t, LOADS[1])
        t += 0.5
    assert ledger.active == 2 and not checked.core.learner.pending_count(1)


def _reused_version(checked: Checked) -> int:
    """The version a new connection reusing 41001's 5-tuple starts under (it stays there)."""
    checked.send(41001)
    (digest,) = checked.switch.pop_digests()
    assert checked.send(41001, PSH | ACK) == f"{digest.dip_ip}:{digest.dip_port}"
    checked.queue.extend(checked.core.on_digest(checked.now, digest))
    checked.run()
    checked.send(41001, FIN | ACK)
    return digest.version


def test_an_idle_slot_is_retired_so_a_reused_five_tuple_follows_the_active_version() -> None:
    # A client port freed by a reset has no TIME_WAIT, so the next connection may reuse the
    # 5-tuple of one that ended. While the slot it started under keeps its epoch, its Bloom
    # filter still holds the key and the new connection follows that slot's old version (in
    # the Mininet failure test: the weights from before a server died, so the killed server).
    checked = Checked(1024, teardown_linger=0.5)
    _ended_under_slot_1_then_idle(checked, 5.5)
    assert checked.core.rollouts.counters.retires == 2  # slots 0 and 1, past their quiet periods
    assert _reused_version(checked) == 2


def test_a_failed_retire_is_recorded_and_tried_again() -> None:
    checked = Checked(1024, teardown_linger=0.5)
    _ended_under_slot_1_then_idle(
        checked,
        5.5,
        failing=lambda op: isinstance(op, DefaultActionSet) and isinstance(op.tag, FreshEpochs),
    )
    assert checked.core.rollouts.counters.retires == 0
    assert checked.faults("slot_retire")
    assert _reused_version(checked) == 1  # slot 1 still holds the key
    checked.fail = lambda op: False
    for t in (7.0, 8.0):
        checked.tick(t, LOADS[1])
    assert checked.core.rollouts.counters.retires == 2
    assert _reused_version(checked) == 2


def test_slot_within_its_quiet_period_is_never_reclaimed() -> None:
    checked = Checked(24, quiet_period=2.5)  # longer than the rollout interval
    run_phases(checked, 12)  # the checker refuses a fresh epoch before the quiet period is over
    counters = checked.core.rollouts.counters
    assert counters.reclaims > 0 and counters.rollouts >= 4
    assert counters.rollouts_aborted == 0


def test_refused_add_turns_on_reclaiming_and_rollouts_resume() -> None:
    checked = Checked(24, believed=16384)  # the controller thinks the table is the default size
    run_phases(checked, 14)
    counters = checked.core.rollouts.counters
    assert counters.rollouts_aborted == 1  # the refusal teaches the size: no second one
    assert counters.reclaims > 0 and counters.rollouts >= 8
    assert checked.core.rollouts.room.size <= 24
    (detail,) = checked.faults("dip_table_full")
    assert "size believed 16384" in detail


def test_a_version_that_can_never_fit_fails_fast_and_keeps_the_active_one() -> None:
    checked = Checked(14)  # the initial version (9 entries) fits; none fits next to it
    dip = checked.send(40001)
    checked.tick(2.0, LOADS[0])
    checked.tick(3.5, LOADS[1])
    versions = checked.core.rollouts
    assert versions.counters.table_too_small == 2 and versions.counters.rollouts == 1
    assert versions.counters.rollouts_aborted == versions.counters.write_failures == 0
    assert checked.switch.table_get_default("version_config")[1][0] == 0
    assert "dip_table too small" in (versions.backpressure or "")
    (detail,) = checked.faults("dip_table_too_small")  # recorded once, with the numbers
    assert "of 14" in detail and "9 in the active version" in detail
    assert checked.send(40001, PSH) == dip


def test_an_initial_version_that_cannot_fit_fails_start_up_with_the_numbers() -> None:
    switch = p4model.Switch(replace(p4model.load_settings(), dip_table_size=4))
    core = ControllerCore(config(), switch.settings, routes=ROUTES)
    runner = CoreRunner(core, switch)
    versions = DefaultEntry.read(*switch.table_get_default("version_config"))
    runner.feed(core.bootstrap(0.0, SwitchView(versions, 0, 0)))
    runner.run()
    assert not core.started and core.boot_settled
    assert core.boot_failure is not None and "of 4" in core.boot_failure
    assert switch.table_num_entries("dip_table") == 0
