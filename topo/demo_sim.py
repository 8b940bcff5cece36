"""The demo in one process: the real controller and model, simulated servers and clients.

Same scenario as the Mininet run, on a ``task.Clock`` so it runs faster than real time: the
controller (``ControllerService``) drives the in-process ``p4model.Switch``; every simulated
connection sends real frames through the model (SYN, a request before the controller can have
learned it, and at the end the server's answer and the client's FIN), so a connection that
changes DIP, or an answer not rewritten back to the VIP, is caught. Servers are FIFO CPU queues
with the same quotas; they report load as agents would, through ``ingest_report``.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import defer, task

import p4model
from agent.wire import LoadReport, encode_report
from controller.config import Config, parse_config
from controller.routing import parse_topology, routes_for_switch
from controller.shell.app import ControllerService
from controller.shell.record import Recorder
from controller.switch.model_client import ModelSwitchClient
from topo.addressing import DIP_PORT, VIP_IP, VIP_TCP_PORT, HostAddress, make_plan, topology_json
from topo.apps.client import request_times
from topo.apps.outcome import ConnectionRecord
from topo.demo_plan import REQUEST_OVERHEAD_MS, DemoPlan
from topo.frames import ACK, FIN, PSH, SYN, TCP, FlowKey, build_frame, read_flow
from topo.mininet_net import NetworkError
from topo.services import ControllerKnobs, ServerSpec, controller_toml
from topo.simservers import SimServer
from topo.summary import Phase, RunData, UtilSample

STEP = 0.01
"""Simulated seconds per step."""


@dataclass
class _Conn:
    """A simulated connection in flight."""

    client: HostAddress
    flow: FlowKey
    server: int
    start: float
    answered: int = 0


class _Simulation:
    """Everything one simulated run holds."""

    def __init__(self, plan: DemoPlan, workdir: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        self.clock = task.Clock()
        self.switch = p4model.Switch(clock=self.clock.seconds)
        self.net = make_plan(n_servers=len(plan.capacities))
        self.specs = [
            ServerSpec(h, c, work_ms=plan.work_ms)
            for h, c in zip(self.net.servers, plan.capacities, strict=True)
        ]
        work = (plan.work_ms + REQUEST_OVERHEAD_MS) / 1000.0
        self.servers = [SimServer(s.dip, s.cpu, work) for s in self.specs]
        self.by_port = {s.host.switch_port: i for i, s in enumerate(self.specs)}
        topology = parse_topology(topology_json(self.net))
        self.routes = routes_for_switch(topology, self.net.switch)
        self.times = request_times(plan.requests, plan.lifetime)
        self.service: ControllerService | None = None
        self.records_paths: list[Path] = []
        self.conns: dict[int, _Conn] = {}
        self.due: list[tuple[float, int, str]] = []
        self.records: list[ConnectionRecord] = []
        self.samples: list[UtilSample] = []
        self.seq = 0

    def config(self, policy: str) -> Config:
        """The controller's configuration with ``policy``."""
        params = self.plan.policy_params if policy == self.plan.policy else ()
        knobs = ControllerKnobs(policy=policy, policy_params=params)
        text = controller_toml(self.specs, "inproc://p4lb-demo", knobs)
        return parse_config(text)

    def start_controller(self, policy: str) -> None:
        """Start (or restart, attaching warm to the switch) the controller with ``policy``."""
        if self.service is not None:
            self.settle(defer.ensureDeferred(self.service.stop()), "controller stop")
        path = self.workdir / f"record-{len(self.records_paths)}-{policy}.jsonl"
        self.records_paths.append(path)
        self.service = ControllerService(
            self.clock,
            self.config(policy),
            ModelSwitchClient(self.switch, self.clock),
            clock=self.clock.seconds,
            recorder=Recorder(path),
            policy_name=policy,
            routes=self.routes,
            state_path=self.workdir / "controller-state.json",
        )
        self.settle(defer.ensureDeferred(self.service.start()), "controller start")

    def settle(self, deferred: defer.Deferred[Any], what: str) -> None:
        """Advance the clock until ``deferred`` fires; raise if it failed or never fires."""
        failures: list[Any] = []
        deferred.addErrback(failures.append)
        for _ in range(1000):
            if deferred.called:
                break
            self.clock.advance(STEP)
        if failures or not deferred.called:
            detail = failures[0].getErrorMessage() if failures else "did not finish"
            raise NetworkError(f"{what}: {detail}")

    def _client_packet(self, conn: _Conn, flags: int) -> bool:
        """Send a client packet; whether it reached the connection's server."""
        client = conn.client
        frame = build_frame(client.mac, client.switch_mac, conn.flow, flags=flags)
        return self._server_of(self.switch.process(client.switch_port, frame)) == conn.server

    def _server_of(self, out: list[tuple[int, bytes]]) -> int | None:
        if len(out) != 1 or out[0][0] not in self.by_port:
            return None
        server = self.by_port[out[0][0]]
        flow = read_flow(out[0][1])
        return server if f"{flow.dst_ip}:{flow.dst_port}" == self.specs[server].dip else None

    def _answer_returns(self, conn: _Conn) -> bool:
        """Send the server's answer; whether it left towards the client from the VIP."""
        host = self.specs[conn.server].host
        answer = FlowKey(host.ip, conn.client.ip, DIP_PORT, conn.flow.src_port, TCP)
        frame = build_frame(host.mac, host.switch_mac, answer, flags=ACK | PSH)
        out = self.switch.process(host.switch_port, frame)
        expected = FlowKey(VIP_IP, conn.client.ip, VIP_TCP_PORT, conn.flow.src_port, TCP)
        return (
            len(out) == 1
            and out[0][0] == conn.client.switch_port
            and read_flow(out[0][1]) == expected
        )

    def open(self, index: int) -> None:
        """A new connection from client ``index % 2``: SYN, then its first request at once."""
        now = self.clock.seconds()
        client = self.net.clients[index % len(self.net.clients)]
        sport = 20000 + (index // len(self.net.clients)) % 40000
        flow = FlowKey(client.ip, VIP_IP, sport, VIP_TCP_PORT, TCP)
        syn = build_frame(client.mac, client.switch_mac, flow, flags=SYN)
        server = self._server_of(self.switch.process(client.switch_port, syn))
        if server is None:
            self.records.append(ConnectionRecord(now, "failed", None, 0.0, 0, "SYN dropped"))
            return
        conn = _Conn(client, flow, server, now)
        self.conns[index] = conn
        self.servers[server].connect(index)
        self.request(index)

    def request(self, index: int) -> None:
        """Connection ``index`` sends its next request (the packet goes through the switch)."""
        conn = self.conns[index]
        if not self._client_packet(conn, ACK | PSH):
            self.end(index, "misrouted")
            return
        self.servers[conn.server].request(index)

    def answered(self, index: int) -> None:
        """The server answered ``index``'s request: the answer goes back through the switch."""
        conn = self.conns.get(index)
        if conn is None:
            return
        if not self._answer_returns(conn):
            self.end(index, "corrupt")
            return
        conn.answered += 1
        now = self.clock.seconds()
        if conn.answered < len(self.times):
            next_at = max(now, conn.start + self.times[conn.answered])
            heapq.heappush(self.due, (next_at, index, "request"))
        else:
            heapq.heappush(self.due, (max(now, conn.start + self.plan.lifetime), index, "close"))

    def close(self, index: int) -> None:
        """The client closes ``index`` (FIN through the switch)."""
        conn = self.conns[index]
        self.end(index, "ok" if self._client_packet(conn, FIN | ACK) else "misrouted")

    def end(self, index: int, outcome: str) -> None:
        """Record how ``index`` ended and forget it."""
        conn = self.conns.pop(index)
        self.servers[conn.server].close(index)
        latency = self.clock.seconds() - conn.start
        dip = self.specs[conn.server].dip
        self.records.append(ConnectionRecord(conn.start, outcome, dip, latency, conn.answered))

    def run_due(self) -> None:
        """Requests and closes whose time has come."""
        now = self.clock.seconds()
        while self.due and self.due[0][0] <= now:
            _, index, what = heapq.heappop(self.due)
            if index in self.conns:
                (self.request if what == "request" else self.close)(index)

    def report(self) -> None:
        """Every server reports its load, as its agent would."""
        assert self.service is not None
        now = self.clock.seconds()
        for server in self.servers:
            reading = server.reading(now)
            self.samples.append(UtilSample(now, server.dip, reading.cpu))
            report = LoadReport(
                server.dip, self.seq, now, reading.cpu, reading.conns, reading.conn_rate
            )
            self.service.ingest_report(encode_report(report))
        self.seq += 1


def run_simulated(plan: DemoPlan, workdir: Path, say: Callable[[str], None]) -> RunData:
    """Run the scenario on a simulated clock; returns what it observed."""
    sim = _Simulation(plan, workdir)
    sim.clock.advance(1.0)
    sim.start_controller("equal")
    interval = sim.config("equal").controller.report_interval
    start = sim.clock.seconds()
    switch_at, end = start + plan.equal_duration, start + plan.duration
    phases = [Phase("equal", "equal", start, switch_at)]
    events: list[dict[str, Any]] = [{"t": start, "kind": "phase", "name": "equal", "demo": True}]
    next_report, next_progress, owed, index = start, start + 10.0, 0.0, 0
    while sim.clock.seconds() < end or sim.conns:
        now = sim.clock.seconds()
        if now >= switch_at and len(phases) == 1:
            # Live, as `PUT /v1/policy` does it: no restart, no slot reset.
            assert sim.service is not None
            sim.service.set_policy(plan.policy, dict(plan.policy_params))
            phases.append(Phase("policy", plan.policy, now, end))
            events.append({"t": now, "kind": "phase", "name": plan.policy, "demo": True})
            say(f"[{now - start:5.0f}s] policy {plan.policy!r} set live")
        if now < end:
            owed += plan.rate * STEP
            while owed >= 1.0:
                owed -= 1.0
                sim.open(index)
                index += 1
        sim.run_due()
        for server in sim.servers:
            for conn in server.advance(STEP):
                sim.answered(conn)
        if now >= next_report:
            next_report += interval
            sim.report()
        if now >= next_progress:
            next_progress += 10.0
            broken = sum(1 for r in sim.records if r.outcome != "ok")
            util = " ".join(
                f"{s.dip.split(':')[0]}={s.utilisation:.2f}"
                for s in sim.samples[-len(sim.servers) :]
            )
            policy = phases[-1].policy
            say(f"[{now - start:5.0f}s] {policy:<8} conns {index:6d} broken {broken} util {util}")
        if now > end + 300:
            raise NetworkError("simulated connections did not finish 300 s after the load")
        sim.clock.advance(STEP)
    assert sim.service is not None
    sim.settle(defer.ensureDeferred(sim.service.stop()), "controller stop")
    for path in sim.records_paths:
        events += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    events.sort(key=lambda e: float(e.get("t", 0.0)))
    return RunData(
        dips=tuple(s.dip for s in sim.specs),
        phases=tuple(phases),
        records=tuple(sim.records),
        samples=tuple(sim.samples),
        events=tuple(events),
    )
