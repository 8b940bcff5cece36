"""Per-packet-consistency simulation: controller + in-process model + fake agents on a task.Clock.

Simulated TCP and UDP connections send real frames through `p4model.Switch.process`; every packet
checks that its connection still reaches the DIP its first packet reached (the invariant the
rollout protocol exists for), and, for the TCP VIP, that a client's new connection reaches its
previous connection's DIP while its affinity lives (a connection of it alive, or ended less than
`affinity_timeout` ago: the controller's pin lasts at least that long). With `affinity = "none"`
that second check is expected to fire; it shows the check is live. Fake agents report loads
that change every phase, so the policy
keeps asking for new weights and the controller keeps rolling out. Faults (write latency and
failures, late and reordered digests) come from `controller.switch.faults.FaultySwitch`.
Used by tests/scenario and `python -m bench pcc`.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from twisted.internet import defer, task
from twisted.python.failure import Failure

import p4model
from agent.wire import LoadReport, encode_report
from controller.config import Config, ControllerSettings, DipConfig, VipConfig
from controller.routing import Route
from controller.shell.app import ControllerService
from controller.switch.faults import FaultySwitch
from controller.switch.model_client import ModelSwitchClient
from p4src.contract import VERSION_CONFIG
from policy.buckets import PrefixEntry, bucket_owner
from topo.frames import ACK, FIN, PSH, SYN, TCP, UDP, FlowKey, build_frame, read_flow

CLIENT_PORT = 1
CLIENT_NET = "10.0.1.0/24"
CLIENT_MAC = "00:00:0a:00:01:02"
SWITCH_MAC = "00:01:0a:00:01:01"
VIP_IP = "10.0.0.100"


@dataclass(frozen=True)
class SimOptions:
    """Knobs of one simulated run (every field has a default)."""

    connections: int = 1000
    """Client connections, opened uniformly over the load phases (default 1000)."""
    rollouts: int = 10
    """Committed rollouts to wait for; one load phase each (default 10)."""
    dips: int = 4
    """DIP hosts behind each VIP (default 4)."""
    udp_fraction: float = 0.3
    """Fraction of connections that are UDP flows (default 0.3)."""
    long_fraction: float = 0.2
    """Fraction of connections sending 10-29 packets instead of 2-7 (default 0.2)."""
    phase: float = 1.5
    """Seconds each load phase lasts (default 1.5)."""
    write_latency: tuple[float, float] = (0.0, 0.0)
    """Range of seconds added to every switch write (default none)."""
    write_failure_rate: float = 0.0
    """Probability that a switch write fails (default 0.0)."""
    digest_delay: tuple[float, float] = (0.0, 0.05)
    """Range of seconds each digest is delayed, reordering them (default 0 to 50 ms)."""
    conn_table_size: int = 65536
    """conn_table capacity of the model (default 65536, as settings.p4)."""
    policy: str = "cpu"
    """Controller policy (default "cpu": it reacts to every load change)."""
    seed: int = 1
    """Seed of every random choice of the run (default 1)."""
    clients: int = 248
    """Distinct client addresses (10.0.1.2 upwards; default 248)."""
    affinity: str = "none"
    """The TCP VIP's affinity, "none" or "client_ip" (default "none")."""
    affinity_timeout: float = 30.0
    """The TCP VIP's affinity_timeout, and the window of the affinity check (default 30 s)."""
    step: float = 0.01
    """Simulated clock step in seconds (default 0.01)."""
    settings: ControllerSettings = field(
        default_factory=lambda: ControllerSettings(
            min_rollout_interval=1.0, quiet_period=1.0, report_interval=0.5, min_weight_change=0.0
        )
    )
    """Controller settings; `policy` above overrides theirs."""


@dataclass
class SimConnection:
    """One client connection and what the switch did with its packets."""

    flow: FlowKey
    due: list[float]
    dip: str | None = None
    packets: int = 0
    dropped: int = 0
    broken: bool = False
    expected: dict[str, float] | None = None


@dataclass
class ClientTrail:
    """A client's last TCP DIP and when its latest connection ends (for the affinity check)."""

    dip: str
    ends: float


@dataclass
class SimResult:
    """Outcome of a run."""

    connections: int = 0
    packets: int = 0
    rollouts: int = 0
    aborted: int = 0
    broken: int = 0
    dropped: int = 0
    affinity_checked: int = 0
    """TCP connections that started while their client's affinity lived."""
    affinity_broken: int = 0
    """Of those, connections that reached another DIP than the client's previous one."""
    share_error_pp: float = 0.0
    observed: dict[str, float] = field(default_factory=dict)
    expected: dict[str, float] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)


def sim_config(options: SimOptions) -> Config:
    """One TCP VIP and one UDP VIP sharing the DIP hosts (ports 8080 and 5353)."""
    tcp = tuple(DipConfig(f"10.0.{2 + i}.2", 8080, 1) for i in range(options.dips))
    udp = tuple(DipConfig(f"10.0.{2 + i}.2", 5353, 1) for i in range(options.dips))
    web = VipConfig("web", VIP_IP, 80, "tcp", tcp, options.affinity, options.affinity_timeout)
    vips = (web, VipConfig("dns", VIP_IP, 53, "udp", udp))
    return Config(replace(options.settings, policy=options.policy), vips)


def sim_routes(dips: int) -> list[Route]:
    """Client subnet on port 1, DIP host i on port 2 + i."""
    routes = [Route(CLIENT_NET, CLIENT_PORT, SWITCH_MAC, CLIENT_MAC)]
    for i in range(dips):
        mac = f"00:00:0a:00:{2 + i:02x}:02"
        routes.append(Route(f"10.0.{2 + i}.0/24", 2 + i, SWITCH_MAC, mac))
    return routes


class Simulation:
    """Everything of one run, wired on one task.Clock."""

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self.rng = random.Random(options.seed)
        self.clock = task.Clock()
        settings = p4model.load_settings()
        settings = replace(settings, conn_table_size=options.conn_table_size)
        self.switch = p4model.Switch(settings, clock=self.clock.seconds)
        self.config = sim_config(options)
        self.service = self.make_service()
        self.conns: list[SimConnection] = []
        self._flows: set[FlowKey] = set()
        self._queue: list[tuple[float, int, int]] = []
        self._seq = 0
        self._report_seq = 0
        self._cpu: dict[str, float] = {}
        self.dead_agents: set[str] = set()
        """DIPs whose agents stopped reporting (their servers may be dead too)."""
        self.intruder: Callable[[float], Iterable[bytes]] | None = None
        """Messages someone else sends to the load feed with each round of reports."""
        self.result = SimResult()
        self._share_cache: dict[tuple[int, int, int], dict[str, float]] = {}
        self.trails: dict[str, ClientTrail] = {}
        self.rollouts_before_restart = 0
        self._baseline = 0
        self.aborted_before_restart = 0

    def make_service(self, state_path: Any = None) -> ControllerService:
        """A controller on the shared model (a fresh one after a simulated restart)."""
        o = self.options
        inner = ModelSwitchClient(self.switch, self.clock)
        self.model_client = inner
        client = FaultySwitch(
            inner,
            self.clock,
            random.Random(self.rng.random()),
            write_latency=o.write_latency,
            write_failure_rate=o.write_failure_rate,
            digest_delay=o.digest_delay,
        )
        dataplane = replace(self.switch.settings, conn_table_size=o.conn_table_size)
        return ControllerService(
            self.clock,
            self.config,
            client,
            routes=sim_routes(o.dips),
            dataplane=dataplane,
            state_path=state_path,
        )

    def start(self) -> None:
        """Start the controller (advancing the clock until its start-up writes finish)."""
        started = defer.ensureDeferred(self.service.start())
        while not started.called:
            self.clock.advance(self.options.step)
        if isinstance(started.result, Failure):
            started.result.raiseException()
        self._baseline = self.service.core.rollouts.counters.rollouts

    def restart(self, downtime: float, state_path: Any = None) -> None:
        """Stop the controller, keep sending packets for `downtime` s, start a fresh controller."""
        stopped = defer.ensureDeferred(self.service.stop())
        while not stopped.called:
            self.clock.advance(self.options.step)
        self.rollouts_before_restart += (
            self.service.core.rollouts.counters.rollouts - self._baseline
        )
        self.aborted_before_restart += self.service.core.rollouts.counters.rollouts_aborted
        self.advance(self.clock.seconds() + downtime, reports=False)
        self.service = self.make_service(state_path)
        self.start()

    def restart_switch(self) -> None:
        """The switch restarts: same program, every table and register empty."""
        fresh = p4model.Switch(self.switch.settings, clock=self.clock.seconds)
        self.switch = fresh
        self.model_client.replace_switch(fresh)

    def probe(self, sport: int) -> str | None:
        """Where a new TCP connection's first packet goes now (None: dropped); the probe's
        connection is not tracked."""
        flow = FlowKey("10.0.1.1", VIP_IP, sport, 80, TCP)
        out = self.switch.process(CLIENT_PORT, build_frame(CLIENT_MAC, SWITCH_MAC, flow, flags=SYN))
        if len(out) != 1:
            return None
        seen = read_flow(out[0][1])
        return f"{seen.dst_ip}:{seen.dst_port}"

    def crash(self, downtime: float, state_path: Any = None) -> None:
        """Kill the controller (no clean stop, no journal), keep sending packets for
        `downtime` s while the switch applies what it was sent, start a fresh controller."""
        self.service.halt()
        self.rollouts_before_restart += (
            self.service.core.rollouts.counters.rollouts - self._baseline
        )
        self.aborted_before_restart += self.service.core.rollouts.counters.rollouts_aborted
        self.advance(self.clock.seconds() + downtime, reports=False)
        self.service = self.make_service(state_path)
        self.start()

    # -- workload

    def open_connections(
        self, count: int, start: float, end: float, *, tcp_port: int | None = None
    ) -> None:
        """Schedule `count` connections starting uniformly in [start, end), each with a 5-tuple
        no other simulated connection uses (two sharing one would be one connection to the
        switch, and counted as broken whatever the balancer does); with `tcp_port`, all are TCP
        connections to that port of the VIP address."""
        o = self.options
        for _ in range(count):
            t0 = self.rng.uniform(start, end)
            udp = tcp_port is None and self.rng.random() < o.udp_fraction
            flow = self._new_flow(udp, tcp_port or 80)
            long = self.rng.random() < o.long_fraction
            n = self.rng.randrange(10, 30) if long else self.rng.randrange(2, 8)
            gap = self.rng.uniform(0.2, 1.0)
            conn = SimConnection(flow, [t0 + k * gap for k in range(n)])
            self.conns.append(conn)
            self._push(t0, len(self.conns) - 1, 0)

    def _new_flow(self, udp: bool, tcp_port: int) -> FlowKey:
        while True:  # the space holds millions of tuples per protocol: redraws are rare
            sport = self.rng.randrange(1024, 65535)
            src = f"10.0.1.{2 + self.rng.randrange(self.options.clients)}"
            flow = FlowKey(src, VIP_IP, sport, 53 if udp else tcp_port, UDP if udp else TCP)
            if flow not in self._flows:
                self._flows.add(flow)
                return flow

    def _push(self, when: float, index: int, k: int) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, index * 1024 + k))

    def send_due(self, now: float) -> None:
        """Send every packet due by `now`."""
        while self._queue and self._queue[0][0] <= now:
            _, _, ref = heapq.heappop(self._queue)
            index, k = divmod(ref, 1024)
            conn = self.conns[index]
            self._send(conn, k)
            if k + 1 < len(conn.due):
                self._push(conn.due[k + 1], index, k + 1)

    def _send(self, conn: SimConnection, k: int) -> None:
        last = k == len(conn.due) - 1
        flags = SYN if k == 0 else (FIN | ACK if last else PSH | ACK)
        frame = build_frame(
            CLIENT_MAC,
            SWITCH_MAC,
            conn.flow,
            flags=flags if conn.flow.protocol == TCP else 0,
            payload=b"x" * 16,
        )
        out = self.switch.process(CLIENT_PORT, frame)
        self.result.packets += 1
        conn.packets += 1
        if len(out) != 1:
            conn.dropped += 1
            self.result.dropped += 1
            return
        seen = read_flow(out[0][1])
        dip = f"{seen.dst_ip}:{seen.dst_port}"
        if conn.dip is None:
            conn.dip = dip
            conn.expected = self._expected_share(conn.flow.protocol)
            if conn.flow.protocol == TCP:
                self._check_affinity(conn, dip)
        elif dip != conn.dip and not conn.broken:
            conn.broken = True
            self.result.broken += 1

    def _check_affinity(self, conn: SimConnection, dip: str) -> None:
        """A client's connection that starts while its affinity lives must reach its DIP."""
        now = self.clock.seconds()
        trail = self.trails.get(conn.flow.src_ip)
        if trail is not None and now <= trail.ends + self.options.affinity_timeout:
            self.result.affinity_checked += 1
            if dip != trail.dip:
                self.result.affinity_broken += 1
        ends = conn.due[-1] if trail is None else max(trail.ends, conn.due[-1])
        self.trails[conn.flow.src_ip] = ClientTrail(dip, ends)

    def _expected_share(self, protocol: int) -> dict[str, float]:
        """Each DIP's share of the hash space in the active slot (from the controller's shadow)."""
        rollouts = self.service.core.rollouts
        slot = self.switch.table_get_default(VERSION_CONFIG)[1][0]
        pool = 0 if protocol == TCP else 1
        key = (id(rollouts), slot, rollouts.counters.rollouts * 2 + pool)
        cached = self._share_cache.get(key)
        if cached is None:
            bits = self.switch.settings.hash_bits
            targets: list[str] = []
            entries: list[PrefixEntry] = []
            for bucket, target in rollouts.table.shadow.content(slot).items():
                if bucket.pool == pool:
                    if target.name not in targets:
                        targets.append(target.name)
                    entries.append(
                        PrefixEntry(bucket.value, bucket.prefix_len, targets.index(target.name))
                    )
            owners = bucket_owner(entries, bits) if entries else np.full(1, -1)
            counts = np.bincount(owners[owners >= 0], minlength=len(targets))
            cached = {name: float(counts[i]) / len(owners) for i, name in enumerate(targets)}
            self._share_cache[key] = cached
        return cached

    # -- agents

    def new_loads(self) -> None:
        """Draw a new CPU level per DIP host (the policy will want new weights)."""
        for i in range(self.options.dips):
            self._cpu[f"10.0.{2 + i}.2"] = self.rng.uniform(0.1, 0.95)

    def report(self, now: float) -> None:
        """Every DIP reports its host's current CPU level (and the intruder its messages)."""
        self._report_seq += 1
        for data in self.intruder(now) if self.intruder is not None else ():
            self.service.ingest_report(data)
        for pool in self.service.core.pools:
            for member in pool:
                if member.dip in self.dead_agents:
                    continue
                cpu = self._cpu.get(member.ip, 0.5)
                report = LoadReport(member.dip, self._report_seq, now, cpu, 0)
                self.service.ingest_report(encode_report(report))

    # -- running

    def advance(self, until: float, *, reports: bool = True) -> None:
        """Run the clock, packets and agents up to `until`."""
        step = self.options.step
        interval = self.options.settings.report_interval
        while self.clock.seconds() + step / 2 < until:
            self.clock.advance(step)
            now = self.clock.seconds()
            self.send_due(now)
            if reports and int(now / interval) != int((now - step) / interval):
                self.report(now)

    def advance_until(self, done: Callable[[], bool], limit: float) -> float:
        """Step the run until `done()` holds (AssertionError after `limit` s); the time it did."""
        end = self.clock.seconds() + limit
        while not done():
            assert self.clock.seconds() < end, "condition not reached in time"
            self.advance(self.clock.seconds() + self.options.step)
        return self.clock.seconds()

    def run(self) -> SimResult:
        """The standard run: connections spread over `rollouts` load phases, then drain."""
        o = self.options
        self.start()
        t0 = self.clock.seconds()
        self.open_connections(o.connections, t0 + 0.5, t0 + o.rollouts * o.phase)
        phase_end = t0
        while self.rollouts_so_far() < o.rollouts or self._queue:
            self.new_loads()
            phase_end += o.phase
            self.advance(phase_end)
            if phase_end - t0 > o.rollouts * o.phase * 4 + 60:
                break
        self.advance(self.clock.seconds() + 3.0)
        return self.finish()

    def rollouts_so_far(self) -> int:
        """Committed rollouts over every controller start (initial versions excluded)."""
        return (
            self.rollouts_before_restart
            + self.service.core.rollouts.counters.rollouts
            - self._baseline
        )

    def finish(self) -> SimResult:
        """Tally the result."""
        r = self.result
        r.connections = len(self.conns)
        core = self.service.core
        # The initial version of a cold start is not a rollout.
        r.rollouts = self.rollouts_so_far()
        r.aborted = self.aborted_before_restart + core.rollouts.counters.rollouts_aborted
        r.counters = self.service.counters()
        r.share_error_pp, r.observed, r.expected = share_error(
            [c for c in self.conns if c.flow.protocol == TCP]
        )
        return r


def share_error(conns: list[SimConnection]) -> tuple[float, dict[str, float], dict[str, float]]:
    """Largest gap, in percentage points, between observed and expected new-connection shares."""
    observed: Counter[str] = Counter()
    expected: dict[str, float] = {}
    n = 0
    for conn in conns:
        if conn.dip is None or conn.expected is None:
            continue
        n += 1
        observed[conn.dip] += 1
        for dip, share in conn.expected.items():
            expected[dip] = expected.get(dip, 0.0) + share
    if n == 0:
        return 0.0, {}, {}
    dips = set(observed) | set(expected)
    obs = {d: observed[d] / n for d in sorted(dips)}
    exp = {d: expected.get(d, 0.0) / n for d in sorted(dips)}
    return max(abs(obs[d] - exp[d]) for d in dips) * 100.0, obs, exp
