"""What P4Runtime needs of the model: find an entry by key, typed records, idle timers."""

from __future__ import annotations

import pytest

from p4model import Switch, SwitchError
from p4model.errors import ErrorCode


class FakeClock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_find_gives_the_handle_of_an_exact_entry_and_none_for_a_miss() -> None:
    switch = Switch()
    handle = switch.table_add("vip_table", "set_pool", ["10.0.0.1", "80", "6"], ["3", "1"])
    table = switch.table("vip_table")
    assert table.find(["167772161", "0x50", "6"]) == handle
    assert table.find(["10.0.0.1", "81", "6"]) is None


def test_find_tells_lpm_prefixes_apart() -> None:
    switch = Switch()
    short = switch.table_add("ipv4_lpm", "drop", ["10.0.0.0/8"], [])
    long = switch.table_add("ipv4_lpm", "drop", ["10.0.0.0/24"], [])
    table = switch.table("ipv4_lpm")
    assert (table.find(["10.0.0.0/8"]), table.find(["10.0.0.0/24"])) == (short, long)
    assert table.find(["10.0.0.0/16"]) is None


def test_records_carry_values_prefix_action_and_params() -> None:
    switch = Switch()
    handle = switch.table_add(
        "dip_table", "rewrite_dst", ["1", "7", "0x8000/1"], ["10.0.2.2", "80"]
    )
    (record,) = switch.table("dip_table").records()
    assert record == switch.table("dip_table").record(handle)
    assert (record.values, record.prefix_len) == ((1, 7, 0x8000), 1)
    assert (record.action, record.params) == ("LbIngress.rewrite_dst", (0x0A000202, 80))


def test_const_entries_are_records_too() -> None:
    assert len(Switch().table("version_select").records()) == 64


def test_record_of_an_unknown_handle_is_invalid_handle() -> None:
    with pytest.raises(SwitchError) as caught:
        Switch().table("vip_table").record(5)
    assert caught.value.code is ErrorCode.INVALID_HANDLE


def test_restarting_the_idle_timer_postpones_ageing() -> None:
    clock = FakeClock()
    switch = Switch(clock=clock)
    handle = switch.table_add("conn_table", "rewrite_dst", ["1", "2", "3", "4", "6"], ["5", "6"])
    switch.table_set_timeout("conn_table", handle, 1000)
    clock.now += 1.5
    assert switch.idle_seconds(handle) == pytest.approx(1.5)
    assert switch.sweep_aged() == [handle]
    switch.restart_idle_timer(handle)
    assert switch.idle_seconds(handle) == 0.0
    assert switch.sweep_aged() == []
    clock.now += 1.5
    assert switch.sweep_aged() == [handle]


def test_idle_seconds_of_an_unknown_handle_is_invalid_handle() -> None:
    with pytest.raises(SwitchError) as caught:
        Switch().idle_seconds(3)
    assert caught.value.code is ErrorCode.INVALID_HANDLE
