"""ModelSwitchClient over the real in-process p4model.Switch."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from controller.switch.api import DefaultEntry, Digest, SwitchError
from controller.switch.model_client import ModelSwitchClient
from p4model import Switch

sync = SynchronousTestCase()

CLIENT_MAC, SWITCH_MAC, SERVER_MAC = "00:00:0a:01:01:02", "00:01:0a:01:03:02", "00:00:0a:01:03:02"


def make_client() -> tuple[ModelSwitchClient, task.Clock]:
    clock = task.Clock()
    return ModelSwitchClient(Switch(clock=clock.seconds), clock), clock


T = TypeVar("T")


def done(call: Coroutine[Any, Any, T]) -> T:
    result: T = sync.successResultOf(defer.ensureDeferred(call))
    return result


def balance_one_vip(client: ModelSwitchClient) -> None:
    """VIP 10.0.0.100:80/tcp → pool 0 → one DIP 10.1.3.2:8080 on port 3."""
    done(client.table_add("vip_table", "set_pool", ["10.0.0.100", "80", "6"], ["0", "0"]))
    done(client.table_add("dip_table", "rewrite_dst", ["0", "0", "0/0"], ["10.1.3.2", "8080"]))
    done(client.table_add("ipv4_lpm", "forward", ["10.1.3.2/32"], ["3", SWITCH_MAC, SERVER_MAC]))


def syn(sport: int) -> bytes:
    frame = (
        Ether(src=CLIENT_MAC, dst=SWITCH_MAC)
        / IP(src="10.0.1.2", dst="10.0.0.100")
        / TCP(sport=sport, dport=80, flags="S")
    )
    return bytes(frame)


def test_table_writes_return_handles_and_are_visible() -> None:
    client, _ = make_client()
    first = done(
        client.table_add("ipv4_lpm", "forward", ["10.1.3.2/32"], ["3", SWITCH_MAC, SERVER_MAC])
    )
    second = done(client.table_add("ipv4_lpm", "drop", ["10.9.0.0/16"], []))
    assert first != second
    assert done(client.table_num_entries("ipv4_lpm")) == 2
    done(client.table_delete("ipv4_lpm", first))
    assert done(client.table_num_entries("ipv4_lpm")) == 1
    done(client.table_clear("ipv4_lpm"))
    assert done(client.table_num_entries("ipv4_lpm")) == 0


def test_default_action_round_trip() -> None:
    client, _ = make_client()
    assert done(client.table_get_default("version_config")) == DefaultEntry(
        "set_versions", (0, 0, 0, 0, 0)
    )
    done(client.table_set_default("version_config", "set_versions", ["2", "5", "6", "7", "8"]))
    assert done(client.table_get_default("version_config")) == DefaultEntry(
        "set_versions", (2, 5, 6, 7, 8)
    )


@pytest.mark.parametrize(
    ("name", "call", "needle"),
    [
        ("unknown table", lambda c: c.table_add("nope", "forward", ["1"], []), "nope"),
        ("unknown table default", lambda c: c.table_get_default("bloom_9"), "bloom_9"),
        ("bad key", lambda c: c.table_add("ipv4_lpm", "forward", ["not-an-ip/8"], []), "ipv4_lpm"),
        ("missing handle", lambda c: c.table_delete("conn_table", 12345), "12345"),
    ],
)
def test_model_errors_become_switch_errors_naming_the_call(
    name: str, call: Callable[[ModelSwitchClient], Coroutine[Any, Any, object]], needle: str
) -> None:
    client, _ = make_client()
    failure = sync.failureResultOf(defer.ensureDeferred(call(client)), SwitchError)
    assert needle in str(failure.value), name


def test_digests_arrive_on_the_next_reactor_turn_not_inside_process() -> None:
    client, clock = make_client()
    balance_one_vip(client)
    digests: list[Digest] = []
    done(client.subscribe(digests.append, lambda handles: None))
    out = client.switch.process(1, syn(40000))
    assert [port for port, _ in out] == [3]
    assert digests == []  # not delivered re-entrantly
    clock.advance(0)
    assert digests == [
        Digest("new_conn", "10.0.1.2", "10.0.0.100", 40000, 80, 6, 0, "10.1.3.2", 8080)
    ]
    assert type(digests[0]) is Digest


def test_idle_conn_table_entries_are_reported_by_the_ageing_sweep() -> None:
    client, clock = make_client()
    aged: list[list[int]] = []
    done(client.subscribe(lambda d: None, lambda handles: aged.append(list(handles))))
    handle = done(
        client.table_add(
            "conn_table",
            "rewrite_dst",
            ["10.0.1.2", "10.0.0.100", "40000", "80", "6"],
            ["10.1.3.2", "8080"],
        )
    )
    done(client.table_set_timeout("conn_table", handle, 1500))
    clock.advance(1.0)
    assert aged == []
    clock.advance(1.0)
    assert aged == [[handle]]


def test_after_close_calls_fail_and_digests_stop() -> None:
    client, clock = make_client()
    balance_one_vip(client)
    digests: list[Digest] = []
    done(client.subscribe(digests.append, lambda handles: None))
    done(client.close())
    client.switch.process(1, syn(40001))
    clock.advance(5)
    assert digests == []
    assert clock.getDelayedCalls() == []
    sync.failureResultOf(defer.ensureDeferred(client.table_num_entries("ipv4_lpm")), SwitchError)
