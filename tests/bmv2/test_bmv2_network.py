"""The field path for real: p4-utils NetworkAPI + simple_switch + the controller on Thrift.

A small p4-utils topology (client h1, servers h2 and h3, ``l3`` addressing) runs
``p4src/loadbalancer.p4`` in simple_switch; ``p4lb-controller --switch thrift://...`` installs
routes, the VIP and the DIP table through p4-utils' SimpleSwitchThriftAPI and learns connections
from BMv2's digests. Real TCP through the VIP must work, learned connections must reach
``conn_table``, and draining a server mid-traffic (its agent reports ``--state drain``) forces a
rollout that breaks no connection. Skipped unless root, simple_switch, p4c, Mininet, p4-utils
and BMv2's Python modules are all there. The switch gets its own name, device id and Thrift
port, so it does not meet another network on the machine.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from topo.addressing import NetworkPlan, make_plan
from topo.lab import read_jsonl
from topo.mininet_net import BIN, host_popen, stop_process, unavailable_reason, wait_for
from topo.services import (
    ControllerKnobs,
    ServerSpec,
    agent_argv,
    client_argv,
    controller_argv,
    controller_toml,
    server_argv,
)


def _missing() -> str | None:
    reason = unavailable_reason()
    if reason is not None:
        return reason
    for tool in ("p4c", "simple_switch"):
        if shutil.which(tool) is None:
            return f"{tool} not on PATH"
    for module in ("p4utils", "networkx"):
        if importlib.util.find_spec(module) is None:
            return f"Python module {module} missing (p4-utils and its dependencies)"
    from controller.switch.api import SwitchError
    from controller.switch.bmv2_path import ensure_bmv2_modules

    try:
        ensure_bmv2_modules()
    except SwitchError as exc:
        return str(exc)
    return None


REASON = _missing()
pytestmark = [pytest.mark.bmv2, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

PYTHON = Path(sys.executable)
DEVICE_ID = 100 + os.getpid() % 150
"""Unique enough on one machine: names the switch, its interfaces and its nanomsg sockets."""
CLIENT_SECONDS = 12.0
CONN = ["--requests", "4", "--lifetime", "3", "--timeout", "15", "--size", "256"]
"""Each connection lives ~3 s, so many of them span the drain rollout."""
LEARNED_BEFORE_DRAIN = 16


@dataclass
class Field:
    """The running topology and what the test started in it."""

    workdir: Path
    plan: NetworkPlan
    servers: list[ServerSpec]
    net: Any
    thrift_port: int
    load_listen: str
    record: Path
    procs: list[subprocess.Popen[bytes]]

    def host_pid(self, name: str) -> int:
        """The pid holding host ``name``'s network namespace."""
        return int(self.net.net.get(name).pid)

    def events(self, kind: str) -> list[dict[str, Any]]:
        """The controller's record events of ``kind`` so far."""
        return [e for e in read_jsonl(self.record) if e.get("kind") == kind]

    def check_controller(self) -> None:
        """Fail at once if the controller exited."""
        controller = self.procs[0]
        if controller.poll() is not None:
            log = (self.workdir / "controller.log").read_text(errors="replace")[-3000:]
            pytest.fail(f"controller exited with {controller.returncode}:\n{log}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def field(tmp_path: Path) -> Iterator[Field]:
    """Network, two servers and the controller on Thrift; everything stopped afterwards."""
    from topo.network import build_network

    plan = make_plan(n_clients=1, n_servers=2, switch=f"b{DEVICE_ID}", device_id=DEVICE_ID)
    servers = [ServerSpec(host, 1.0, workers=2, work_ms=1.0) for host in plan.servers]
    ipc = [Path(f"/tmp/bmv2-{DEVICE_ID}-notifications.ipc"), Path(f"/tmp/bm-{DEVICE_ID}-log.ipc")]
    ours = [path for path in ipc if not path.exists()]
    thrift_port = _free_port()
    net = build_network(tmp_path, plan=plan, thrift_port=thrift_port)
    procs: list[subprocess.Popen[bytes]] = []
    load_listen = f"ipc://{tmp_path}/load.sock"
    state = Field(
        tmp_path, plan, servers, net, thrift_port, load_listen, tmp_path / "rec.jsonl", procs
    )
    try:
        net.startNetwork()
        knobs = ControllerKnobs(policy="static", min_rollout_interval=0.5, quiet_period=1.0)
        config = tmp_path / "controller.toml"
        config.write_text(controller_toml(servers, load_listen, knobs))
        argv = controller_argv(
            BIN,
            config,
            f"thrift://127.0.0.1:{thrift_port}",
            tmp_path / "topology.json",
            record=state.record,
        )
        with (tmp_path / "controller.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [*argv, "--switch-name", plan.switch],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        for server in servers:
            ready = tmp_path / f"ready-{server.host.name}"
            argv = [*server_argv(PYTHON, server), "--ready-file", str(ready)]
            log_path = tmp_path / f"server-{server.host.name}.log"
            procs.append(host_popen(state.host_pid(server.host.name), argv, log_path))
        wait_for(
            lambda: all((tmp_path / f"ready-{s.host.name}").exists() for s in servers),
            30,
            "servers to listen",
        )

        def programmed() -> bool:
            state.check_controller()
            return bool(state.events("rollout"))

        wait_for(programmed, 30, "the controller's first rollout over Thrift", 0.1)
        yield state
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        net.stopNetwork()
        for path in ours:
            path.unlink(missing_ok=True)


def _conn_entries(thrift_port: int) -> int:
    from controller.switch.thrift_client import thrift_api_class

    with contextlib.redirect_stdout(None):
        api = thrift_api_class()(thrift_port, thrift_ip="127.0.0.1")
        return int(api.table_num_entries("conn_table"))


def test_tcp_through_the_vip_is_learned_and_survives_a_drain_rollout(field: Field) -> None:
    client_host, (kept, drained) = field.plan.clients[0], field.servers
    report = field.workdir / "client.json"
    argv = client_argv(PYTHON, 10.0, CLIENT_SECONDS, extra=[*CONN, "--json", str(report)])
    started = time.time()
    client = host_popen(field.host_pid(client_host.name), argv, field.workdir / "client.log")
    field.procs.append(client)

    # digests arrive and the controller installs the connections in conn_table
    wait_for(lambda: _conn_entries(field.thrift_port) > 0, 20, "conn_table entries", 0.2)

    # ... and enough of them (about half on the server to drain) that many span the rollout
    def learned() -> int:
        return sum(int(e["count"]) for e in field.events("learn"))

    wait_for(lambda: learned() >= LEARNED_BEFORE_DRAIN, 20, "learned connections", 0.1)
    rollouts_before = len(field.events("rollout"))

    # drain one server mid-traffic: its weight goes to 0 and a new version rolls out
    agent = agent_argv(BIN, drained, field.load_listen, "system", 0.5)
    field.procs.append(
        host_popen(
            field.host_pid(drained.host.name),
            [*agent, "--state", "drain"],
            field.workdir / "agent.log",
        )
    )

    def drained_out() -> bool:
        field.check_controller()
        weights = [e["weights"] for e in field.events("weights")]
        return bool(weights) and weights[-1].get(drained.dip) == 0

    wait_for(drained_out, 20, f"{drained.dip} drained to weight 0", 0.1)
    wait_for(lambda: len(field.events("rollout")) > rollouts_before, 10, "the drain rollout", 0.1)
    drain_rollout = float(field.events("rollout")[-1]["t"])

    client.wait(CLIENT_SECONDS + 40)
    finished = time.time()
    result = json.loads(report.read_text())
    assert result["started"] > 0
    assert result["broken"] == 0, (result, field.workdir)
    assert result["made"] == result["started"], result
    assert result["failed"] == 0 and result["reset"] == 0, result
    # both servers had connections, and the rollout happened while the client ran
    assert set(result["by_server"]) == {kept.dip, drained.dip}, result
    assert started < drain_rollout < finished
    assert learned() >= result["started"] > 0  # every connection was learned
