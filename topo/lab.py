"""A running balancer on Mininet, for the demo and the end-to-end tests (root only).

``Lab`` brings up the network with ``p4lb-switch``, one server app per server host inside its
own CPU-quota cgroup, an agent per server measuring that cgroup, and the controller; it gives
helpers to offer load, read the controller's record, inject CPU load and kill servers. Used as
a context manager it removes every process, cgroup, host and interface on exit, failure or not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topo.addressing import IPERF_PORT, VIP_IP, VIP_TCP_PORT, VIP_UDP_PORT, make_plan
from topo.cgroups import CpuGroup, cpu_groups
from topo.mininet_net import BIN, ModelNetwork, NetworkError, stop_process, wait_for
from topo.services import (
    ControllerKnobs,
    ServerSpec,
    agent_argv,
    client_argv,
    controller_argv,
    controller_toml,
    server_argv,
)

PYTHON = Path(sys.executable)
_lab_ids = iter(range(1, 1 << 30))


@dataclass(frozen=True)
class LabOptions:
    """What to run: server capacities (CPU share of a core), work per request, controller."""

    capacities: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)
    work_ms: float = 4.0
    knobs: ControllerKnobs = field(default_factory=ControllerKnobs)
    udp: bool = False
    iperf: bool = False
    """Also run `iperf3 -s` on every server behind a client-IP affinity VIP (IPERF_PORT)."""


@dataclass(frozen=True)
class ClientRun:
    """A load generator running on a client host."""

    host: str
    proc: subprocess.Popen[bytes]
    log: Path
    report: Path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON object line of ``path`` (missing file: none)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                out.append(value)
    return out


class Lab:
    """The balancer on a Mininet network (see the module docstring)."""

    def __init__(self, workdir: Path, options: LabOptions | None = None) -> None:
        self.workdir = workdir
        self.options = options or LabOptions()
        self.plan = make_plan(n_servers=len(self.options.capacities))
        self.servers = [
            ServerSpec(host, cpu, workers=2, work_ms=self.options.work_ms)
            for host, cpu in zip(self.plan.servers, self.options.capacities, strict=True)
        ]
        self.dips = [s.dip for s in self.servers]
        self.load_listen = f"ipc://{workdir}/load.sock"
        self.cgroup_parent = f"p4lb-lab-{os.getpid()}-{next(_lab_ids)}"
        self.net = ModelNetwork(workdir, self.plan)
        self.groups: dict[str, CpuGroup] = {}
        self.server_procs: dict[str, subprocess.Popen[bytes]] = {}
        self.agent_procs: dict[str, subprocess.Popen[bytes]] = {}
        self.controller: subprocess.Popen[bytes] | None = None
        self.records: list[Path] = []
        self.state_path = workdir / "controller-state.json"
        self._stack = contextlib.ExitStack()

    # -- life cycle

    def __enter__(self) -> Lab:
        try:
            self.start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def start(self) -> None:
        """Network, servers, agents and controller; returns once the VIP answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        quotas = {s.host.name: s.cpu for s in self.servers}
        self.groups = self._stack.enter_context(cpu_groups(self.cgroup_parent, quotas))
        self._stack.enter_context(self.net)
        for server in self.servers:
            self.start_server(server.host.name)
            if self.options.iperf:
                argv = ["iperf3", "--server", "--port", str(IPERF_PORT)]
                self.net.popen(server.host.name, argv, f"iperf3-{server.host.name}.log")
        wait_for(self._servers_ready, 30, "servers to listen")
        for server in self.servers:
            self.start_agent(server.host.name)
        self.start_controller(self.options.knobs.policy)
        wait_for(self._programmed, 60, "the controller's first rollout", interval=0.5)
        wait_for(self.probe, 60, "a first connection through the VIP", interval=0.5)

    def _server(self, host: str) -> ServerSpec:
        return next(s for s in self.servers if s.host.name == host)

    def start_server(self, host: str) -> None:
        """(Re)start the server app on ``host`` inside its cgroup."""
        ready = self.workdir / f"ready-{host}"
        ready.unlink(missing_ok=True)
        argv = [*server_argv(PYTHON, self._server(host), udp=self.options.udp)]
        argv += ["--ready-file", str(ready)]
        self.server_procs[host] = self.net.popen(
            host, argv, f"server-{host}.log", self.groups[host]
        )

    def _servers_ready(self) -> bool:
        for host, proc in self.server_procs.items():
            if proc.poll() is not None:
                raise NetworkError(f"server on {host} exited; see server-{host}.log")
        return all((self.workdir / f"ready-{h}").exists() for h in self.server_procs)

    def start_agent(self, host: str) -> None:
        """(Re)start the agent of ``host``, measuring its server's cgroup."""
        argv = agent_argv(
            BIN,
            self._server(host),
            self.load_listen,
            self.groups[host].agent_scope,
            self.options.knobs.report_interval,
        )
        self.agent_procs[host] = self.net.popen(host, argv, f"agent-{host}.log")

    def start_controller(
        self, policy: str, policy_params: tuple[tuple[str, float], ...] | None = None
    ) -> None:
        """Start the controller with ``policy`` (stopping a running one: a warm restart)."""
        if self.controller is not None:
            stop_process(self.controller, timeout=10.0)
        n = len(self.records)
        config = self.workdir / f"controller-{n}-{policy}.toml"
        knobs = dataclasses.replace(self.options.knobs, policy=policy)
        if policy_params is not None:
            knobs = dataclasses.replace(knobs, policy_params=policy_params)
        config.write_text(
            controller_toml(
                self.servers,
                self.load_listen,
                knobs,
                udp_vip=self.options.udp,
                iperf_vip=self.options.iperf,
            )
        )
        record = self.workdir / f"record-{n}-{policy}.jsonl"
        self.records.append(record)
        argv = controller_argv(
            BIN, config, self.net.switch_spec, self.net.topology_path, record=record
        )
        argv += ["--policy", policy, "--state", str(self.state_path)]
        self.controller = self.net.root_popen(argv, f"controller-{n}-{policy}.log")

    def check_controller(self) -> None:
        """Raise if the controller exited."""
        if self.controller is not None and self.controller.poll() is not None:
            code = self.controller.returncode
            raise NetworkError(f"controller exited with {code}; see its log in {self.workdir}")

    def _programmed(self) -> bool:
        from controller.switch.blocking import count_entries  # noqa: PLC0415 (root-only path)

        self.check_controller()
        # A Read without a stream: the lab takes no part in the controller's arbitration.
        address, device_id = self.net.p4runtime_address, self.net.device_id
        return count_entries(address, "dip_table", device_id=device_id) > 0

    def probe(self) -> bool:
        """Whether one connection through the VIP succeeds from the first client."""
        argv = client_argv(PYTHON, 1.0, 0.5, extra=["--timeout", "2"])
        out = self.net.cmd(self.plan.clients[0].name, " ".join(argv))
        try:
            return bool(json.loads(out.strip().splitlines()[-1])["made"] >= 1)
        except (ValueError, IndexError, KeyError):
            return False

    # -- load

    def client(
        self,
        host: str,
        rate: float,
        duration: float,
        *,
        name: str = "",
        extra: Sequence[str] = (),
        udp: bool = False,
    ) -> ClientRun:
        """Start a load generator on ``host`` against the VIP (TCP, or the UDP VIP)."""
        tag = name or f"{host}-{int(time.time() * 1000) % 10**8}"
        log, report = self.workdir / f"conns-{tag}.jsonl", self.workdir / f"report-{tag}.json"
        target = f"{VIP_IP}:{VIP_UDP_PORT if udp else VIP_TCP_PORT}"
        more = [*extra, "--json", str(report)] + (["--udp"] if udp else [])
        argv = client_argv(
            PYTHON, rate, duration, log=log, expected=self.dips, extra=more, target=target
        )
        proc = self.net.popen(host, argv, f"client-{tag}.log")
        return ClientRun(host, proc, log, report)

    def finish(self, run: ClientRun, timeout: float, interrupt: bool = False) -> dict[str, Any]:
        """Wait for ``run`` (SIGINT first if ``interrupt``) and return its JSON report."""
        if interrupt and run.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.proc.pid, signal.SIGINT)
        try:
            run.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_process(run.proc)
            raise NetworkError(f"client on {run.host} did not finish in {timeout:.0f}s") from None
        if not run.report.exists():
            raise NetworkError(f"client on {run.host} wrote no report (exit {run.proc.returncode})")
        report: dict[str, Any] = json.loads(run.report.read_text())
        return report

    def burn(self, host: str) -> subprocess.Popen[bytes]:
        """A CPU burner inside ``host``'s server cgroup (stop it with ``stop_process``)."""
        argv = [str(PYTHON), "-c", "while True: pass"]
        return self.net.popen(host, argv, f"burner-{host}.log", self.groups[host])

    def kill_server(self, host: str) -> None:
        """Kill the server app and the agent of ``host`` at once (SIGKILL)."""
        for proc in (self.server_procs[host], self.agent_procs[host]):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    # -- observing

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The controller's record events so far (all runs), optionally one kind."""
        out = [e for path in self.records for e in read_jsonl(path)]
        return [e for e in out if kind is None or e.get("kind") == kind]

    def weights(self, pool: str = "web") -> dict[str, int]:
        """The latest weights the controller recorded for ``pool`` (empty before any)."""
        for event in reversed(self.events("weights")):
            if event.get("pool") == pool and isinstance(event.get("weights"), dict):
                return {str(k): int(v) for k, v in event["weights"].items()}
        return {}

    def wait_weights(
        self, predicate: Callable[[dict[str, int]], bool], timeout: float, what: str
    ) -> dict[str, int]:
        """Poll the recorded weights until ``predicate`` holds; return them."""
        found: dict[str, int] = {}

        def check() -> bool:
            nonlocal found
            self.check_controller()
            found = self.weights()
            return bool(found) and predicate(found)

        try:
            wait_for(check, timeout, what, interval=0.25)
        except NetworkError as exc:
            raise NetworkError(f"{exc}; last weights {found!r}") from None
        return found
