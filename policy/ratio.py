"""The default `ratio` policy: shares proportional to estimated capacity, with a damped trim.

Capacity estimate. A member serving `conns` connections at utilisation `cpu` can serve about
conns / cpu connections at full load, whatever share it currently gets; so the estimate does not
depend on our own weights and converges in one step without feedback. Each round it is smoothed
by an EWMA. Samples near idle (cpu < min_cpu or no connections) carry no information and are
skipped; a saturated sample (cpu >= saturation) only says "at most this much" and can only lower
the estimate, which breaks the queueing feedback (a saturated server piles up connections, so
conns / cpu would otherwise grow and attract yet more traffic).

Trim toward equal utilisation. A per-member factor exp(c_i) multiplies the estimate; c_i
integrates the relative utilisation error e_i = (u_i - mean u) / mean u outside a dead-band:
c_i <- c_i - gain * e_i. Utilisation responds in proportion to the share (plant gain 1 in
relative terms), and the controller sees it one report period late, so the loop is
x[k+1] = x[k] - g * x[k-1], with characteristic z^2 - z + g. It is stable for g < 1 and its poles
are real (no oscillation, no overshoot) for g <= 1/4; the default gain 0.15 keeps a margin for the
extra lag of connection lifetimes. The factor is bounded (correction_limit) and leaks back toward
1 (leak), so the trim only removes what the estimate gets wrong and never fights it for long.

Safety rails: clamp to [clamp_low, clamp_high] x the mean share; each round a share moves at most
max_step x the mean share (the whole move is scaled, so shares still sum to 1); moves smaller than
hold_band x the mean share are not made (no churn); a new reporter counts only after `blackout`
seconds of reports (until then: its configured weight, scaled); a member that (re)joins ramps up
over `slow_start` seconds; a member silent for more than `expiry` seconds gets the mean estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from policy.base import BoolArray, FloatArray, Observations, normalise_live
from policy.params import check_range
from policy.simple import prior_weights


@dataclass(frozen=True)
class RatioParams:
    """Parameters of the ratio policy (every field has a default)."""

    ewma_alpha: float = 0.3
    """Weight of a new capacity sample in the EWMA (default 0.3)."""
    cpu_floor: float = 0.05
    """Smallest CPU used as a divisor (default 0.05)."""
    min_cpu: float = 0.02
    """Samples below this CPU carry no capacity information and are skipped (default 0.02)."""
    saturation: float = 0.95
    """CPU at or above which a sample can only lower the estimate (default 0.95)."""
    gain: float = 0.15
    """Trim gain per round; below the 1/4 no-oscillation bound for a one-period delay (default 0.15)."""
    dead_band: float = 0.03
    """Relative utilisation error the trim ignores (default 0.03)."""
    correction_limit: float = 2.0
    """The trim factor stays within [1/limit, limit] (default 2.0)."""
    leak: float = 0.05
    """Fraction of the trim forgotten each round (default 0.05)."""
    clamp_low: float = 0.1
    """Smallest share as a multiple of the mean live share (default 0.1)."""
    clamp_high: float = 10.0
    """Largest share as a multiple of the mean live share (default 10.0)."""
    max_step: float = 0.5
    """Largest change of a share per round, as a multiple of the mean live share (default 0.5)."""
    hold_band: float = 0.02
    """Changes below this multiple of the mean live share are not made (default 0.02)."""
    blackout: float = 2.0
    """Seconds of reports before a new reporter's estimate counts (default 2.0)."""
    slow_start: float = 5.0
    """Seconds over which a joining member ramps up to its full share (default 5.0)."""
    expiry: float = 3.0
    """Report age in seconds after which a member gets the mean estimate (default 3.0)."""

    def __post_init__(self) -> None:
        """Validate ranges."""
        check_range(self, "ewma_alpha", 1e-6, 1.0)
        check_range(self, "cpu_floor", 1e-6, 1.0)
        check_range(self, "min_cpu", 0.0, 1.0)
        check_range(self, "saturation", 0.0, 1.0)
        check_range(self, "gain", 0.0, 1.0)
        check_range(self, "dead_band", 0.0)
        check_range(self, "correction_limit", 1.0)
        check_range(self, "leak", 0.0, 1.0)
        check_range(self, "clamp_low", 0.0, 1.0)
        check_range(self, "clamp_high", 1.0)
        check_range(self, "max_step", 1e-6)
        check_range(self, "hold_band", 0.0)
        check_range(self, "blackout", 0.0)
        check_range(self, "slow_start", 0.0)
        check_range(self, "expiry", 0.0)


def clamp_shares(shares: FloatArray, live: BoolArray, low: float, high: float) -> FloatArray:
    """Bound live shares to [low, high] x the mean live share, keeping their sum at 1."""
    n_live = int(np.count_nonzero(live))
    if n_live == 0:
        return shares
    lo, hi = low / n_live, high / n_live
    out = shares.copy()
    for _ in range(20):
        out[live] = out[live].clip(lo, hi)
        out = normalise_live(out, live)
        if np.all(out[live] >= lo * (1 - 1e-9)) and np.all(out[live] <= hi * (1 + 1e-9)):
            break
    return out


class RatioPolicy:
    """Capacity-proportional shares with a damped trim toward equal utilisation."""

    def __init__(self, n_members: int, initial_weights: Sequence[float], params: RatioParams) -> None:
        """Start with no estimates: shares follow the configured weights until reports count."""
        self.params = params
        self.prior = prior_weights(n_members, initial_weights)
        self.estimate = np.full(n_members, np.nan)
        self.trim = np.zeros(n_members)
        self.first_report = np.full(n_members, np.nan)
        self.live_since = np.full(n_members, -math.inf)
        self.was_live: BoolArray | None = None
        self.shares = np.zeros(n_members)

    def update(self, now: float, obs: Observations) -> FloatArray:
        """New shares from this round's observations."""
        p = self.params
        live = obs.live.astype(np.bool_)
        self._track_membership(now, obs, live)
        fresh = live & (obs.report_age <= p.expiry)
        counted = fresh & (now - self.first_report >= p.blackout)
        self._update_estimates(obs, counted)
        capacity = self._capacity(live, fresh, counted)
        self._update_trim(obs, counted)
        target = normalise_live(capacity * np.exp(self.trim), live)
        ramp = np.clip((now - self.live_since) / max(p.slow_start, 1e-9), p.clamp_low, 1.0)
        target = normalise_live(target * np.where(np.isfinite(ramp), ramp, 1.0), live)
        target = clamp_shares(target, live, p.clamp_low, p.clamp_high)
        self.shares = self._bounded_move(target, live)
        return self.shares.copy()

    def _track_membership(self, now: float, obs: Observations, live: BoolArray) -> None:
        """Note first reports and (re)joins; forget what we knew about members that left."""
        if self.was_live is not None:
            joined = live & ~self.was_live
            self.live_since[joined] = now
            left = ~live & self.was_live
            self.estimate[left] = np.nan
            self.trim[left] = 0.0
            self.first_report[left] = np.nan
        self.was_live = live.copy()
        reported = np.isfinite(obs.report_age)
        new = reported & np.isnan(self.first_report) & live
        self.first_report[new] = now - obs.report_age[new]
        self.first_report[~reported] = np.nan

    def _update_estimates(self, obs: Observations, counted: BoolArray) -> None:
        """Fold this round's conns / cpu samples into the capacity EWMA."""
        p = self.params
        cpu = np.nan_to_num(obs.cpu, nan=0.0)
        conns = np.nan_to_num(obs.conns, nan=0.0)
        ok = counted & (cpu >= p.min_cpu) & (conns > 0)
        sample = conns / np.maximum(cpu, p.cpu_floor)
        known = np.isfinite(self.estimate)
        saturated = ok & known & (cpu >= p.saturation)
        sample[saturated] = np.minimum(sample[saturated], self.estimate[saturated])
        first = ok & ~known
        self.estimate[first] = sample[first]
        again = ok & known
        self.estimate[again] += p.ewma_alpha * (sample[again] - self.estimate[again])

    def _capacity(self, live: BoolArray, fresh: BoolArray, counted: BoolArray) -> FloatArray:
        """Estimate where it counts; scaled prior in blackout; the mean estimate when expired."""
        known = counted & np.isfinite(self.estimate)
        if not known.any():
            return np.where(live, self.prior, 0.0)
        mean_est = float(self.estimate[known].mean())
        prior_known = float(self.prior[known].mean())
        scaled_prior = self.prior * (mean_est / prior_known if prior_known > 0 else 0.0)
        capacity = np.where(known, self.estimate, np.where(fresh, scaled_prior, mean_est))
        capacity[~np.isfinite(capacity) | (capacity <= 0)] = mean_est
        return np.where(live, capacity, 0.0)

    def _update_trim(self, obs: Observations, counted: BoolArray) -> None:
        """Integrate the relative utilisation error outside the dead-band (leaky, bounded)."""
        p = self.params
        self.trim *= 1.0 - p.leak
        cpu = np.nan_to_num(obs.cpu, nan=0.0)
        if np.count_nonzero(counted) < 2:
            return
        mean_u = float(cpu[counted].mean())
        if mean_u < p.min_cpu:
            return
        error = np.where(counted, (cpu - mean_u) / mean_u, 0.0)
        error[np.abs(error) < p.dead_band] = 0.0
        limit = math.log(p.correction_limit)
        self.trim = np.clip(self.trim - p.gain * error, -limit, limit)
        self.trim[~counted] = 0.0

    def _bounded_move(self, target: FloatArray, live: BoolArray) -> FloatArray:
        """Move from the last shares toward `target` by at most max_step x the mean share."""
        p = self.params
        n_live = int(np.count_nonzero(live))
        if n_live == 0:
            return np.zeros(len(live))
        previous = np.where(live, self.shares, 0.0)
        if previous.sum() <= 0:
            return target
        previous = normalise_live(previous, live)
        delta = target - previous
        biggest = float(np.abs(delta).max())
        if biggest < p.hold_band / n_live:
            return previous
        scale = min(1.0, p.max_step / n_live / biggest)
        return normalise_live(previous + scale * delta, live)
