"""Per-member capacity estimates for the ratio policy: connections completed per CPU-second.

A member's capacity is the rate at which it can finish connections at full CPU. Each round gives
a sample of its throughput: the connections it finished per second, arrivals (conn_rate) minus
the growth of its active connections since its previous report, together with the CPU that
work took (the mean utilisation over the same span, `Observations.cpu_mean`: a member whose CPU
falls within the span, as when a backlog drains, looked 5-8 % stronger by its latest report's
CPU alone). The estimate is the ratio of the two EWMAs,
EWMA(finished) / max(EWMA(cpu), cpu_floor): completions per CPU-second. The EWMAs start as
running means (weight 1/k for the k-th round until that falls to ewma_alpha), so early rounds
are not over-weighted and a restart settles as fast as the data allow. Averaging numerator and
denominator separately (rather than averaging per-sample ratios) weights each round by how much
work it carried, so a quiet round or a round in which more connections arrived than finished
(negative finishes are kept: they cancel against later rounds) cannot throw the estimate.

Why not active connections / CPU: the active count includes the connections that are waiting.
It grows with queueing long before the CPU shows more work (new connections count at once, their
CPU follows later), and a saturated server's backlog grows without bound while its CPU is pinned
at 1. Read as capacity, that makes a backlogged member look stronger the more it lags, so it is
given more share and lags further (positive feedback). Throughput per CPU has no such bias: a
saturated member finishes connections at exactly its capacity, a draining one finishes more than
arrive, and an idle-ish one finishes few but at little CPU. So saturation needs no special case
when rates are reported, and a member saturated at its very first sample is estimated right.

When the median of the last three per-round samples differs from the estimate by more than
`jump` and by more than three times the samples' own scatter (a running RMS of their relative
deviation), both EWMAs restart as running means of the last two rounds (a median beyond the
gap needs two rounds past the change): a real change is followed within two samples, while
noise and a single odd round are still averaged out. Rounds below `min_cpu` carry no
information and are skipped, as are rounds without a new report (no time elapsed).

Fallback without a connection rate (conn_rate NaN): conns / cpu, converted to completions by the
pool's connection lifetime (learnt as conns / completions from members that do report rates,
1 s if none does), and only while the member is unsaturated and has not been saturated for
`holdoff` seconds (a draining backlog reads wrong both ways). A saturated member without rates
gives no usable sample: its estimate (the unsaturated one, or its first reading) is cut by the
mean utilisation of the unsaturated members (right when demand just meets capacity, never too
deep) at most once per `holdoff` seconds while its connections keep piling up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policy.base import BoolArray, FloatArray, Observations

WINDOW = 3
"""Rounds in the jump detector's window."""
SIGMAS = 3.0
"""A change counts only beyond this many times the samples' scatter: at 2, noise alone restarted
some estimate about once a run in a 16-member pool (and moved its share by 10 % for a while)."""
SCATTER_ALPHA = 0.1
"""EWMA weight of the squared relative deviation behind the jump detector's scatter."""


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
    """Completions per CPU-second per member; NaN where nothing is known yet."""

    def __init__(self, n_members: int, settings: EstimatorSettings) -> None:
        """Start knowing nothing."""
        self.s = settings
        self.estimate = np.full(n_members, np.nan)
        self.work = np.zeros(n_members)
        self.busy = np.zeros(n_members)
        self.count = np.zeros(n_members)
        self.evidence = np.zeros(n_members)
        """Connections seen finishing in the samples folded in so far (kept across jumps and
        absences: it says how much the estimator has seen of the member, not of its state)."""
        self.scatter = np.full(n_members, np.nan)
        self.recent = np.full((n_members, WINDOW, 2), np.nan)
        self.lifetime = np.full(n_members, np.nan)
        self.saturated_at = np.full(n_members, np.nan)
        self.cut_at = np.full(n_members, np.nan)
        self.last_conns = np.full(n_members, np.nan)
        self.last_at = np.full(n_members, np.nan)
        self.moved = np.zeros(n_members, dtype=np.bool_)
        self.saturated = np.zeros(n_members, dtype=np.bool_)
        self.was_saturated = np.zeros(n_members, dtype=np.bool_)

    def pause(self, members: BoolArray) -> None:
        """Keep what `members` can do but not how they were doing (they left for a while).

        A member that leaves (down, drained) and comes back is usually the same server: its
        capacity estimate stays, while its report history is dropped so that the first reports
        after its return are not compared with ones from before it left.
        """
        for arr in (self.last_conns, self.last_at, self.saturated_at, self.cut_at):
            arr[members] = np.nan
        self.recent[members] = np.nan

    def forget(self, members: BoolArray) -> None:
        """Drop everything known about `members` (they left the pool)."""
        for arr in (self.estimate, self.scatter, self.lifetime, self.saturated_at, self.cut_at):
            arr[members] = np.nan
        for arr in (self.last_conns, self.last_at):
            arr[members] = np.nan
        for arr in (self.work, self.busy, self.count, self.evidence):
            arr[members] = 0.0
        self.recent[members] = np.nan

    def update(self, now: float, obs: Observations, counted: BoolArray) -> None:
        """Fold this round's reports of `counted` members in.

        Afterwards `moved` marks members whose estimate jumped or was cut this round, and
        `saturated` those at or above the saturation CPU.
        """
        s = self.s
        cpu = np.nan_to_num(obs.cpu, nan=0.0)
        conns = np.nan_to_num(obs.conns, nan=0.0)
        at = now - obs.report_age
        with np.errstate(invalid="ignore"):
            elapsed = at - self.last_at
            new = counted & np.isfinite(at) & ~(elapsed <= 1e-9)
            growth = np.where(new, (conns - self.last_conns) / elapsed, np.nan)
        finished = obs.conn_rate - growth
        ok = new & (cpu >= s.min_cpu)
        self.was_saturated = np.where(counted, self.saturated, self.was_saturated)
        self.saturated = counted & (cpu >= s.saturation)
        measured = ok & np.isfinite(finished)
        self._learn_lifetime(measured & ~self.saturated, conns)
        blind = ok & ~measured & ~np.isfinite(obs.conn_rate)
        self.moved = np.zeros(len(cpu), dtype=np.bool_)
        calm = blind & ~self.saturated & ~(now - self.saturated_at < s.holdoff)
        self.saturated_at[blind & self.saturated] = now
        # Without rates, conns / lifetime stands in for completions (see the module docstring).
        lifetime = self._pool_lifetime()
        finished = np.where(calm, conns / lifetime, finished)
        folded = measured | calm
        # The work and the CPU it took, over the same span (`policy.spans`).
        spent = cpu if obs.cpu_mean is None else np.nan_to_num(obs.cpu_mean, nan=0.0)
        self._fold(folded, finished, spent, cpu)
        # A saturated member without rates is read by its cut below: that reading counts too.
        read = np.where(folded, np.maximum(finished, 0.0), 0.0)
        read = np.where(blind & self.saturated, conns / lifetime, read)
        self.evidence += np.nan_to_num(read * elapsed, nan=0.0, posinf=0.0)
        self._cut(
            now,
            where=blind & self.saturated,
            reading=conns / lifetime,
            cpu=cpu,
            conns=conns,
            calm=calm,
        )
        reported = np.isfinite(at)
        self.last_conns = np.where(reported, conns, np.nan)
        self.last_at = np.where(reported, at, np.nan)

    def _learn_lifetime(self, where: BoolArray, conns: FloatArray) -> None:
        """Track conns / smoothed completions (Little's law) where both are meaningful."""
        with np.errstate(divide="ignore", invalid="ignore"):
            life = np.where(where & (self.work > 0) & (conns > 0), conns / self.work, np.nan)
        have = np.isfinite(life)
        first = have & np.isnan(self.lifetime)
        self.lifetime[first] = life[first]
        again = have & ~first
        self.lifetime[again] += self.s.ewma_alpha * (life[again] - self.lifetime[again])

    def pool_lifetime(self) -> float:
        """The pool's typical connection lifetime in seconds (1.0 while nothing is learnt)."""
        return self._pool_lifetime()

    def _pool_lifetime(self) -> float:
        """The pool's typical connection lifetime in seconds (1.0 while nothing is learnt)."""
        known = self.lifetime[np.isfinite(self.lifetime) & (self.lifetime > 0)]
        return float(np.median(known)) if len(known) else 1.0

    def _fold(
        self, where: BoolArray, finished: FloatArray, cpu: FloatArray, latest_cpu: FloatArray
    ) -> None:
        """Add one (completions, cpu) round to the EWMAs of `where`; jump on a clear change.

        `cpu` is the CPU over the completions' span, `latest_cpu` the latest report's (read
        for a capacity drop, below).
        """
        s = self.s
        self.count[where] += 1.0
        a = np.maximum(s.ewma_alpha, 1.0 / self.count[where])
        self.work[where] += a * (finished[where] - self.work[where])
        self.busy[where] += a * (cpu[where] - self.busy[where])
        self.recent[where] = np.concatenate(
            (self.recent[where, 1:], np.stack((finished[where], cpu[where]), axis=-1)[:, None]),
            axis=1,
        )
        ratio = self.recent[:, :, 0] / np.maximum(self.recent[:, :, 1], s.cpu_floor)
        full = where & ~np.isnan(ratio).any(axis=1) & np.isfinite(self.estimate)
        median = np.full(len(where), np.nan)
        median[full] = np.median(ratio[full], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            gap = np.abs(median - self.estimate) / self.estimate
        noise = np.nan_to_num(np.sqrt(self.scatter), nan=0.0)
        jumped = full & (gap > s.jump) & (gap > SIGMAS * noise)
        # A saturated member finishing clearly less per CPU-second than estimated has lost
        # capacity: its sample measures the new capacity directly (CPU pinned, completions at
        # capacity), so one sample is enough, and waiting two more rounds is what lets its
        # backlog pile up. Only downward: a saturated sample never shows more capacity. It is
        # read with the latest report's CPU, pinned by the drop: the span's mean CPU includes
        # the seconds before it, when a CPU-second finished more, and read 1.4x the new capacity
        # after the bench's capacity step (1.15x this way; the next rounds outweigh it).
        latest = finished / np.maximum(latest_cpu, s.cpu_floor)
        with np.errstate(divide="ignore", invalid="ignore"):
            drop = (self.estimate - latest) / self.estimate
        # Only on entering saturation: in a member saturated all along (a backlog from before
        # we knew it) arrivals and completions lag share changes, and one sample misleads.
        sudden = where & self.saturated & ~self.was_saturated & np.isfinite(drop)
        sudden &= drop > s.jump
        sudden &= drop > SIGMAS * noise
        if sudden.any():
            self.work[sudden] = finished[sudden]
            self.busy[sudden] = latest_cpu[sudden]
            # Counted as half a round: the next, calmer rounds outweigh this one-off reading.
            self.count[sudden] = 0.5
            self.recent[sudden] = np.nan
            self.recent[sudden, -1] = np.stack((finished[sudden], latest_cpu[sudden]), axis=-1)
            self.moved |= sudden
        jumped &= ~sudden
        if jumped.any():
            # At least the last two rounds are past the change: restart a running mean there.
            self.work[jumped] = self.recent[jumped, -2:, 0].mean(axis=1)
            self.busy[jumped] = self.recent[jumped, -2:, 1].mean(axis=1)
            self.count[jumped] = 2.0
            self.recent[jumped] = np.nan
            self.moved |= jumped
        self._publish(where)
        with np.errstate(divide="ignore", invalid="ignore"):
            latest = finished / np.maximum(cpu, s.cpu_floor)
            deviation = (latest - self.estimate) / self.estimate
        track = where & ~jumped & np.isfinite(deviation)
        first = track & np.isnan(self.scatter)
        self.scatter[first] = deviation[first] ** 2
        again = track & ~first
        self.scatter[again] += SCATTER_ALPHA * (deviation[again] ** 2 - self.scatter[again])

    def _publish(self, where: BoolArray) -> None:
        """estimate = EWMA(completions) / max(EWMA(cpu), cpu_floor); unknown until positive."""
        value = self.work[where] / np.maximum(self.busy[where], self.s.cpu_floor)
        self.estimate[where] = np.where(value > 0, value, np.nan)

    def _cut(
        self,
        now: float,
        *,
        where: BoolArray,
        reading: FloatArray,
        cpu: FloatArray,
        conns: FloatArray,
        calm: BoolArray,
    ) -> None:
        """Lower the estimates of saturated members without rates (see the module docstring)."""
        if not where.any():
            return
        s = self.s
        self.moved |= where
        level = min(float(cpu[calm].mean()) if calm.any() else s.saturation, s.saturation)
        unknown = where & np.isnan(self.estimate)
        self.work[unknown] = reading[unknown] * level
        self.busy[unknown] = 1.0
        self.count[unknown] = 1.0
        self.estimate[unknown] = reading[unknown] * level
        self.cut_at[unknown] = now
        growing = ~(conns < self.last_conns)
        due = where & ~unknown & growing & ~(now - self.cut_at < s.holdoff)
        self.work[due] *= level
        self.estimate[due] *= level
        self.cut_at[due] = now
