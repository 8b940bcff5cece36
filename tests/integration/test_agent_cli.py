"""p4lb-agent end to end: a real agent process pushes reports to a PULL socket; SIGTERM stops it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.auth

from agent.cli import main
from agent.wire import LoadReport, decode_report


@pytest.fixture
def pull() -> Iterator[zmq.Socket[Any]]:
    context: zmq.Context[Any] = zmq.Context()
    sock = context.socket(zmq.PULL)
    sock.bind("tcp://127.0.0.1:*")
    yield sock
    sock.close(linger=0)
    context.term()


def _receive(sock: zmq.Socket[Any], timeout_ms: int = 10_000) -> LoadReport:
    assert sock.poll(timeout_ms), "no report before the deadline"
    return decode_report(sock.recv())


def _receive_run(sock: zmq.Socket[Any], count: int) -> list[LoadReport]:
    """The reports of an agent run with `--count`: exactly `count`, in order, then no more
    (reports made before the connection was up were dropped, so seq need not start at 0)."""
    reports = [_receive(sock, 2000) for _ in range(count)]
    seqs = [r.seq for r in reports]
    assert seqs == list(range(seqs[0], seqs[0] + count))
    assert not sock.poll(100)
    return reports


def test_agent_reports_connections_and_exits_cleanly_on_sigterm(pull: zmq.Socket[Any]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        agent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent",
                "--controller",
                pull.getsockopt_string(zmq.LAST_ENDPOINT),
                "--dip",
                f"127.0.0.1:{port}",
                "--interval",
                "0.05",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            reports = [_receive(pull) for _ in range(3)]
        finally:
            agent.send_signal(signal.SIGTERM)
            _, stderr = agent.communicate(timeout=10)
            client.close()
            accepted.close()
    assert agent.returncode == 0, stderr
    seqs = [r.seq for r in reports]  # reports made before the handshake are dropped
    assert seqs == list(range(seqs[0], seqs[0] + 3))
    assert all(r.dip == f"127.0.0.1:{port}" and r.conns == 1 for r in reports)
    assert all(0.0 <= r.cpu <= 1.0 and r.state == "up" for r in reports)
    assert stderr.count("controller reachable") == 1  # one line per state change, not per report
    assert "stopping" in stderr


def test_agent_count_option_stops_after_n_reports(pull: zmq.Socket[Any]) -> None:
    endpoint = pull.getsockopt_string(zmq.LAST_ENDPOINT)
    with socket.create_server(("127.0.0.1", 0)) as service:  # the probe finds it serving
        dip = f"127.0.0.1:{service.getsockname()[1]}"
        args = ["--controller", endpoint, "--dip", dip, "--interval", "0.02", "--count", "2"]
        assert main([*args, "--cpu-scope", "system", "--state", "drain"]) == 0
    assert {r.state for r in _receive_run(pull, 2)} == {"drain"}


def test_repeated_controllers_each_get_the_reports(pull: zmq.Socket[Any]) -> None:
    context: zmq.Context[Any] = zmq.Context()
    backup = context.socket(zmq.PULL)
    backup.bind("tcp://127.0.0.1:*")
    endpoints = [s.getsockopt_string(zmq.LAST_ENDPOINT) for s in (pull, backup)]
    controllers = [arg for e in endpoints for arg in ("--controller", e)]
    with socket.create_server(("127.0.0.1", 0)) as service:
        dip = f"127.0.0.1:{service.getsockname()[1]}"
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent", *controllers, "--dip", dip, "--interval", "0.05"],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # Each controller gets reports, in order (one that connected later missed the
            # earliest: they were dropped while its connection was not up).
            for sock in (pull, backup):
                seqs = [_receive(sock).seq for _ in range(3)]
                assert seqs == sorted(seqs) and len(set(seqs)) == 3
        finally:
            agent.send_signal(signal.SIGTERM)
            _, stderr = agent.communicate(timeout=10)
            backup.close(linger=0)
            context.term()
    assert agent.returncode == 0, stderr
    assert stderr.count("controller reachable") == 2
    assert all(f"for {e}" in stderr for e in endpoints)  # one exit line per controller


@pytest.mark.parametrize(("probe", "state"), [("tcp", "down"), ("none", "up")])
def test_a_service_port_that_refuses_is_reported_down_unless_probing_is_off(
    pull: zmq.Socket[Any], probe: str, state: str
) -> None:
    endpoint = pull.getsockopt_string(zmq.LAST_ENDPOINT)
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]  # free once closed: nothing listens there
    args = ["--controller", endpoint, "--dip", f"127.0.0.1:{port}", "--interval", "0.02"]
    assert main([*args, "--count", "2", "--cpu-scope", "system", "--probe", probe]) == 0
    assert {r.state for r in _receive_run(pull, 2)} == {state}


def test_make_keys_writes_a_loadable_key_pair(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--make-keys", str(tmp_path / "keys" / "agent")]) == 0
    public, secret = tmp_path / "keys" / "agent.key", tmp_path / "keys" / "agent.key_secret"
    assert zmq.auth.load_certificate(str(secret))[1] is not None
    key = zmq.auth.load_certificate(str(public))[0].decode()
    assert f'key = "{key}"' in capsys.readouterr().out  # ready for the controller's allow-list
    assert public.stat().st_mode & 0o777 == 0o644
    assert secret.stat().st_mode & 0o777 == 0o600


def test_make_keys_never_overwrites_a_key_pair(tmp_path: Path) -> None:
    assert main(["--make-keys", str(tmp_path / "agent")]) == 0
    before = (tmp_path / "agent.key_secret").read_bytes()
    assert main(["--make-keys", str(tmp_path / "agent")]) == 2
    assert (tmp_path / "agent.key_secret").read_bytes() == before


@pytest.mark.parametrize(
    "args",
    [
        ["--dip", "10.0.0.1:80"],
        ["--controller", "tcp://127.0.0.1:1", "--dip", "10.0.0.1"],
        ["--controller", "tcp://127.0.0.1:1", "--dip", "10.0.0.1:80", "--interval", "0"],
        ["--controller", "tcp://127.0.0.1:1", "--dip", "10.0.0.1:80", "--curve-key", "x"],
        [
            "--controller",
            "tcp://127.0.0.1:1",
            "--controller",
            "tcp://127.0.0.1:1",
            "--dip",
            "10.0.0.1:80",
        ],
    ],
)
def test_bad_arguments_exit_with_usage_error(args: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(args)
    assert caught.value.code == 2


@pytest.mark.parametrize(
    "args",
    [
        ["--cpu-scope", "pid:999999999"],
        ["--controller", "nonsense://x"],
        ["--curve-server-key", "/nonexistent.key", "--curve-key", "/nonexistent.key_secret"],
    ],
)
def test_unusable_scope_endpoint_or_keys_exit_with_status_2(args: list[str]) -> None:
    base = {"--controller": "tcp://127.0.0.1:1", "--dip": "10.0.0.1:80"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    assert main([item for pair in base.items() for item in pair]) == 2
