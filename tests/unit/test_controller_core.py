"""The pure core driven against the in-process model: every call it returns is executed on a
p4model.Switch by a tiny synchronous runner, so tests assert where packets go."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import pytest

import p4model
from controller.config import AutoscaleConfig, Config, ControllerSettings, DipConfig, VipConfig
from controller.core.controller_core import ControllerCore, RouteEntry, SwitchCall, SwitchView
from controller.core.pools import MemberState
from controller.core.weighting import MemberLoad
from topo.frames import ACK, PSH, SYN, TCP, FlowKey, build_frame, read_flow

VIP = "10.0.0.100"
DIPS = ("10.0.2.2", "10.0.3.2", "10.0.4.2")
ROUTES = [RouteEntry(["10.0.1.0/24"], ["1", "00:01:00:00:00:01", "00:00:00:00:01:02"])] + [
    RouteEntry([f"{ip}/32"], [str(2 + i), "00:01:00:00:00:01", "00:00:00:00:02:02"])
    for i, ip in enumerate(DIPS)
]


def config(**settings: float) -> Config:
    dips = tuple(DipConfig(ip, 8080, 1) for ip in DIPS)
    values = {
        "min_rollout_interval": 1.0,
        "quiet_period": 1.0,
        "min_weight_change": 0.0,
        **settings,
    }
    return Config(
        ControllerSettings(policy="cpu", **values), (VipConfig("web", VIP, 80, "tcp", dips),)
    )  # type: ignore[arg-type]


class Runner:
    """Executes the core's calls on a model switch, in order, when the test says so."""

    def __init__(self, core: ControllerCore, switch: p4model.Switch) -> None:
        self.core, self.switch = core, switch
        self.queue: deque[SwitchCall] = deque()
        self.log: list[SwitchCall] = []
        self.fail: Callable[[SwitchCall], bool] = lambda call: False
        self.now = 0.0

    def feed(self, calls: list[SwitchCall]) -> None:
        self.queue.extend(calls)

    def run(self) -> None:
        while self.queue:
            call = self.queue.popleft()
            self.log.append(call)
            if self.fail(call):
                self.feed(
                    self.core.on_result(self.now, call.token, False, None, "injected failure")
                )
                continue
            try:
                value = getattr(self.switch, call.method)(*call.args)
            except p4model.SwitchError as exc:
                self.feed(self.core.on_result(self.now, call.token, False, None, str(exc)))
            else:
                self.feed(self.core.on_result(self.now, call.token, True, value, ""))

    def tick(self, now: float, cpu: tuple[float, ...] = (0.5, 0.5, 0.5)) -> None:
        self.now = now
        loads = {
            f"{ip}:8080": MemberLoad("up", c, 0, None, 0.0, True)
            for ip, c in zip(DIPS, cpu, strict=True)
        }
        self.feed(self.core.tick(now, loads))
        self.run()

    def digests(self) -> None:
        for digest in self.switch.pop_digests():
            self.feed(self.core.on_digest(self.now, digest))
        self.run()


def started(capacity: int = 65536, **settings: float) -> Runner:
    switch = p4model.Switch()
    core = ControllerCore(config(**settings), routes=ROUTES, conn_capacity=capacity)
    runner = Runner(core, switch)
    runner.feed(core.bootstrap(0.0, SwitchView(0, 0, 0)))
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


def test_rollout_resets_then_writes_then_flips_last() -> None:
    runner = started()
    runner.log.clear()
    runner.tick(5.0, cpu=(0.9, 0.2, 0.2))
    methods = [(c.method, c.args[0]) for c in runner.log]
    assert methods[0] == ("register_reset", "bloom_1")
    assert methods[-1] == ("register_write", "active_version")
    assert {m for m in methods[1:-1]} <= {
        ("table_add", "dip_table"),
        ("table_modify", "dip_table"),
        ("table_delete", "dip_table"),
    }
    assert runner.switch.register_read("active_version", 0) == 1
    weights = runner.core.versions.slot_weights[1]
    assert weights is not None and weights[0]["10.0.2.2:8080"] < weights[0]["10.0.3.2:8080"]


def test_no_rollout_when_weights_do_not_change_or_too_soon() -> None:
    runner = started()
    runner.tick(5.0)
    assert runner.core.versions.counters.rollouts == 1  # the initial version only
    runner.tick(5.5, cpu=(0.9, 0.2, 0.2))
    runner.tick(5.6, cpu=(0.2, 0.9, 0.2))
    assert runner.core.versions.counters.rollouts == 2


def test_connection_not_yet_installed_holds_its_slot() -> None:
    runner = started()
    runner.tick(5.0, cpu=(0.9, 0.2, 0.2))  # active slot 1 now
    runner.fail = lambda call: call.args[0] == "conn_table"
    dip = send(runner.switch, 40001)
    runner.digests()
    assert runner.core.learner.pending_count(1) == 1
    loads = [(0.2, 0.9, 0.2), (0.2, 0.2, 0.9), (0.9, 0.2, 0.2), (0.2, 0.9, 0.2)]
    for t, cpu in zip((7.0, 9.0, 11.0, 13.0), loads, strict=True):
        runner.tick(t, cpu)  # slots 2, 3, 0, then slot 1 is due but held
    assert runner.core.versions.ledger is not None and runner.core.versions.ledger.active == 0
    assert "slot 1: 1 connections not yet installed" in (runner.core.versions.backpressure or "")
    assert send(runner.switch, 40001, PSH | ACK) == dip
    runner.fail = lambda call: False
    runner.tick(20.0, cpu=(0.2, 0.2, 0.9))  # installs the connection (retry), then rolls out
    assert runner.core.learner.pending_count(1) == 0
    runner.tick(22.0, cpu=(0.2, 0.2, 0.9))
    assert runner.core.versions.ledger.active == 1
    assert send(runner.switch, 40001, PSH | ACK) == dip


def test_failed_dip_write_aborts_and_keeps_the_active_version() -> None:
    runner = started()
    runner.fail = lambda call: call.method == "table_add" and call.args[0] == "dip_table"
    runner.tick(5.0, cpu=(0.9, 0.2, 0.2))
    versions = runner.core.versions
    assert versions.counters.rollouts_aborted == 1
    assert runner.switch.register_read("active_version", 0) == 0
    assert versions.ledger is not None and versions.ledger.active == 0
    assert not any(c.method == "register_write" for c in runner.log[-5:])
    runner.fail = lambda call: False
    runner.tick(6.5, cpu=(0.9, 0.2, 0.2))
    assert runner.switch.register_read("active_version", 0) == 1


@pytest.mark.parametrize(("read", "active"), [(1, 1), (0, 0)])
def test_ambiguous_flip_is_settled_by_reading_the_register(read: int, active: int) -> None:
    runner = started()
    failed: list[SwitchCall] = []

    def flip_fails(call: SwitchCall) -> bool:
        if call.method == "register_write" and not failed:
            failed.append(call)
            if read == 1:
                runner.switch.register_write(
                    "active_version", 0, 1
                )  # applied, but the reply was lost
            return True
        return False

    runner.fail = flip_fails
    runner.tick(5.0, cpu=(0.9, 0.2, 0.2))
    assert runner.core.versions.ledger is not None and runner.core.versions.ledger.active == active
    assert runner.core.versions.commit is None


def test_full_conn_table_holds_rollouts_back() -> None:
    runner = started(capacity=1)
    send(runner.switch, 40001)
    send(runner.switch, 40002)
    runner.digests()
    assert runner.core.learner.full
    runner.tick(5.0, cpu=(0.9, 0.2, 0.2))
    assert "conn_table full" in (runner.core.versions.backpressure or "")
    assert runner.switch.register_read("active_version", 0) == 0


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
    journal = runner.core.versions.journal(pending=None)
    core = ControllerCore(config(restart_hold=10.0), routes=ROUTES)
    fresh = Runner(core, runner.switch)
    dip_entries = runner.switch.table_num_entries("dip_table")
    fresh.feed(core.bootstrap(100.0, SwitchView(1, 0, dip_entries), journal))
    fresh.run()
    assert core.started and core.versions.shadow.size() == dip_entries
    fresh.tick(105.0, cpu=(0.2, 0.9, 0.2))
    assert "restart hold" in (core.versions.backpressure or "")
    fresh.tick(111.0, cpu=(0.2, 0.9, 0.2))
    assert runner.switch.register_read("active_version", 0) == 2
    assert runner.switch.table_num_entries("dip_table") == core.versions.shadow.size()


def test_warm_start_without_journal_reclaims_dip_table_after_the_hold() -> None:
    runner = started()
    dip = send(runner.switch, 40001)
    runner.digests()
    core = ControllerCore(config(restart_hold=10.0), routes=ROUTES)
    fresh = Runner(core, runner.switch)
    fresh.feed(
        core.bootstrap(100.0, SwitchView(0, 1, runner.switch.table_num_entries("dip_table")))
    )
    fresh.run()
    fresh.tick(105.0)
    assert not any(c.method == "table_clear" for c in fresh.log)
    fresh.tick(111.0)
    assert any(c.method == "table_clear" and c.args == ("dip_table",) for c in fresh.log)
    assert runner.switch.register_read("active_version", 0) == 1
    assert runner.switch.table_num_entries("dip_table") == core.versions.shadow.size()
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
        autoscale=AutoscaleConfig(enabled=True, max_active=3),
    )
    switch = p4model.Switch()
    core = ControllerCore(scaled, routes=ROUTES)
    runner = Runner(core, switch)
    runner.feed(core.bootstrap(0.0, SwitchView(0, 0, 0)))
    runner.run()
    weights = core.versions.slot_weights[0]
    assert weights is not None and weights[0][f"{DIPS[2]}:8080"] == 0
    runner.tick(20.0, cpu=(0.95, 0.95, 0.0))
    assert core.pools[0].member(f"{DIPS[2]}:8080").state is MemberState.ACTIVE
    runner.tick(22.0, cpu=(0.95, 0.95, 0.0))
    weights = core.versions.slot_weights[core.versions.ledger.active]  # type: ignore[union-attr]
    assert weights is not None and weights[0][f"{DIPS[2]}:8080"] > 0


def test_a_busy_version_is_refreshed_even_with_unchanged_weights() -> None:
    runner = started(max_version_connections=20)
    runner.tick(5.0)
    assert runner.core.versions.counters.rollouts == 1
    for n in range(25):
        send(runner.switch, 42000 + n)
    runner.digests()
    runner.tick(6.0)
    assert runner.core.versions.counters.rollouts == 2
    assert runner.switch.register_read("active_version", 0) == 1
    runner.tick(7.5)
    assert runner.core.versions.counters.rollouts == 2  # the new version has taken nothing yet


def test_warm_start_with_an_empty_dip_table_programs_it_without_the_hold() -> None:
    runner = started()
    send(runner.switch, 40001)
    runner.digests()
    runner.switch.table_clear("dip_table")
    core = ControllerCore(config(restart_hold=30.0), routes=ROUTES)
    fresh = Runner(core, runner.switch)
    fresh.feed(core.bootstrap(100.0, SwitchView(0, 1, 0)))
    fresh.run()
    fresh.tick(101.5)
    assert runner.switch.table_num_entries("dip_table") == core.versions.shadow.size() > 0
    assert send(runner.switch, 40002) is not None


def test_clean_stop_journal_shortens_the_hold_and_carries_unsettled_connections() -> None:
    runner = started()
    runner.fail = lambda call: call.args[0] == "conn_table"
    dip = send(runner.switch, 40001)
    runner.digests()
    journal = runner.core.journal_at_stop(10.0)
    assert journal is not None and len(journal["unsettled"]) == 1
    core = ControllerCore(config(restart_hold=30.0), routes=ROUTES)
    fresh = Runner(core, runner.switch)
    entries = runner.switch.table_num_entries("dip_table")
    fresh.feed(core.bootstrap(10.5, SwitchView(0, 0, entries), journal))
    fresh.run()
    assert runner.switch.table_num_entries("conn_table") == 1  # re-learned from the journal
    assert send(runner.switch, 40001, PSH | ACK) == dip
    fresh.tick(11.0, cpu=(0.9, 0.2, 0.2))
    assert "restart hold" in (core.versions.backpressure or "")
    fresh.tick(13.0, cpu=(0.9, 0.2, 0.2))  # hold = quiet 1 s + 2 x downtime 0.5 s
    assert runner.switch.register_read("active_version", 0) == 1
