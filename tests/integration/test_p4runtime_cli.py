"""p4lb-switch's P4Runtime options: the bare option's address, and a taken port refused."""

from __future__ import annotations

import socket

import pytest

from p4model import Switch
from p4model.server import DEFAULT_P4RUNTIME, SwitchServer, build_parser, main


@pytest.mark.parametrize(
    ("argv", "address", "device_id"),
    [
        ([], None, 1),
        (["--p4runtime"], DEFAULT_P4RUNTIME, 1),
        (["--p4runtime", "127.0.0.1:0", "--device-id", "3"], "127.0.0.1:0", 3),
    ],
)
def test_p4runtime_options(argv: list[str], address: str | None, device_id: int) -> None:
    args = build_parser().parse_args(argv)
    assert (args.p4runtime, args.device_id) == (address, device_id)


def test_a_taken_p4runtime_port_is_refused_and_nothing_is_left_bound() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            SwitchServer(
                Switch(),
                [],
                "tcp://127.0.0.1:*",
                "tcp://127.0.0.1:*",
                p4runtime=f"127.0.0.1:{port}",
            )
        assert main(["--control", "tcp://127.0.0.1:*", "--p4runtime", f"127.0.0.1:{port}"]) == 1
