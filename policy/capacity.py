"""Per-member capacity estimates for the ratio policy: connections a member serves at full CPU.

An unsaturated member serving `conns` connections at utilisation `cpu` can serve about
conns / cpu at full load, whatever share it gets, so the estimate needs no feedback. Samples are
smoothed by an EWMA; when the median of the last three samples differs from the EWMA by more
than `jump`, the EWMA jumps to it (a real change is followed within two samples, while noise and
a single odd sample are still averaged out). Samples near idle carry no information.

A saturated member (cpu >= saturation) gives no such sample: its demand exceeds its capacity and
connections pile up. Its capacity then follows from Little's law instead: connections finish at
capacity / lifetime per second, and finishes = arrivals (conn_rate) - growth of `conns`, with the
lifetime learnt from unsaturated samples (conns / conn_rate). The median of the saturated
samples replaces the estimate, never above its value before the saturation. Without a
connection rate, the estimate is cut by the mean utilisation u of the unsaturated members (right
when demand just meets capacity, never too deep), again only after `holdoff` seconds and while
connections still pile up. After a saturation ends, samples are skipped for `holdoff` seconds:
a draining backlog (instantaneous conns over the period's mean cpu) reads low.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policy.base import BoolArray, FloatArray, Observations


@dataclass(frozen=True)
class EstimatorSettings:
    """The estimator's knobs (copied from RatioParams, which documents the defaults)."""

    ewma_alpha: float
    jump: float
    cpu_floor: float
    min_cpu: float
    saturation: float
    holdoff: float


class CapacityEstimator:
    """Capacity EWMA per member, robust to saturation; NaN where nothing is known yet."""

    def __init__(self, n_members: int, settings: EstimatorSettings) -> None:
        """Start knowing nothing."""
        self.s = settings
        self.estimate = np.full(n_members, np.nan)
        self.lifetime = np.full(n_members, np.nan)
        self.recent = np.full((n_members, 3), np.nan)
        self.saturated_at = np.full(n_members, np.nan)
        self.cut_at = np.full(n_members, np.nan)
        self.before = np.full(n_members, np.nan)
        self.last_conns = np.full(n_members, np.nan)
        self.last_time = np.full(n_members, np.nan)
        self.moved = np.zeros(n_members, dtype=np.bool_)

    def forget(self, members: BoolArray) -> None:
        """Drop everything known about `members` (they left the pool)."""
        for arr in (self.estimate, self.lifetime, self.saturated_at, self.cut_at):
            arr[members] = np.nan
        for arr in (self.last_conns, self.last_time):
            arr[members] = np.nan
        self.recent[members] = np.nan

    def update(self, now: float, obs: Observations, counted: BoolArray) -> None:
        """Fold this round's reports of `counted` members in; sets `moved` where it jumped."""
        s = self.s
        cpu = np.nan_to_num(obs.cpu, nan=0.0)
        conns = np.nan_to_num(obs.conns, nan=0.0)
        rate = obs.conn_rate
        ok = counted & (cpu >= s.min_cpu) & (conns > 0)
        known = np.isfinite(self.estimate)
        saturated = ok & known & (cpu >= s.saturation)
        calm = ok & ~saturated & ~(now - self.saturated_at < s.holdoff)
        sample = conns / np.maximum(cpu, s.cpu_floor)
        with np.errstate(divide="ignore", invalid="ignore"):
            life = np.where(calm & (rate > 0), conns / rate, np.nan)
        have_life = np.isfinite(life)
        first_life = have_life & np.isnan(self.lifetime)
        self.lifetime[first_life] = life[first_life]
        again_life = have_life & ~first_life
        self.lifetime[again_life] += s.ewma_alpha * (life[again_life] - self.lifetime[again_life])
        self.moved = saturated.copy()
        if saturated.any():
            self._saturated(now, saturated=saturated, cpu=cpu, conns=conns, rate=rate, calm=calm)
        self.cut_at[calm] = np.nan
        self.last_conns = np.where(counted, conns, np.nan)
        self.last_time = np.where(counted, now, np.nan)
        first = calm & ~known
        self.estimate[first] = sample[first]
        again = calm & known
        self.estimate[again] += s.ewma_alpha * (sample[again] - self.estimate[again])
        self.recent[calm] = np.column_stack((self.recent[calm, 1:], sample[calm]))
        full = again & ~np.isnan(self.recent).any(axis=1)
        median = np.full(len(sample), np.nan)
        median[full] = np.median(self.recent[full], axis=1)
        jumped = full & (np.abs(median - self.estimate) > s.jump * self.estimate)
        self.estimate[jumped] = median[jumped]
        self.recent[jumped] = np.nan
        self.moved |= jumped

    def _saturated(
        self,
        now: float,
        *,
        saturated: BoolArray,
        cpu: FloatArray,
        conns: FloatArray,
        rate: FloatArray,
        calm: BoolArray,
    ) -> None:
        """Lower the estimates of saturated members (see the module docstring)."""
        s = self.s
        fresh = saturated & ~(now - self.saturated_at < s.holdoff)  # saturation just began
        self.recent[fresh] = np.nan
        self.before[fresh] = self.estimate[fresh]
        self.saturated_at[saturated] = now
        with np.errstate(divide="ignore", invalid="ignore"):
            growth = (conns - self.last_conns) / (now - self.last_time)
            finishes = rate - growth
        little = saturated & np.isfinite(self.lifetime) & np.isfinite(finishes) & (finishes > 0)
        if little.any():
            sample = self.lifetime * finishes
            self.recent[little] = np.column_stack((self.recent[little, 1:], sample[little]))
            median = np.nanmedian(self.recent[little], axis=1)
            self.estimate[little] = np.minimum(self.before[little], median)
        rest = saturated & ~little
        if rest.any():
            level = float(cpu[calm].mean()) if calm.any() else s.saturation
            growing = ~(conns < self.last_conns)
            due = rest & growing & ~(now - self.cut_at < s.holdoff)
            self.estimate[due] *= min(level, s.saturation)
            self.cut_at[due] = now
