"""Figures of merit of one simulated run around its event, for `python -m bench policy`.

Per-round utilisation is demand / capacity averaged over the round (not capped at 1), over the
servers that are live in that round. The event round is the first one after `step_time`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from policy.simulation import SimConfig, Trace

RECOVERED = 1.15
"""max/mean utilisation under which a round counts as balanced again."""
STAY = 3
"""Rounds in a row that must stay under RECOVERED to count as recovered."""


@dataclass(frozen=True)
class EventQuality:
    """One run's figures (see `score` for their definitions); NaN where they do not apply."""

    steady_max_mean: float
    peak_max_util: float
    reaction_peak: float
    recovery_rounds: float
    overshoot_pct: float
    settling_rounds: float
    jitter_pct: float
    reversals: int
    p99_slowdown: float
    return_overshoot_pct: float
    rollouts: int


def _max_mean(util: np.ndarray) -> float:
    """max / mean over servers of utilisation rows (NaN where a server was not live)."""
    per_server = np.nanmean(util, axis=0)
    per_server = per_server[np.isfinite(per_server)]
    return float(per_server.max() / per_server.mean())


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The q-quantile of `values` where each counts `weights` times."""
    keep = np.isfinite(values) & (weights > 0)
    if not keep.any():
        return math.nan
    order = np.argsort(values[keep])
    v, w = values[keep][order], weights[keep][order]
    cum = np.cumsum(w)
    return float(v[np.searchsorted(cum, q * cum[-1])])


def score(
    trace: Trace, config: SimConfig, window: float = 30.0, warmup: float = 10.0
) -> EventQuality:
    """Figures of a run.

    steady max/mean: per-server utilisation averaged over the `window` seconds (default 30.0)
    before the event (before the end without one), max over servers / mean. peak max
    utilisation: the highest per-round utilisation of any server in the `window` after the
    event. peak after reacting: the same from the round after the event's, the first whose
    weights can answer a report of it (no policy can answer within the event round: there,
    a pool balanced before has the stepped server at its old utilisation / step_factor).
    recovery: rounds from the event until max/mean stays <= 1.15 for 3 rounds. overshoot and
    settling: of the stepped server's share, as `policy.simulation.summarise`. jitter: mean
    |share change| / share per round over the steady window, in %. reversals: sign changes of
    successive share moves over the whole run. p99 slowdown: the 99th percentile, over new
    connections after `warmup` seconds (default 10.0), of the slowdown (demand / capacity, at
    least 1) of the server each was sent to. return overshoot: after an outage, how far the
    returning server's share went above its final share, in %. rollouts: rounds after `warmup`
    whose weights changed.
    """
    times = np.asarray(trace.times)
    shares = np.asarray(trace.shares)
    util = np.asarray(trace.utilisation, dtype=np.float64)
    rounds = max(1, round(window / config.rollout_interval))
    live = np.ones_like(util, dtype=np.bool_)
    if config.outage > 0:
        down = (times > config.step_time) & (times <= config.step_time + config.outage + 1e-9)
        live[down, config.step_server] = False
    util = np.where(live, util, np.nan)
    event = int(np.searchsorted(times, config.step_time, side="right"))
    has_event = event < len(times)
    steady_rows = util[max(0, event - rounds) : event] if has_event else util[-rounds:]
    steady = _max_mean(steady_rows)
    peak = reaction = recovery = overshoot = settling = back = math.nan
    j = config.step_server
    s = shares[:, j]
    final = float(s[-rounds:].mean())
    if has_event:
        after = util[event : event + rounds]
        peak = float(np.nanmax(after))
        reaction = float(np.nanmax(after[1:])) if len(after) > 1 else math.nan
        per_round = np.nanmax(util, axis=1) / np.nanmean(util, axis=1)
        good = per_round[event:] <= RECOVERED
        runs = np.convolve(good.astype(np.int64), np.ones(STAY, dtype=np.int64), "valid")
        hit = np.flatnonzero(runs == STAY)
        recovery = float(hit[0]) if len(hit) else math.inf
        start = float(s[event - 1])
        change = final - start
        post = s[event:]
        overshoot = 0.0
        if abs(change) > 1e-9 and config.outage == 0:
            overshoot = (
                100 * max(0.0, float(np.max(np.sign(change) * (post - final)))) / abs(change)
            )
        band = max(0.02 * final, 1.0 / (1 << config.weight_bits))
        outside = np.flatnonzero(np.abs(post - final) > band + 1e-12)
        settling = 0.0 if len(outside) == 0 else float(outside[-1] + 1)
        if len(outside) and outside[-1] >= len(post) - rounds:
            settling = math.inf
        if config.outage > 0:
            returned = times > config.step_time + config.outage
            back = 100 * max(0.0, float(s[returned].max()) / final - 1.0) if final > 0 else 0.0
    steady_shares = shares[max(0, event - rounds) : event] if has_event else shares[-rounds:]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(np.diff(steady_shares, axis=0)) / steady_shares[:-1]
    jitter = 100 * float(np.nanmean(np.where(np.isfinite(rel), rel, np.nan))) if len(rel) else 0.0
    moves = np.diff(shares, axis=0)
    reversals = 0
    for col in moves.T:
        signs = np.sign(col[np.abs(col) > 1e-12])
        reversals += int(np.count_nonzero(signs[1:] != signs[:-1]))
    late = times > warmup
    slow = np.asarray(trace.slowdown)[late].reshape(-1)
    weight = np.asarray(trace.arrivals)[late].reshape(-1)
    p99 = _weighted_quantile(slow, weight, 0.99)
    changed = np.any(np.diff(shares, axis=0) != 0, axis=1)
    rollouts = int(np.count_nonzero(changed & late[1:]))
    return EventQuality(
        steady,
        peak,
        reaction,
        recovery,
        overshoot,
        settling,
        jitter,
        reversals,
        p99,
        back,
        rollouts,
    )
