"""Discrete-time simulation of one pool under a policy: the model behind `python -m bench policy`.

Servers of unequal capacity (cores) receive Poisson connection arrivals split by the current
integer weights (each new connection hashes to a bucket; a bucket's owner gets it). A connection
needs `conn_cost` cores and lives an exponential time; an overloaded server (demand above its
capacity) shares its cores (processor sharing), so its connections last longer and pile up — the
queueing effect. CPU = min(1, active x conn_cost / capacity). Agents report the period's mean CPU
(plus noise), the active connection count and the new-connection rate every report interval; the
controller sees each report one interval late, runs the policy and rolls out new weights (and
prefix entries) every rollout interval. With a `warmup`, the pool first runs on equal weights
without consulting the policy, as the demo's equal phase does: a weak server then starts the
policy's run saturated, with a backlog of connections. Events at `step_time`: the stepped
server's capacity changes (`step_factor`), the offered load changes (`surge_factor`), or the
server dies for `outage` seconds (its connections are lost, it is not live, its agent is silent;
it comes back with a fresh agent). A per-connection dispatcher (`policy.peers`, LVS wlc) may
stand in for a policy: it places each arrival itself and the trace records the shares it gave.
Pure: randomness comes from the `rng` passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

from policy.base import BoolArray, FloatArray, IntArray, Observations, Policy
from policy.buckets import PrefixEntry, moved_values, popcount_bound, prefix_entries
from policy.quantize import quantize
from policy.spans import ReportSpans


@dataclass(frozen=True)
class SimConfig:
    """Scenario of the simulation (every field has a default)."""

    capacities: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0)
    """Cores per server (default 1, 2, 3, 4)."""
    load: float = 0.6
    """Offered load as a fraction of the total capacity before the step (default 0.6)."""
    conn_cost: float = 0.0025
    """Cores one connection keeps busy (default 0.0025: about 250 connections per loaded core)."""
    lifetime: float = 2.0
    """Mean connection lifetime in seconds at full speed (default 2.0)."""
    dt: float = 0.1
    """Simulation tick in seconds (default 0.1)."""
    report_interval: float = 0.5
    """Agents' report period in seconds; reports arrive one period late (default 0.5)."""
    rollout_interval: float = 1.0
    """Seconds between policy runs and rollouts (default 1.0)."""
    duration: float = 150.0
    """Simulated seconds (default 150.0)."""
    step_time: float = 75.0
    """When `step_server` loses capacity, in seconds (default 75.0; inf: never)."""
    step_server: int = 3
    """Index of the server that loses capacity (default 3, the largest)."""
    step_factor: float = 0.5
    """Capacity multiplier at the step (default 0.5: loses half)."""
    cpu_noise: float = 0.01
    """Standard deviation of the reported CPU's measurement noise (default 0.01)."""
    weight_bits: int = 8
    """Weights sum to 2**weight_bits (default 8)."""
    hash_bits: int = 16
    """Width of the flow hash (default 16)."""
    report_rate: bool = True
    """Whether agents report the new-connection rate (default True; False: NaN)."""
    entry_budget: float | None = None
    """Entry budget as a multiple of sum popcount (default None: prefix_entries' default)."""
    warmup: float = 0.0
    """Seconds on equal weights before the policy's first run (default 0.0)."""
    surge_factor: float = 1.0
    """Offered load multiplier from `step_time` on (default 1.0: no surge)."""
    outage: float = 0.0
    """Seconds `step_server` is dead from `step_time` (default 0.0: it never dies)."""


@runtime_checkable
class Dispatcher(Protocol):
    """Places every new connection itself (a per-connection scheduler such as LVS wlc)."""

    def dispatch(self, active: IntArray, arrivals: int, live: BoolArray) -> IntArray:
        """How many of `arrivals` each server gets, given the active connections."""
        ...


@dataclass
class Trace:
    """Per-rollout record of a run: times, shares in force, mean utilisation, bucket churn."""

    times: list[float] = field(default_factory=list)
    """Simulated time of each rollout round, seconds."""
    shares: list[FloatArray] = field(default_factory=list)
    """Weights in force after the round, as fractions."""
    utilisation: list[FloatArray] = field(default_factory=list)
    """Mean demand / capacity per server since the previous round; not capped at 1 (unlike the
    reported CPU), so an overloaded server shows by how much."""
    moved: list[int] = field(default_factory=list)
    """Hash values whose owner changed in the round."""
    min_moved: list[float] = field(default_factory=list)
    """The least any layout could have moved: 1/2 sum |weight change|, in hash values."""
    entries: list[int] = field(default_factory=list)
    """LPM entries of the layout after the round."""
    slowdown: list[FloatArray] = field(default_factory=list)
    """Per server, the mean slowdown (demand / capacity, at least 1) new connections met in the
    round; NaN where none arrived."""
    arrivals: list[FloatArray] = field(default_factory=list)
    """New connections per server in the round."""


class _Report(NamedTuple):
    """One report of every agent: CPU, active connections, new-connection rate over the report
    period, and the connections and busy CPU-seconds counted since the agent (re)started, as the
    load book keeps."""

    at: float
    cpu: FloatArray
    conns: FloatArray
    rate: FloatArray
    arrived: FloatArray
    busy: FloatArray


class _Agents:
    """Accumulates ticks into reports and releases each one report interval late."""

    def __init__(self, n: int, report_rate: bool) -> None:
        self.report_rate = report_rate
        self.cpu_sum = np.zeros(n)
        self.ticks = 0
        self.arrivals = np.zeros(n)
        self.arrived = np.zeros(n)
        self.busy = np.zeros(n)
        self.pending: list[_Report] = []
        self.delivered: _Report | None = None
        self.spans = ReportSpans(n, 2)

    def tick(self, cpu: FloatArray, arrivals: IntArray) -> None:
        self.cpu_sum += cpu
        self.ticks += 1
        self.arrivals += arrivals

    def report(self, now: float, conns: IntArray, interval: float, noise: FloatArray) -> None:
        cpu = np.clip(self.cpu_sum / max(self.ticks, 1) + noise, 0.0, 1.0)
        self.arrived += self.arrivals
        self.busy += cpu * interval
        rate = self.arrivals / interval
        self.pending.append(
            _Report(now, cpu, conns.astype(np.float64), rate, self.arrived.copy(), self.busy.copy())
        )
        self.cpu_sum[:] = 0.0
        self.arrivals[:] = 0.0
        self.ticks = 0

    def restart(self, member: int) -> None:
        """A fresh agent on `member`: its count starts again."""
        self.arrived[member] = 0.0
        self.busy[member] = 0.0

    def deliver(self, now: float, delay: float) -> None:
        while self.pending and self.pending[0].at + delay <= now + 1e-9:
            # The controller knows a report from when it arrives (as the load book's last_seen).
            self.delivered = self.pending.pop(0)._replace(at=now)

    def observations(
        self, now: float, n: int, live: BoolArray, returned: BoolArray, silent_since: float
    ) -> Observations:
        if self.delivered is None:
            nan = np.full(n, np.nan)
            return Observations(nan, nan, nan, np.full(n, np.inf), live.copy())
        report = self.delivered
        age = np.full(n, now - report.at)
        # A dead server's agent is silent; one that came back reports only from its return on.
        age[~live] = np.inf
        if report.at < silent_since:
            age[live & returned] = np.inf
        origin = np.where(returned & (report.at >= silent_since), silent_since, 0.0)
        rate, cpu = self.spans.means(
            now - age,
            origin,
            np.column_stack((report.arrived, report.busy)),
            np.column_stack((report.rate, report.cpu)),
        ).T
        if not self.report_rate:  # as the load book: no rates, no counts
            rate, cpu = np.full(n, np.nan), report.cpu
        return Observations(report.cpu, report.conns, rate, age, live.copy(), cpu_mean=cpu)


def simulate(policy: Policy | Dispatcher, config: SimConfig, rng: np.random.Generator) -> Trace:
    """Run one scenario under `policy` (or a per-connection dispatcher) and return the trace."""
    c = config
    n = len(c.capacities)
    capacity = np.asarray(c.capacities, dtype=np.float64)
    total = 1 << c.weight_bits
    base_rate = c.load * capacity.sum() / (c.conn_cost * c.lifetime)
    weights = quantize(np.ones(n), total)
    entries: list[PrefixEntry] = prefix_entries(weights, c.hash_bits)
    active = np.zeros(n, dtype=np.int64)
    agents = _Agents(n, c.report_rate)
    trace = Trace()
    util_sum, util_ticks = np.zeros(n), 0
    slow_sum, arrived = np.zeros(n), np.zeros(n)
    ticks = round(c.duration / c.dt)
    per_report = round(c.report_interval / c.dt)
    per_rollout = round(c.rollout_interval / c.dt)
    live = np.ones(n, dtype=np.bool_)
    silent_since = -math.inf  # the dead server's agent: reports before this do not count
    returned = np.zeros(n, dtype=np.bool_)
    returned[c.step_server] = c.outage > 0
    down_from, down_until = c.step_time, c.step_time + c.outage
    dispatcher = policy if isinstance(policy, Dispatcher) else None
    share_policy = None if isinstance(policy, Dispatcher) else policy
    for k in range(1, ticks + 1):
        now = k * c.dt
        if now > c.step_time and capacity[c.step_server] == c.capacities[c.step_server]:
            capacity[c.step_server] *= c.step_factor
        if c.outage > 0:
            dead = down_from < now <= down_until
            if dead and live[c.step_server]:
                live[c.step_server] = False
                active[c.step_server] = 0  # its connections are lost
            elif not dead and not live[c.step_server]:
                live[c.step_server] = True
                silent_since = now
                agents.restart(c.step_server)
        rate = base_rate * (c.surge_factor if now > c.step_time else 1.0)
        demand = active * c.conn_cost / capacity
        speed = np.minimum(1.0, 1.0 / np.maximum(demand, 1e-12))
        leave_p = 1.0 - np.exp(-c.dt * speed / c.lifetime)
        active -= rng.binomial(active, leave_p)
        count = int(rng.poisson(rate * c.dt))
        if dispatcher is not None:
            arrivals = dispatcher.dispatch(active, count, live)
        else:
            arrivals = rng.multinomial(count, weights / total)
            arrivals[~live] = 0  # hashed to a dead server: the connection fails
        active += arrivals
        demand = active * c.conn_cost / capacity
        agents.tick(np.minimum(demand, 1.0), arrivals)
        util_sum += demand
        util_ticks += 1
        slow_sum += arrivals * np.maximum(demand, 1.0)
        arrived += arrivals
        if k % per_report == 0:
            agents.report(now, active, c.report_interval, rng.normal(0.0, c.cpu_noise, n))
        agents.deliver(now, c.report_interval)
        if k % per_rollout == 0:
            new_weights = weights
            if dispatcher is not None:
                given = arrived / max(float(arrived.sum()), 1.0)
                new_weights = quantize(given, total, weights) if given.sum() > 0 else weights
            elif share_policy is not None and now >= c.warmup - 1e-9:
                shares = share_policy.update(
                    now, agents.observations(now, n, live, returned, silent_since)
                )
                new_weights = quantize(shares, total, weights) if shares.sum() > 0 else weights
            moved, churn = 0, 0.0
            if not np.array_equal(new_weights, weights):
                budget = None
                if c.entry_budget is not None:
                    budget = int(c.entry_budget * popcount_bound(new_weights))
                new_entries = prefix_entries(new_weights, c.hash_bits, entries, budget)
                moved = moved_values(entries, new_entries, c.hash_bits)
                churn = float(np.abs(new_weights - weights).sum()) / 2 * (1 << c.hash_bits) / total
                weights, entries = new_weights, new_entries
            trace.times.append(now)
            trace.shares.append(weights / total)
            trace.utilisation.append(util_sum / util_ticks)
            trace.moved.append(moved)
            trace.min_moved.append(churn)
            trace.entries.append(len(entries))
            with np.errstate(invalid="ignore", divide="ignore"):
                trace.slowdown.append(slow_sum / arrived)
            trace.arrivals.append(arrived)
            util_sum, util_ticks = np.zeros(n), 0
            slow_sum, arrived = np.zeros(n), np.zeros(n)
    return trace


@dataclass(frozen=True)
class Quality:
    """Summary of a trace; see `summarise` for definitions."""

    steady_max_mean: float
    after_max_mean: float
    overshoot: float
    settling_rounds: float
    reversals: int
    moved_per_rollout: float
    min_moved_per_rollout: float
    mean_entries: float


def _max_mean(util: FloatArray) -> float:
    per_server = util.mean(axis=0)
    return float(per_server.max() / per_server.mean())


def summarise(trace: Trace, config: SimConfig, window: float = 30.0) -> Quality:
    """Quality figures of a run.

    steady/after max/mean: per-server utilisation averaged over the last `window` seconds
    (default 30.0) before the step / before the end, max over servers divided by the mean.
    overshoot: how far the stepped server's share went past its final value (mean of the last
    window), as a fraction of the change from its pre-step value. settling_rounds: rollouts
    after the step until that share stays within 2 % of its final value or one weight unit,
    whichever is larger (inf: never). reversals: sign changes of successive share moves, summed
    over servers. Bucket churn, per rollout that changed anything: hash values moved vs the
    1/2 L1 minimum.
    """
    times = np.asarray(trace.times)
    shares = np.asarray(trace.shares)
    util = np.asarray(trace.utilisation)
    rounds = max(1, round(window / config.rollout_interval))
    before = times <= config.step_time
    after = ~before
    steady = _max_mean(util[before][-rounds:]) if before.any() else math.nan
    end = _max_mean(util[-rounds:])
    s = shares[:, config.step_server]
    final = float(s[-rounds:].mean())
    overshoot, settling = 0.0, 0.0
    if before.any() and after.any():
        start = float(s[before][-1])
        change = final - start
        post = s[after]
        if abs(change) > 1e-9:
            overshoot = max(0.0, float(np.max(np.sign(change) * (post - final)))) / abs(change)
        band = max(0.02 * final, 1.0 / (1 << config.weight_bits))
        outside = np.flatnonzero(np.abs(post - final) > band + 1e-12)
        settling = 0.0 if len(outside) == 0 else float(outside[-1] + 1)
        if len(outside) and outside[-1] >= len(post) - rounds:
            settling = math.inf
    moves = np.diff(shares, axis=0)
    reversals = 0
    for col in moves.T:
        signs = np.sign(col[np.abs(col) > 1e-12])
        reversals += int(np.count_nonzero(signs[1:] != signs[:-1]))
    changed = np.asarray(trace.min_moved) > 0
    moved = float(np.asarray(trace.moved)[changed].mean()) if changed.any() else 0.0
    minimum = float(np.asarray(trace.min_moved)[changed].mean()) if changed.any() else 0.0
    return Quality(
        steady, end, overshoot, settling, reversals, moved, minimum, float(np.mean(trace.entries))
    )
