"""The agent's reachability log: one line per state change, plus each new handshake failure."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agent.pusher import ReportPusher

UP = (True, "controller reachable", False)
DOWN = (False, "controller unreachable (disconnected)", False)
AUTH = (False, "controller rejected our CURVE key", True)
PROTO = (False, "handshake with controller failed (keys or protocol)", True)


@pytest.mark.parametrize(
    ("events", "logged"),
    [
        ([UP, UP, DOWN, DOWN, UP], [UP, DOWN, UP]),
        # the controller restarted with CURVE: the failure after the disconnect is news
        ([UP, DOWN, PROTO, DOWN, PROTO, DOWN], [UP, DOWN, PROTO]),
        ([AUTH, DOWN, AUTH, PROTO, UP], [AUTH, PROTO, UP]),
        ([DOWN, AUTH, UP, AUTH], [DOWN, AUTH, UP, AUTH]),
    ],
)
def test_reachability_lines(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    events: list[tuple[bool, str, bool]],
    logged: list[tuple[bool, str, bool]],
) -> None:
    pusher = ReportPusher(f"ipc://{tmp_path}/nobody.sock")
    try:
        with caplog.at_level(logging.INFO, logger="agent.pusher"):
            for reachable, message, failure in events:
                pusher._set_reachable(reachable, message, failure)
    finally:
        pusher.close()
    assert [r.getMessage().split(": ")[0] for r in caplog.records] == [m for _, m, _ in logged]
