"""Client-IP affinity: pins installed on a client's first connection, kept while any connection
lives, deleted `affinity_timeout` after the last one ended or when their DIP stops taking new
connections; a full table degrades to plain hashing. Then the core against the model: one
client's connections stay on one DIP through rollouts, with version 255 digests."""

from __future__ import annotations

import pytest
from core_runner import CoreRunner

import p4model
from controller.config import Config, ControllerSettings, DipConfig, VipConfig
from controller.core.affinity import ClientAffinity, PinState
from controller.core.connections import AffinityKey, ConnKey
from controller.core.controller_core import ControllerCore, SwitchView
from controller.core.digests import digest_problem
from controller.core.loadbook import DipLoad
from controller.core.ops import DefaultEntry, ErrorKind, Op, Outcome, TableDelete, TableInsert
from controller.core.records import RecordLog
from controller.core.shadow import DipTarget
from controller.routing import Route
from p4src.contract import AFFINITY_VERSION, Digest
from topo.frames import ACK, FIN, PSH, SYN, TCP, FlowKey, build_frame, read_flow

VIP = ("10.0.0.100", 80, 6)
D1, D2 = DipTarget("10.0.2.2", 8080), DipTarget("10.0.3.2", 8080)


def conn(sport: int, client: str = "10.0.1.2") -> ConnKey:
    return ConnKey(client, VIP[0], sport, VIP[1], VIP[2])


def affinity(capacity: int = 100, timeout: float = 10.0) -> tuple[ClientAffinity, RecordLog]:
    records = RecordLog()
    return ClientAffinity(capacity, {VIP: timeout}, records), records


def ack(component: ClientAffinity, ops: list[Op], now: float = 0.0, handle: int = 7) -> None:
    """Acknowledge every operation (adds get `handle`, `handle + 1`, ...)."""
    for n, op in enumerate(ops):
        done = Outcome.done(op, handle=handle + n if isinstance(op, TableInsert) else None)
        component.on_outcome(now, done)


def test_first_connection_pins_the_client_and_later_ones_join() -> None:
    pins, _ = affinity()
    pins.on_new_conn(0.0, conn(40000), D1, eligible=True)
    pins.on_new_conn(0.1, conn(40001), D1, eligible=True)
    ops = pins.due(0.1)
    assert len(ops) == 1 and isinstance(ops[0], TableInsert)
    assert ops[0].table == "affinity_table"
    assert ops[0].keys == ("10.0.1.2", "10.0.0.100", "80", "6")
    assert ops[0].params == ("10.0.2.2", "8080")
    ack(pins, ops)
    pin = pins.pin(AffinityKey.of(conn(40000)))
    assert pin is not None and pin.state is PinState.INSTALLED and len(pin.live) == 2
    assert pins.counters.pinned == 1 and pins.entries == 1


def test_pin_is_deleted_a_timeout_after_the_last_connection_ended_never_before() -> None:
    pins, _ = affinity(timeout=10.0)
    pins.on_new_conn(0.0, conn(40000), D1, eligible=True)
    pins.on_new_conn(0.0, conn(40001), D1, eligible=True)
    ack(pins, pins.due(0.0))
    pins.on_ended(5.0, [conn(40000)])
    assert pins.due(100.0) == []  # one connection still lives: never deleted
    pins.on_ended(105.0, [conn(40001)])
    assert pins.due(114.9) == []
    (delete,) = pins.due(115.0)
    assert isinstance(delete, TableDelete) and delete.handle == 7
    ack(pins, [delete], 115.0)
    assert pins.pin(AffinityKey.of(conn(40000))) is None
    assert pins.counters.expired == 1 and pins.entries == 0


def test_a_new_connection_within_the_timeout_keeps_the_pin() -> None:
    pins, _ = affinity(timeout=10.0)
    pins.on_new_conn(0.0, conn(40000), D1, eligible=True)
    ack(pins, pins.due(0.0))
    pins.on_ended(1.0, [conn(40000)])
    pins.on_new_conn(8.0, conn(40002), D1, eligible=True)
    assert pins.due(11.0) == []  # the timer of the first end is stale
    pins.on_ended(20.0, [conn(40002)])
    assert [type(op) for op in pins.due(30.0)] == [TableDelete]


def test_a_connection_ending_before_the_add_is_acknowledged_still_expires() -> None:
    pins, _ = affinity(timeout=10.0)
    pins.on_new_conn(0.0, conn(40000), D1, eligible=True)
    add = pins.due(0.0)
    pins.on_ended(1.0, [conn(40000)])
    assert pins.due(12.0) == []  # still being added
    ack(pins, add, 12.0)
    assert [type(op) for op in pins.due(12.0)] == [TableDelete]


def test_pins_to_a_dip_that_takes_no_new_connections_are_deleted() -> None:
    pins, _ = affinity()
    pins.on_new_conn(0.0, conn(40000), D1, eligible=True)
    pins.on_new_conn(0.0, conn(40000, "10.0.1.3"), D2, eligible=True)
    ack(pins, pins.due(0.0))
    pins.retire([D1.name])
    (delete,) = pins.due(1.0)
    assert isinstance(delete, TableDelete) and delete.tag == AffinityKey.of(conn(40000))
    ack(pins, [delete])
    assert pins.counters.retired == 1 and pins.entries == 1
    # A first connection to a DIP that takes no new ones does not pin its client.
    pins.on_new_conn(2.0, conn(40005), D1, eligible=False)
    assert pins.due(2.0) == [] and pins.pin(AffinityKey.of(conn(40005))) is None


def test_connections_during_a_delete_reinstall_the_pin() -> None:
    pins, _ = affinity(timeout=1.0)
    pins.on_new_conn(0.0, conn(40000), D1, eligible=True)
    ack(pins, pins.due(0.0))
    pins.on_ended(1.0, [conn(40000)])
    delete = pins.due(2.0)
    pins.on_new_conn(2.1, conn(40009), D2, eligible=True)
    ack(pins, delete, 2.2)
    (add,) = pins.due(2.2)
    assert isinstance(add, TableInsert) and add.params == ("10.0.3.2", "8080")


@pytest.mark.parametrize("refused", [ErrorKind.TABLE_FULL, ErrorKind.UNAVAILABLE])
def test_a_full_table_degrades_to_plain_hashing_counted_and_recorded(refused: ErrorKind) -> None:
    pins, records = affinity(capacity=1, timeout=5.0)
    pins.on_new_conn(0.0, conn(40000), D1, eligible=True)
    (add,) = pins.due(0.0)
    pins.on_outcome(0.0, Outcome.failed(add, refused, "no room"))
    assert pins.entries == 0
    # The capacity is the controller's own limit too: a second client waits for none.
    pins.on_new_conn(0.0, conn(40000, "10.0.1.3"), D2, eligible=True)
    (other,) = pins.due(0.0)
    ack(pins, [other])
    pins.on_new_conn(0.1, conn(40000, "10.0.1.4"), D2, eligible=True)
    assert pins.due(0.1) == []  # full: no add at all
    counters = pins.counters
    assert counters.table_full + counters.add_failures == 2
    assert counters.table_full == (2 if refused is ErrorKind.TABLE_FULL else 1)
    faults = [r.fields["detail"] for r in records.take() if r.kind == "fault"]
    assert faults and "plain hashing" in str(faults[0])
    # An unpinned client is forgotten (no write) once its connections are gone.
    pins.on_ended(1.0, [conn(40000), conn(40000, "10.0.1.4")])
    assert pins.due(10.0) == []
    assert pins.pin(AffinityKey.of(conn(40000))) is None


@pytest.mark.parametrize(("version", "ok"), [(AFFINITY_VERSION, True), (254, False), (4, False)])
def test_digest_versions_are_slots_or_the_affinity_marker(version: int, ok: bool) -> None:
    digest = Digest("new_conn", "10.0.1.2", VIP[0], 40000, 80, 6, version, "10.0.2.2", 8080)
    members = {VIP: frozenset({"10.0.2.2:8080"})}
    assert (digest_problem(digest, 4, members) is None) is ok


# -- the core against the model

DIPS = ("10.0.2.2", "10.0.3.2", "10.0.4.2")
ROUTES = [Route("10.0.1.0/24", 1, "00:01:00:00:00:01", "00:00:00:00:01:02")] + [
    Route(f"{ip}/32", 2 + i, "00:01:00:00:00:01", "00:00:00:00:02:02") for i, ip in enumerate(DIPS)
]
LOADS = [(0.9, 0.2, 0.2), (0.2, 0.9, 0.3), (0.3, 0.2, 0.9), (0.7, 0.6, 0.1)]


class Runner(CoreRunner):
    """Ticks the core, delivers digests (kept for the test) and sends packets."""

    def __init__(self, timeout: float = 5.0) -> None:
        settings = ControllerSettings(
            policy="cpu",
            min_rollout_interval=1.0,
            quiet_period=1.0,
            min_weight_change=0.0,
            teardown_linger=0.5,
        )
        dips = tuple(DipConfig(ip, 8080, 1) for ip in DIPS)
        web = VipConfig("web", VIP[0], 80, "tcp", dips, "client_ip", timeout)
        switch = p4model.Switch()
        core = ControllerCore(Config(settings, (web,)), switch.settings, routes=ROUTES)
        super().__init__(core, switch)
        self.seen: list[Digest] = []
        versions = DefaultEntry.read(*switch.table_get_default("version_config"))
        self.feed(core.bootstrap(0.0, SwitchView(versions, 0, 0)))
        self.run()
        assert core.started

    def tick(self, now: float, cpu: tuple[float, ...] = (0.5, 0.5, 0.5), down: str = "") -> None:
        self.now = now
        loads = {
            f"{ip}:8080": DipLoad(
                f"{ip}:8080", "down" if down == ip else "up", c, 0, None, now, 0.0, 1, "up"
            )
            for ip, c in zip(DIPS, cpu, strict=True)
        }
        self.feed(self.core.tick(now, loads))
        self.run()
        for digest in self.switch.pop_digests():
            self.seen.append(digest)
            self.feed(self.core.on_digest(now, digest))
        self.run()

    def send(self, sport: int, flags: int = SYN, client: str = "10.0.1.2") -> str | None:
        flow = FlowKey(client, VIP[0], sport, 80, TCP)
        frame = build_frame("00:00:00:00:01:02", "00:01:00:00:00:01", flow, flags=flags)
        out = self.switch.process(1, frame)
        if not out:
            return None
        seen = read_flow(out[0][1])
        return f"{seen.dst_ip}:{seen.dst_port}"


def test_one_clients_connections_share_a_dip_through_rollouts_then_the_pin_expires() -> None:
    runner = Runner(timeout=5.0)
    first = runner.send(40000)
    runner.tick(0.1)
    assert runner.switch.table_num_entries("affinity_table") == 1
    dips = set()
    for n, t in enumerate(range(2, 12)):  # a rollout every tick, connections in between
        runner.tick(float(t), LOADS[n % len(LOADS)])
        dips.add(runner.send(41000 + n))
        runner.tick(t + 0.1)
    assert runner.core.rollouts.counters.rollouts >= 8
    assert dips == {first}
    versions = [d.version for d in runner.seen if d.kind == "new_conn"]
    assert versions[0] in range(4) and set(versions[1:]) == {AFFINITY_VERSION}
    assert runner.core.learner.pending_count(0) == 0 and len(runner.core.learner) == 11
    # Every connection ends (FIN, entry deleted after the linger); 5 s later the pin goes.
    for sport in [40000, *range(41000, 41010)]:
        assert runner.send(sport, FIN | ACK) == first
    runner.tick(12.5)
    runner.tick(13.5)
    assert runner.switch.table_num_entries("conn_table") == 0
    runner.tick(18.0)
    assert runner.switch.table_num_entries("affinity_table") == 1
    runner.tick(19.0)
    assert runner.switch.table_num_entries("affinity_table") == 0
    assert runner.core.view().affinity.expired == 1


def test_a_drained_dip_loses_its_pins_and_existing_connections_stay() -> None:
    runner = Runner()
    pinned = runner.send(40000)
    runner.tick(0.1)
    assert pinned is not None and runner.switch.table_num_entries("affinity_table") == 1
    runner.core.drain_member(0.5, pinned, remove=False)
    runner.tick(1.0)
    assert runner.switch.table_num_entries("affinity_table") == 0
    assert runner.core.view().affinity.retired == 1
    assert runner.send(40000, PSH | ACK) == pinned  # its conn_table entry holds it
    runner.tick(3.0)  # the rollout that gives the drained DIP weight 0
    other = runner.send(40001, client="10.0.1.9")
    runner.tick(3.1)
    assert other != pinned and runner.switch.table_num_entries("affinity_table") == 1


def test_a_dip_reported_down_loses_its_pins() -> None:
    runner = Runner()
    pinned = runner.send(40000)
    runner.tick(0.1)
    assert pinned is not None and runner.switch.table_num_entries("affinity_table") == 1
    runner.tick(0.6, down=pinned.split(":")[0])  # the next policy round reads the loads
    assert runner.switch.table_num_entries("affinity_table") == 0


def test_a_lost_switch_takes_every_pin_and_no_old_handle_is_used_after() -> None:
    pins, _ = affinity(timeout=1.0)
    pins.on_new_conn(0.0, conn(40000), D1, eligible=True)
    ack(pins, pins.due(0.0), handle=7)
    pins.on_ended(0.5, [conn(40000)])  # its delete (handle 7) would fall due at 1.5
    pins.switch_lost()
    assert pins.entries == 0 and pins.pin(AffinityKey.of(conn(40000))) is None
    assert pins.due(2.0) == []  # handle 7 may name another pin on the restarted switch
    pins.on_new_conn(3.0, conn(40001), D2, eligible=True)  # pinned afresh
    (add,) = pins.due(3.0)
    assert isinstance(add, TableInsert) and add.params == ("10.0.3.2", "8080")
