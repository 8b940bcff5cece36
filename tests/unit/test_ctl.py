"""p4lb-ctl's pure parts: the status table, key=value parameters, the token file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from controller.shell.ctl import EXIT_USAGE, CtlError, format_status, main, make_token, parse_params

STATUS = {
    "started": True,
    "policy": {"name": "ratio", "params": {"gain": 0.5}},
    "active_slot": 2,
    "rollouts": 14,
    "backpressure": "slot 3: 12 connections not yet installed",
    "conn_entries": 340,
    "conn_table_full": False,
    "vips": [
        {
            "name": "web",
            "address": "10.0.0.100:80",
            "protocol": "tcp",
            "members": [
                {
                    "dip": "10.1.3.2:8080",
                    "state": "active",
                    "health": "up",
                    "cpu": 0.456,
                    "connections": 12,
                    "weight": 192,
                    "active_weight": 160,
                    "share": 0.625,
                    "report_age": 0.31,
                },
                {
                    "dip": "10.1.4.2:8080",
                    "state": "draining",
                    "health": "unknown",
                    "cpu": None,
                    "connections": None,
                    "weight": 0,
                    "active_weight": 96,
                    "share": 0.375,
                    "report_age": None,
                },
            ],
        }
    ],
}


def test_status_table_reads_at_a_glance() -> None:
    lines = format_status(STATUS).splitlines()
    assert lines[0].startswith("policy ratio (gain=0.5)   active slot 2   rollouts 14")
    assert "rollouts held: slot 3: 12 connections not yet installed" in lines[0]
    assert lines[2] == "VIP web  10.0.0.100:80/tcp"
    header, first, second = lines[3:6]
    assert header.split() == [
        "DIP",
        "STATE",
        "HEALTH",
        "CPU",
        "CONNS",
        "WEIGHT",
        "ACTIVE",
        "SHARE",
        "REPORT",
    ]
    assert first.split() == [
        "10.1.3.2:8080",
        "active",
        "up",
        "46%",
        "12",
        "192",
        "160",
        "62.5%",
        "0.3s",
    ]
    assert second.split() == [
        "10.1.4.2:8080",
        "draining",
        "unknown",
        "-",
        "-",
        "0",
        "96",
        "37.5%",
        "never",
    ]
    assert header.index("STATE") == first.index("active")  # columns line up


def test_policy_parameters_are_numbers() -> None:
    assert parse_params(["gain=0.5", "jump=2"]) == {"gain": 0.5, "jump": 2.0}
    for bad in ("gain", "=1", "gain=fast"):
        with pytest.raises(CtlError) as caught:
            parse_params([bad])
        assert caught.value.code == EXIT_USAGE


def test_make_token_creates_a_private_file_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    assert "new token" in make_token(path)
    token = path.read_text()
    assert len(token.strip()) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "left as it is" in make_token(path)
    assert path.read_text() == token


def test_make_token_alone_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--make-token", str(tmp_path / "t")]) == 0
    assert "new token" in capsys.readouterr().out


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == EXIT_USAGE
    assert "a COMMAND is required" in capsys.readouterr().err
