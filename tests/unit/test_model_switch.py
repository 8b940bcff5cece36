"""The Switch runtime API: names, digests, subscribers, entry ageing, drops and port 0."""

from __future__ import annotations

import pytest

from p4model import Digest, Switch, SwitchError
from p4model.packet import Packet

CLIENT_TO_VIP = (
    bytes.fromhex("0000000000010000000000020800")
    + bytes.fromhex("4500002800000000400600000a0001020a000064")
    + bytes.fromhex("04d2005000000000000000005011200000000000")  # FIN+ACK
)


class FakeClock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _switch(clock: FakeClock | None = None) -> Switch:
    switch = Switch(clock=clock or FakeClock())
    switch.table_add(
        "ipv4_lpm", "forward", ["10.0.0.0/8"], ["2", "00:00:00:00:00:02", "00:00:00:00:00:03"]
    )
    return switch


def _pin(switch: Switch) -> int:
    return switch.table_add(
        "conn_table",
        "rewrite_dst",
        ["10.0.1.2", "10.0.0.100", "1234", "80", "6"],
        ["10.0.2.2", "8080"],
    )


def test_full_and_short_names_both_work() -> None:
    """Tables, actions and registers answer to full names and unique suffixes."""
    switch = _switch()
    switch.table_add(
        "LbIngress.vip_table", "LbIngress.set_pool", ["10.0.0.100", "80", "6"], ["1", "0"]
    )
    assert switch.table_num_entries("vip_table") == 1
    switch.register_write("LbIngress.bloom_2", 0, 2)
    assert switch.register_read("bloom_2", 0) == 2
    switch.table_set_default("LbIngress.version_config", "set_versions", ["1", "2", "3", "4", "5"])
    assert switch.table_get_default("version_config") == ("LbIngress.set_versions", [1, 2, 3, 4, 5])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.table_add("nope", "drop", [], []), "unknown table 'nope'"),
        (lambda s: s.table_add("vip_table", "forward", ["1", "2", "3"], []), "unknown action"),
        (
            lambda s: s.table_add("version_select", "use_version", ["0", "0"], ["0", "0"]),
            "const entries",
        ),
        (lambda s: s.register_read("bloom_9"), "unknown register 'bloom_9'"),
        (lambda s: s.register_write("bloom_0", 65536, 1), "out of range"),
        (lambda s: s.table_set_timeout("vip_table", 0, 100), "does not support entry timeouts"),
        (lambda s: s.table_set_timeout("conn_table", 5, 100), "INVALID_HANDLE"),
        (lambda s: s.table_delete("conn_table", 0), "INVALID_HANDLE"),
        (lambda s: s.process(512, b""), "ingress port"),
    ],
)
def test_errors_raise_switch_error(call: object, message: str) -> None:
    """Every runtime API error is a SwitchError with a message naming the bad value."""
    assert callable(call)
    with pytest.raises(SwitchError, match=message):
        call(_switch())


def test_contract_example_dip_table_add() -> None:
    """The contract's example call works and the table holds DIP_TABLE_SIZE entries at most."""
    switch = _switch()
    handle = switch.table_add(
        "dip_table", "rewrite_dst", ["1", "0", "0x8000/1"], ["10.0.2.2", "8080"]
    )
    assert handle == 0 and switch.table_num_entries("dip_table") == 1
    assert switch.table("dip_table").size == switch.settings.dip_table_size


def test_digests_queue_until_popped() -> None:
    """Without subscribers digests queue; pop_digests drains them."""
    switch = _switch()
    _pin(switch)
    switch.process(1, CLIENT_TO_VIP)
    expected = Digest("teardown", "10.0.1.2", "10.0.0.100", 1234, 80, 6, 0, "10.0.2.2", 8080)
    assert switch.pop_digests() == [expected]
    assert switch.pop_digests() == []


def test_subscribers_get_digests_instead_of_the_queue() -> None:
    """A subscriber is called when the digest is raised; nothing is queued."""
    switch = _switch()
    _pin(switch)
    seen: list[Digest] = []
    switch.subscribe(seen.append)
    switch.process(1, CLIENT_TO_VIP)
    assert [d.kind for d in seen] == ["teardown"]
    assert switch.pop_digests() == []


def test_ageing_follows_the_injected_clock() -> None:
    """An entry ages out after its timeout without hits; hits reset its idle time."""
    clock = FakeClock()
    switch = _switch(clock)
    handle = _pin(switch)
    other = switch.table_add(
        "conn_table", "rewrite_dst", ["10.0.1.3", "10.0.0.100", "1", "80", "6"], ["10.0.2.2", "80"]
    )
    switch.table_set_timeout("conn_table", handle, 1000)
    clock.now = 0.9
    switch.process(1, CLIENT_TO_VIP)
    clock.now = 1.5
    assert switch.sweep_aged() == []
    clock.now = 2.0
    assert switch.sweep_aged() == [handle]
    assert switch.sweep_aged() == [handle]  # repeated while idle, like BMv2's AGE messages
    switch.table_set_timeout("conn_table", handle, 0)
    assert switch.sweep_aged() == []
    switch.table_set_timeout("conn_table", other, 500)
    switch.table_delete("conn_table", other)
    assert switch.sweep_aged() == []


def test_dropped_packets_leave_nowhere_and_port_0_is_only_explicit() -> None:
    """Drops give no output; a packet leaves on port 0 only when a route says so."""
    assert Packet(b"", 1).egress_spec == 0  # BMv2: no decision means port 0
    switch = Switch()
    assert switch.process(1, CLIENT_TO_VIP) == []  # no route: default drop
    switch.table_add("ipv4_lpm", "forward", ["10.0.0.0/8"], ["0", "0", "0"])
    ((port, _),) = switch.process(1, CLIENT_TO_VIP)
    assert port == 0


@pytest.mark.parametrize(
    "frame", [b"", bytes(6), bytes(13), CLIENT_TO_VIP[:20], CLIENT_TO_VIP[:33]]
)
def test_frames_too_short_for_ethernet_or_ipv4_are_dropped(frame: bytes) -> None:
    """Parser errors do not crash the model; without a valid IPv4 header the packet is dropped."""
    switch = _switch()
    assert switch.process(1, frame) == []
    assert switch.pop_digests() == []


def test_register_reset_and_range_write() -> None:
    """register_reset zeroes one Bloom slot and leaves the others alone."""
    switch = _switch()
    switch.register_write("bloom_1", [10, 20], 1)
    switch.register_write("bloom_2", 5, 1)
    switch.register_reset("bloom_1")
    cells = switch.register_read("bloom_1")
    assert isinstance(cells, list) and sum(cells) == 0
    assert switch.register_read("bloom_2", 5) == 1
