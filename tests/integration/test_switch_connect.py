"""connect_switch: parsing of --switch specs and the client each one builds."""

from __future__ import annotations

import socket

import pytest
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from controller.switch.api import ErrorKind, SwitchError
from controller.switch.connect import SwitchSpec, SwitchSpecError, connect_switch, parse_switch_spec
from controller.switch.model_client import ModelSwitchClient
from controller.switch.testing import ThreadedClock

sync = SynchronousTestCase()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("model", SwitchSpec("model")),
        (" model ", SwitchSpec("model")),
        ("thrift://127.0.0.1:9090", SwitchSpec("thrift", "127.0.0.1", 9090)),
        ("thrift://s1.example:9091", SwitchSpec("thrift", "s1.example", 9091)),
        ("p4rt://127.0.0.1:9559", SwitchSpec("p4rt", "127.0.0.1", 9559, 1)),
        ("p4rt://127.0.0.1:9559?device_id=0", SwitchSpec("p4rt", "127.0.0.1", 9559, 0)),
        ("p4rt://[::1]:50001?device_id=7", SwitchSpec("p4rt", "::1", 50001, 7)),
        (
            "p4rt://h:1?election_id=9&device_id=0",
            SwitchSpec("p4rt", "h", 1, device_id=0, election_id=9),
        ),
    ],
)
def test_valid_specs_parse(spec: str, expected: SwitchSpec) -> None:
    assert parse_switch_spec(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "bmv2",
        "Model",
        "udp://1.2.3.4:5",
        "thrift://127.0.0.1",
        "thrift://:9090",
        "tcp://127.0.0.1:9559",  # the old private protocol of p4lb-switch: p4rt:// now
        "p4rt://host:0",
        "p4rt://host:65536",
        "p4rt://host:http",
        "thrift:/127.0.0.1:9090",
        "p4rt://127.0.0.1",
        "p4rt://127.0.0.1:9559?device=1",
        "p4rt://127.0.0.1:9559?device_id=-1",
        "p4rt://127.0.0.1:9559?device_id=",
        "p4rt://127.0.0.1:9559?device_id=1&device_id=2",
        "p4rt://127.0.0.1:9559?election_id=0",
        "p4rt://127.0.0.1:9559?device_id=1&",
        "thrift://127.0.0.1:9090?device_id=1",
    ],
)
def test_bad_specs_are_refused_showing_the_spec(spec: str) -> None:
    with pytest.raises(SwitchSpecError) as raised:
        parse_switch_spec(spec)
    assert repr(spec) in str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, SwitchError)


def test_model_spec_builds_a_working_in_process_switch() -> None:
    client = connect_switch("model", ThreadedClock())
    assert isinstance(client, ModelSwitchClient)
    handle = sync.successResultOf(
        defer.ensureDeferred(client.table_add("ipv4_lpm", "drop", ["10.0.0.0/8"], []))
    )
    assert isinstance(handle, int)
    assert sync.successResultOf(defer.ensureDeferred(client.table_num_entries("ipv4_lpm"))) == 1


def test_p4rt_spec_builds_a_p4runtime_client_with_its_options() -> None:
    from controller.switch.p4runtime_client import P4RuntimeSwitchClient

    clock = ThreadedClock()
    port = _closed_port()
    client = connect_switch(
        f"p4rt://127.0.0.1:{port}?device_id=3&election_id=4",
        clock,
        p4rt_options={"connect_timeout": 0.2},
    )
    assert isinstance(client, P4RuntimeSwitchClient)
    assert (client.device_id, client.election_id) == (3, 4)
    clock.run_from_threads(1)  # the first connection attempt failed: nothing listens
    assert not client.primary
    counted = defer.ensureDeferred(client.table_num_entries("vip_table"))
    clock.run_from_threads(1)
    assert sync.failureResultOf(counted, SwitchError).value.kind is ErrorKind.UNAVAILABLE
    closing = defer.ensureDeferred(client.close())
    clock.run_from_threads(1)
    sync.successResultOf(closing)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_thrift_spec_without_p4utils_explains_how_to_install() -> None:
    try:
        import p4utils  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("p4-utils is installed here")
    with pytest.raises(SwitchError, match="pip install"):
        connect_switch("thrift://127.0.0.1:9090", ThreadedClock())
