"""Console entry points fed bad input: a clear message and an exit status, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import zmq

from agent.cli import main as agent_main
from controller.shell.cli import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from controller.shell.cli import main as controller_main
from controller.shell.plot import main as plot_main
from controller.switch.api import SwitchError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "controller" / "examples" / "lb.toml"
VIP = '[[vip]]\nip = "10.0.0.1"\nport = 80\n[[vip.dip]]\nip = "10.1.1.1"\nport = 8080\n'


def write(tmp_path: Path, content: str | bytes) -> str:
    path = tmp_path / "lb.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


@pytest.mark.parametrize(
    ("config", "args", "message"),
    [
        pytest.param(b"\xff\xfe[[vip]]", [], "not UTF-8 text", id="not-utf8"),
        pytest.param(
            "[policy_params]\ngain = -5\n" + VIP,
            [],
            "policy_params.gain: RatioParams.gain must be in [0.0, 1.0], got -5.0",
            id="policy-param-out-of-range",
        ),
        pytest.param(
            "[policy_params]\ngain = 0.1\n" + VIP,
            ["--policy", "equal"],
            "--policy: 'equal' takes no parameter gain (set in [policy_params])",
            id="policy-override-with-foreign-params",
        ),
        pytest.param(
            VIP,
            ["--switch", "udp://10.0.0.1:9090"],
            "--switch: switch spec 'udp://10.0.0.1:9090' is not one of",
            id="unknown-switch-scheme",
        ),
        pytest.param(VIP, ["--switch", "p4rt://host"], "needs HOST:PORT", id="switch-without-port"),
        pytest.param(
            VIP, ["--metrics", "bogus"], "--metrics: 'bogus' is not HOST:PORT", id="metrics"
        ),
        pytest.param(
            VIP,
            ["--admin", "admin.sock"],
            "--admin: 'admin.sock' is not HOST:PORT or /PATH of a socket",
            id="admin",
        ),
        pytest.param(
            VIP,
            ["--load-listen", "tcp://"],
            "--load-listen: 'tcp://' is not a ZeroMQ endpoint",
            id="load-listen",
        ),
        pytest.param(
            VIP,
            ["--record", "/nonexistent-dir/run.jsonl"],
            "--record /nonexistent-dir/run.jsonl: No such file or directory",
            id="record-path",
        ),
        pytest.param(
            VIP,
            ["--state", "/nonexistent-dir/state.json"],
            "--state /nonexistent-dir/state.json: no such directory",
            id="state-path",
        ),
        pytest.param(
            VIP,
            ["--curve-secret", "/nonexistent-dir/server.key_secret"],
            "cannot read CURVE secret '/nonexistent-dir/server.key_secret'",
            id="curve-secret-missing",
        ),
        pytest.param(
            VIP,
            ["--curve-allow", "/"],
            "--curve-allow needs --curve-secret",
            id="curve-allow-alone",
        ),
        pytest.param(
            VIP,
            ["--load-listen", "tcp://0.0.0.0:5555"],
            "load_listen 'tcp://0.0.0.0:5555' is reachable from other hosts",
            id="load-listen-beyond-loopback",
        ),
        pytest.param(
            "[controller]\nload_listen = 'tcp://10.0.0.1:5555'\n" + VIP,
            ["--curve-secret", "/nonexistent"],
            "is reachable from other hosts: give --curve-secret and --curve-allow",
            id="curve-without-allow-list-beyond-loopback",
        ),
        pytest.param(
            VIP,
            ["--quiet-period", "inf"],
            "--quiet-period: inf is not a number >= 0.0",
            id="infinite-quiet-period",
        ),
    ],
)
def test_controller_refuses_bad_input_before_touching_a_switch(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    config: str | bytes,
    args: list[str],
    message: str,
) -> None:
    assert controller_main(["--config", write(tmp_path, config), *args]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_check_config_lists_problems_in_file_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "[controller]\nquiet_period = -1\npolicy = 5\nweight_bits = 0\nbogus = 1\n" + VIP
    assert controller_main(["--check-config", write(tmp_path, text)]) == EXIT_CONFIG
    lines = capsys.readouterr().err.splitlines()[1:]
    keys = [line.strip().split(":")[0] for line in lines]
    assert keys == [
        "controller.bogus",  # unknown keys first, then each value in the order written
        "controller.quiet_period",
        "controller.policy",
        "controller.weight_bits",
    ]


def test_a_switch_that_cannot_be_set_up_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(spec: str, reactor: Any, **kwargs: Any) -> Any:
        raise SwitchError("cannot import p4-utils (No module named 'sswitch_runtime')")

    monkeypatch.setattr("controller.switch.connect.connect_switch", refuse)
    code = controller_main(["--config", write(tmp_path, VIP), "--switch", "thrift://h:9090"])
    assert code == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.strip() == (
        "p4lb-controller: switch thrift://h:9090: "
        "cannot import p4-utils (No module named 'sswitch_runtime')"
    )


def test_a_start_up_failure_stops_the_controller_instead_of_hanging(tmp_path: Path) -> None:
    # The load feed's port is taken: start-up fails inside the reactor, which must then stop.
    context = zmq.Context()
    taken = context.socket(zmq.PULL)
    taken.bind("tcp://127.0.0.1:*")
    endpoint = taken.getsockopt_string(zmq.LAST_ENDPOINT)
    try:
        command = [sys.executable, "-m", "controller", "--config", str(EXAMPLE)]
        command += ["--metrics", "", "--load-listen", endpoint, "--record", str(tmp_path / "r")]
        done = subprocess.run(
            command, check=False, cwd=REPO, capture_output=True, text=True, timeout=120
        )
    finally:
        taken.close(0)
        context.term()
    assert done.returncode == EXIT_FAILED
    assert f"cannot listen for load reports on {endpoint!r}" in done.stderr
    assert "Traceback" not in done.stderr
    # It failed before writing anything to the switch: no rollout happened.
    assert "rollout" not in (tmp_path / "r").read_text()


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--count", "-1"], id="negative-count"),
        pytest.param(["--controller", "10.0.0.1:5555"], id="endpoint-without-scheme"),
    ],
)
def test_agent_usage_errors_exit_2(args: list[str]) -> None:
    base = ["--controller", "tcp://127.0.0.1:1", "--dip", "10.0.0.1:80"]
    with pytest.raises(SystemExit) as caught:
        agent_main(base + args)
    assert caught.value.code == 2


def test_agent_names_a_missing_key_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert agent_main(["--make-keys", str(tmp_path / "agent")]) == 0
    args = ["--controller", "tcp://127.0.0.1:1", "--dip", "10.0.0.1:80"]
    args += ["--curve-server-key", str(tmp_path / "server.key")]
    args += ["--curve-key", str(tmp_path / "agent.key_secret")]
    assert agent_main(args) == 2
    assert f"no such file {str(tmp_path / 'server.key')!r}" in caplog.text


def test_agent_cannot_write_keys_into_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert agent_main(["--make-keys", str(blocker / "agent")]) == 2


LOAD = {"t": 1.0, "kind": "load", "dip": "10.1.1.1:80", "cpu": 0.5, "conns": 1, "state": "up"}


@pytest.mark.parametrize(
    ("content", "code", "message"),
    [
        pytest.param(b"", 1, "no load, weights or share events", id="empty"),
        pytest.param(b"\xff\xfe\n", 1, "skipped 1 malformed line(s)", id="not-utf8"),
        pytest.param(b"garbage\n[1]\n\n", 1, "(line 1, 2)", id="garbage-only"),
        pytest.param(
            b"oops\n" + json.dumps(LOAD).encode() + b"\n{cut",
            0,
            "skipped 2 malformed line(s)",
            id="garbage-around-a-good-line",
        ),
    ],
)
def test_plot_reports_what_it_could_not_read(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    code: int,
    message: str,
) -> None:
    record = tmp_path / "r.jsonl"
    record.write_bytes(content)
    assert plot_main([str(record), "-o", str(tmp_path / "out.png")]) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("record", "output", "message"),
    [
        pytest.param("missing.jsonl", "out.png", "cannot read", id="missing-record"),
        pytest.param("good.jsonl", "no-dir/out.png", "cannot write", id="unwritable-output"),
    ],
)
def test_plot_file_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], record: str, output: str, message: str
) -> None:
    (tmp_path / "good.jsonl").write_text(json.dumps(LOAD) + "\n")
    assert plot_main([str(tmp_path / record), "-o", str(tmp_path / output)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("config", "args", "code"),
    [
        pytest.param(VIP, [], EXIT_OK, id="default-loopback"),
        pytest.param(
            "[controller]\nload_listen = 'tcp://*:5555'\n" + VIP, [], EXIT_CONFIG, id="wildcard"
        ),
        pytest.param(
            "[controller]\nload_listen = 'tcp://*:5555'\n" + VIP,
            ["--insecure-load-listen"],
            EXIT_OK,
            id="wildcard-insecure",
        ),
        pytest.param(
            "[controller]\nload_listen = 'ipc:///run/p4lb/load.sock'\n" + VIP, [], EXIT_OK, id="ipc"
        ),
        pytest.param(VIP, ["--load-listen", "tcp://[::1]:5555"], EXIT_OK, id="ipv6-loopback"),
    ],
)
def test_check_config_refuses_what_start_up_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: str, args: list[str], code: int
) -> None:
    assert controller_main(["--check-config", write(tmp_path, config), *args]) == code
    assert "Traceback" not in capsys.readouterr().err
