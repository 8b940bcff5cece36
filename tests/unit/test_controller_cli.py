"""p4lb-controller's command line: config checking, exit codes, overrides."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from controller.config import ConfigError, load_config
from controller.shell.cli import EXIT_CONFIG, EXIT_OK, apply_overrides, build_parser, main

EXAMPLE = Path(__file__).resolve().parents[2] / "controller" / "examples" / "lb.toml"

BAD = """
[controller]
weight_bits = 40
[[vip]]
ip = "10.0.0.1"
port = 80
  [[vip.dip]]
  ip = "10.1.3.2"
  port = 70000
"""


def test_check_config_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check-config", str(EXAMPLE)]) == EXIT_OK
    assert "OK (2 VIPs, 5 DIPs, policy ratio)" in capsys.readouterr().out


def test_check_config_prints_every_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    assert main(["--check-config", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "2 problem(s)" in err
    assert "controller.weight_bits: 40 is not an integer in [1, 16]" in err
    assert "vip[0].dip[0].port: 70000 is not a port" in err


def test_bad_config_stops_the_controller_before_any_switch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    assert main(["--config", str(path), "--switch", "thrift://127.0.0.1:1"]) == EXIT_CONFIG
    assert "vip[0].dip[0].port" in capsys.readouterr().err


def test_missing_config_is_a_usage_error() -> None:
    assert main([]) == EXIT_CONFIG


def test_command_line_overrides_the_file_and_is_validated() -> None:
    config = load_config(EXAMPLE)
    args = build_parser().parse_args(
        ["--config", "x", "--policy", "cpu", "--quiet-period", "5", "--metrics", ""]
    )
    changed = apply_overrides(config, args)
    assert changed.controller.policy == "cpu"
    assert changed.controller.quiet_period == 5.0
    assert changed.controller.metrics_listen == ""
    assert changed.vips == config.vips
    bad = argparse.Namespace(**{**vars(args), "policy": "best", "min_rollout_interval": -1.0})
    with pytest.raises(ConfigError) as info:
        apply_overrides(config, bad)
    assert len(info.value.problems) == 2
    assert "--policy: 'best' is not one of" in info.value.problems[0]


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (["--switch", "p4rt://127.0.0.1:1", "--p4info", "{p4info}"], "go together"),
        (["--switch", "p4rt://127.0.0.1:1", "--device-config", "{json}"], "go together"),
        (
            ["--switch", "model", "--p4info", "{p4info}", "--device-config", "{json}"],
            "need a p4rt:// switch",
        ),
        (
            [
                "--switch",
                "p4rt://127.0.0.1:1",
                "--p4info",
                "{missing}",
                "--device-config",
                "{json}",
            ],
            "no such file",
        ),
        (["--switch", "p4rt://127.0.0.1:1", "--election-id", "0"], "--election-id: 0"),
        (["--switch", "p4rt://127.0.0.1:1?device_id=x"], "device_id=N"),
        (["--switch", "p4rt://127.0.0.1:1?election_id=2", "--election-id", "3"], "differ"),
        (["--switch", "thrift://127.0.0.1:1", "--election-id", "3"], "needs a p4rt://"),
    ],
)
def test_p4runtime_options_are_checked_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], problem: str
) -> None:
    files = {"p4info": tmp_path / "lb.p4info.txt", "json": tmp_path / "lb.json"}
    for path in files.values():
        path.write_text("{}")
    names = {**{k: str(v) for k, v in files.items()}, "missing": str(tmp_path / "nope.txt")}
    argv = ["--config", str(EXAMPLE), *(arg.format(**names) for arg in extra)]
    assert main(argv) == EXIT_CONFIG
    assert problem in capsys.readouterr().err
