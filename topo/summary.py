"""The demo's summary from what it observed: connections, shares and utilisation per phase.

Pure: takes the load generator's connection records, per-server utilisation samples and the
phase boundaries, and returns the ``summary.json`` document. Each phase is measured over a
window that skips its first seconds (queues and weights take a while to move), so
``max_mean_utilisation`` compares steady states: max over servers of the mean utilisation,
divided by the mean over servers (1.0 means perfectly even).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from topo.apps.outcome import BROKEN, ConnectionRecord


@dataclass(frozen=True)
class Phase:
    """A stretch of the demo under one policy, ``[start, end)`` in seconds."""

    name: str
    policy: str
    start: float
    end: float

    def window(self, settle: float) -> tuple[float, float]:
        """The measured part: after ``settle`` seconds, at least the last half of the phase."""
        start = min(self.start + settle, (self.start + self.end) / 2)
        return start, self.end


@dataclass(frozen=True)
class UtilSample:
    """Utilisation of one server (busy fraction of its CPU allowance) at time ``t``."""

    t: float
    dip: str
    utilisation: float


@dataclass(frozen=True)
class WeightRound:
    """The weight shares the controller set at ``t`` (each DIP's fraction of its pool)."""

    t: float
    shares: dict[str, float]


@dataclass(frozen=True)
class RunData:
    """What one demo run observed: phases, connections, utilisation, controller events."""

    dips: tuple[str, ...]
    phases: tuple[Phase, ...]
    records: tuple[ConnectionRecord, ...]
    samples: tuple[UtilSample, ...]
    events: tuple[dict[str, Any], ...]


def mean_utilisation(
    samples: Sequence[UtilSample], dips: Sequence[str], start: float, end: float
) -> dict[str, float]:
    """Mean utilisation of each DIP over samples in ``[start, end)`` (0.0 when none)."""
    sums: dict[str, float] = defaultdict(float)
    counts: Counter[str] = Counter()
    for sample in samples:
        if start <= sample.t < end:
            sums[sample.dip] += sample.utilisation
            counts[sample.dip] += 1
    return {dip: (sums[dip] / counts[dip] if counts[dip] else 0.0) for dip in dips}


def max_over_mean(values: Mapping[str, float]) -> float:
    """max/mean of the values (1.0 = even; 0.0 when all are zero or there are none)."""
    if not values:
        return 0.0
    mean = sum(values.values()) / len(values)
    return max(values.values()) / mean if mean > 0 else 0.0


def connection_shares(
    records: Sequence[ConnectionRecord], dips: Sequence[str], start: float, end: float
) -> dict[str, float]:
    """Fraction of successful connections started in ``[start, end)`` that each DIP served."""
    counts = Counter(
        r.server for r in records if r.outcome == "ok" and start <= r.start < end and r.server
    )
    total = sum(counts[d] for d in dips)
    return {dip: (counts[dip] / total if total else 0.0) for dip in dips}


def shares_follow_capacities(shares: Mapping[str, float], capacities: Mapping[str, float]) -> bool:
    """Whether sorting servers by share gives the same order as sorting them by capacity."""
    dips = list(capacities)
    return sorted(dips, key=lambda d: (capacities[d], d)) == sorted(
        dips, key=lambda d: (shares.get(d, 0.0), capacities[d], d)
    )


def weight_shares(events: Sequence[Mapping[str, Any]], dips: Sequence[str]) -> list[WeightRound]:
    """The controller's weights events as shares of each DIP, in time order."""
    rounds = []
    for event in events:
        weights = event.get("weights")
        if event.get("kind") != "weights" or not isinstance(weights, Mapping):
            continue
        total = sum(float(weights.get(d, 0)) for d in dips)
        if total > 0:
            shares = {d: float(weights.get(d, 0)) / total for d in dips}
            rounds.append(WeightRound(float(event["t"]), shares))
    return sorted(rounds, key=lambda r: r.t)


def share_overshoot(
    rounds: Sequence[WeightRound], dips: Sequence[str], switch: float, window: tuple[float, float]
) -> dict[str, float]:
    """Per DIP: how far its weight share rose after `switch` above both its share at the switch
    and its settled share (held-time mean over `window`); 0.0 when it never did."""
    start, end = window
    held: dict[str, float] = defaultdict(float)
    span = 0.0
    for here, after in zip(rounds, [*rounds[1:], None], strict=True):
        a, b = max(here.t, start), min(after.t if after else end, end)
        if b > a:
            span += b - a
            for d in dips:
                held[d] += here.shares[d] * (b - a)
    before = [r for r in rounds if r.t < switch]
    out = {}
    for d in dips:
        settled = held[d] / span if span > 0 else 0.0
        at_switch = before[-1].shares[d] if before else 0.0
        later = [r.shares[d] for r in rounds if r.t >= switch]
        out[d] = max(0.0, max(later, default=0.0) - max(settled, at_switch))
    return out


def build_summary(
    *,
    mode: str,
    policy: str,
    phases: Sequence[Phase],
    records: Sequence[ConnectionRecord],
    samples: Sequence[UtilSample],
    capacities: Mapping[str, float],
    settle_before: float,
    settle_after: float,
    events: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """``summary.json``: the first phase is "before" (equal weights), the last "after".

    ``events`` are the controller's (its ``weights`` events give ``weight_share_overshoot``:
    how far each server's weight share went above its value at the switch and its settled one).
    """
    if len(phases) < 2:
        raise ValueError(f"need a before and an after phase, got {len(phases)!r}")
    dips = list(capacities)
    before, after = phases[0], phases[-1]
    windows = {"before": before.window(settle_before), "after": after.window(settle_after)}
    utilisation = {k: mean_utilisation(samples, dips, *w) for k, w in windows.items()}
    shares = {k: connection_shares(records, dips, *w) for k, w in windows.items()}
    outcomes = Counter(r.outcome for r in records)
    total_capacity = sum(capacities.values())
    origin = before.start

    def rounded(values: Mapping[str, float]) -> dict[str, float]:
        return {k: round(v, 4) for k, v in values.items()}

    return {
        "mode": mode,
        "policy": policy,
        "connections": len(records),
        "made": outcomes["ok"],
        "broken": sum(outcomes[o] for o in BROKEN),
        "broken_by_kind": {o: outcomes[o] for o in sorted(BROKEN)},
        "per_server_share": rounded(shares["after"]),
        "per_server_share_before": rounded(shares["before"]),
        "capacity_share": rounded({d: c / total_capacity for d, c in capacities.items()}),
        "shares_ordered_like_capacities": shares_follow_capacities(shares["after"], capacities),
        "mean_utilisation": {k: rounded(v) for k, v in utilisation.items()},
        "max_mean_utilisation": {k: round(max_over_mean(v), 4) for k, v in utilisation.items()},
        "weight_share_overshoot": rounded(
            share_overshoot(weight_shares(events, dips), dips, after.start, windows["after"])
        ),
        "windows": {
            k: [round(a - origin, 2), round(b - origin, 2)] for k, (a, b) in windows.items()
        },
        "phases": [
            {
                "name": p.name,
                "policy": p.policy,
                "start": round(p.start - origin, 2),
                "end": round(p.end - origin, 2),
            }
            for p in phases
        ],
    }
