"""The default `ratio` policy: shares proportional to estimated capacity, with a damped trim.

Capacity estimate (`policy.capacity`): connections a member completes per CPU-second, the EWMA
of its completions (arrivals minus the growth of its active connections) over the EWMA of its
CPU, with jumps for real changes. Queue length is not capacity: a backlogged member has many
connections but completes no more than its capacity, so it is not rewarded for lagging. The
estimate does not depend on the shares we set, so following it is open loop: a correct estimate
equalises utilisation in one round and cannot oscillate.

Trim toward equal utilisation, for what the estimate gets wrong (e.g. CPU that does not scale
with connections). A per-member factor exp(x_i) multiplies the estimate. The relative
utilisation error e_i = (u_i - mean u) / mean u is smoothed, f <- f + a (e - f), and x
integrates it outside a dead-band: x <- x - g f. Utilisation follows the share with gain 1 in
relative terms and the controller sees it one report period late, e[k] = x[k-1] + bias, so the
loop's characteristic polynomial is (z - 1)(z - (1 - a)) + g a. Its roots are real (no
oscillation, no overshoot) iff g <= a / 4, and inside the unit circle since their product
1 - a + g a < 1. Defaults a = 0.2 and g = 0.04 sit under that bound (0.05), leaving a margin for
the extra lag of connection lifetimes. (Without the filter, a = 1, the polynomial is z^2 - z + g
and the bound is the classic 1/4.) The factor is bounded (correction_limit), leaks back toward 1
(leak), and is held while a member is saturated or its estimate jumps: those transients are the
estimate's business (a saturated member's utilisation error says nothing about how far it is
over), and integrating them would overshoot.

Transients (issue 14). Each change is feed-forward, a hold or a filter, so none adds a loop:
- A capacity drop is followed at the first report that shows it: a member entering saturation
  whose completions per CPU-second fall clearly (more than `jump` and 3x the samples' scatter)
  below the estimate restarts its estimate from that sample (`policy.capacity`). A saturated
  sample is a direct reading of capacity, so this is open loop like the estimate itself; it
  fires only downward and only on entering saturation (a member saturated all along, with a
  backlog from before, reads wrong while its share moves).
- Drain: while a member reports saturation, arrivals equal to its backlog / drain_time are
  withheld (backlog = connections beyond utilisation x capacity x lifetime, Little's law, with
  the capacity the shares follow), at most half its share, and only beyond the count's Poisson
  noise (3 sqrt(held)); the others take what is withheld in proportion to share x headroom
  below saturation. The backlog reading shrinks as it drains and the cut stops with the
  saturation, so the cut is a bounded pulse, not a gain in a loop.
- The trim integrates nothing while a member is saturated or within two slow-start periods of
  joining: those utilisation errors are the transient's (drain, slow start), and integrating
  them used to over-allocate a returning member for tens of seconds. A member that leaves
  (down, drained) keeps its estimate and is readmitted at it, rather than re-learnt from the
  misleading reports of its ramp-up; its history is dropped so no jump is detected across
  its absence. An idle pool (every member seen and below `idle_load`) keeps its shares: with
  nobody near saturation, unequal utilisation costs nothing and moving only churns.
- A saturated member's cut (its restarted estimate plus the drain) is taken in one round; the
  max_step rail spreads every other move. The rail is there so that a wrong estimate cannot
  hand a member more than it can take; a cut from a member that reports saturation cannot do
  that, and spreading it over rounds only let the backlog grow (the round after the event used
  to be as hot as the event's own).
- After a drain or an estimate jump the trim stays held for `trim_hold` seconds (a drained
  backlog keeps its member busier than its share for a few connection lifetimes, an error the
  trim used to integrate and then unwind for tens of seconds), and a member whose estimate
  restarts loses its trim (the correction was for the estimate it replaces).
- Completions are arrivals minus growth over the span between the two reports a round sees; the
  arrivals and the CPU they are divided by come from the same span (`policy.spans`), not from
  the last report's half-second, which misread a member whose share was moving by the move, and
  one whose CPU fell within the span (a backlog draining) by the fall.
- An estimate is trusted as far as the connections behind it: c = min(1, seen / evidence), and
  the capacity used is estimate^c x prior^(1-c) (prior: the weight the policy started from,
  scaled to the estimates). At hundreds of connections a second c is 1 after a round or two;
  at a few a second (the demo) the first rounds' estimates are mostly counting noise, and
  following them swung a server's share to 0.5 right after a live switch to `ratio`. c reaches
  1 (a blend that only tended to 1 left the prior's pull in the shares for minutes). An
  estimate from N finished connections is off by about 1/sqrt(N): at 60 (the first default)
  13 %, enough to lift a 0.4 share by 0.05 in most low-rate runs; at 200, 7 %.
The stability argument above is unchanged: the trim loop and its bound are as before, and the
new parts only act on the estimate (open loop), hold the trim, or let a cut through at once.

Safety rails: clamp to [clamp_low, clamp_high] x the mean share; each round a share moves at most
max_step x the mean share (the whole move is scaled, so shares still sum to 1; a saturated
member's cut is not); no move is made unless some share would change by more than hold_band of
itself (no churn from noise); a new reporter counts only after `blackout` seconds of reports
(until then: its configured weight, scaled to the others' estimates); a member that (re)joins
ramps up over `slow_start` seconds; a member silent for more than `expiry` seconds gets the mean
estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from policy.base import BoolArray, FloatArray, Observations, normalise_live
from policy.capacity import SIGMAS, CapacityEstimator, EstimatorSettings
from policy.params import check_range
from policy.simple import prior_weights


@dataclass(frozen=True)
class RatioParams:
    """Parameters of the ratio policy (every field has a default)."""

    ewma_alpha: float = 0.02
    """Weight of a new round in the EWMAs of completions and CPU, after a running mean over
    the first 1/ewma_alpha rounds (default 0.02: counted completions are noisy, and real
    changes are followed by the jump)."""
    jump: float = 0.15
    """Relative gap of the last-3 median from the estimate that restarts the EWMAs from the
    last two rounds, if also above three times the samples' scatter (default 0.15)."""
    cpu_floor: float = 0.05
    """Smallest CPU used as a divisor (default 0.05)."""
    min_cpu: float = 0.02
    """Samples below this CPU carry no capacity information and are skipped (default 0.02)."""
    saturation: float = 0.9
    """CPU at or above which a member counts as saturated: its trim is held, and without a
    connection rate its conns / cpu is no capacity sample (default 0.9)."""
    saturation_holdoff: float = 2.0
    """Without a connection rate: seconds between two saturation cuts of one member, and after
    a saturation ends before its samples count again (default 2.0)."""
    gain: float = 0.04
    """Trim gain per round; no oscillation needs gain <= trim_alpha / 4 (default 0.04)."""
    trim_alpha: float = 0.2
    """Smoothing of the utilisation error the trim integrates (default 0.2)."""
    dead_band: float = 0.05
    """Smoothed relative utilisation error the trim ignores (default 0.05)."""
    correction_limit: float = 2.0
    """The trim factor stays within [1/limit, limit] (default 2.0)."""
    leak: float = 0.01
    """Fraction of the trim forgotten each round (default 0.01)."""
    clamp_low: float = 0.1
    """Smallest share as a multiple of the mean live share (default 0.1)."""
    clamp_high: float = 10.0
    """Largest share as a multiple of the mean live share (default 10.0)."""
    max_step: float = 0.5
    """Largest change of a share per round, as a multiple of the mean live share, except a
    saturated member's cut (default 0.5)."""
    hold_band: float = 0.03
    """No move unless a share would change by more than this fraction of itself (default 0.03)."""
    blackout: float = 2.0
    """Seconds of reports before a new reporter's estimate counts (default 2.0)."""
    slow_start: float = 5.0
    """Seconds over which a joining member ramps up from clamp_low to its full share
    (default 5.0)."""
    expiry: float = 3.0
    """Report age in seconds after which a member gets the mean estimate (default 3.0)."""
    drain_time: float = 2.0
    """Seconds over which a saturated member's backlog is drained by withholding arrivals
    (default 2.0; 0 disables the drain)."""
    trim_hold: float = 8.0
    """Seconds the trim stays held after the last round in which a drain cut a member's share or
    an estimate jumped (default 8.0): a drain's tail leaves utilisation errors of its own."""
    evidence: float = 200.0
    """Connections a member must be seen finishing before its estimate is taken alone; until
    then it is blended with its prior (the configured or current weight) by c = seen / evidence
    (default 200: an estimate from N finished connections is off by about 1/sqrt(N), 7 % at
    200, 13 % at 60; at hundreds a second one round is enough)."""
    idle_load: float = 0.3
    """While every counted member's CPU is below this, shares stay put unless membership
    changes: nobody is near saturation, so moving would only churn (default 0.3)."""

    def __post_init__(self) -> None:
        """Validate ranges."""
        check_range(self, "ewma_alpha", 1e-6, 1.0)
        check_range(self, "jump", 0.0)
        check_range(self, "cpu_floor", 1e-6, 1.0)
        check_range(self, "min_cpu", 0.0, 1.0)
        check_range(self, "saturation", 0.0, 1.0)
        check_range(self, "saturation_holdoff", 0.0)
        check_range(self, "gain", 0.0, 1.0)
        check_range(self, "trim_alpha", 1e-6, 1.0)
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
        check_range(self, "drain_time", 0.0)
        check_range(self, "trim_hold", 0.0)
        check_range(self, "evidence", 0.0)
        check_range(self, "idle_load", 0.0, 1.0)


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

    def __init__(
        self, n_members: int, initial_weights: Sequence[float], params: RatioParams
    ) -> None:
        """Start with no estimates: shares follow the configured weights until reports count."""
        self.params = params
        self.prior = prior_weights(n_members, initial_weights)
        self.estimator = CapacityEstimator(
            n_members,
            EstimatorSettings(
                params.ewma_alpha,
                params.jump,
                params.cpu_floor,
                params.min_cpu,
                params.saturation,
                params.saturation_holdoff,
            ),
        )
        self.estimate = self.estimator.estimate
        self.trim = np.zeros(n_members)
        self.trim_error = np.zeros(n_members)
        self.hold = np.zeros(n_members, dtype=np.bool_)
        self.first_report = np.full(n_members, np.nan)
        self.live_since = np.full(n_members, -math.inf)
        self.unsettled_at = -math.inf
        """The last round in which a drain cut a member's share or an estimate jumped."""
        self.was_live: BoolArray | None = None
        self.shares = np.zeros(n_members)
        self.live_before: BoolArray | None = None

    def update(self, now: float, obs: Observations) -> FloatArray:
        """New shares from this round's observations."""
        p = self.params
        live = obs.live.astype(np.bool_)
        self._track_membership(now, obs, live)
        fresh = live & (obs.report_age <= p.expiry)
        counted = fresh & (now - self.first_report >= p.blackout)
        # A returning member's first reports describe its ramp-up, not its capacity (CPU lags
        # the connections it is handed): while it settles, a remembered estimate is kept as is.
        settling = live & (now - self.live_since < 2 * p.slow_start)
        remembered = np.isfinite(self.estimator.estimate)
        self.estimator.update(now, obs, counted & ~(settling & remembered))
        self.hold = self.estimator.moved | self.estimator.saturated
        self.estimate = self.estimator.estimate
        # A restarted estimate starts without the correction of the estimate it replaces.
        self.trim[self.estimator.moved] = 0.0
        self.trim_error[self.estimator.moved] = 0.0
        if self.estimator.moved.any():
            self.unsettled_at = now
        capacity = self._capacity(live, fresh, counted)
        # The trim corrects steady errors of the estimate. While a member ramps up after joining
        # (and for as long again, while its reports catch up) or one is saturated, and for
        # trim_hold seconds after the last drain or jump (a drained backlog's tail keeps its
        # member busier than its share for a few lifetimes), utilisation errors are the
        # transient's, made on purpose (slow start, drain): integrating them would push the
        # estimate off for tens of seconds afterwards.
        saturated = (counted & self.estimator.saturated).any()
        if not (settling.any() or saturated) and now - self.unsettled_at >= p.trim_hold:
            self._update_trim(obs, counted)
        else:
            self.trim *= 1.0 - p.leak
        target = normalise_live(capacity * np.exp(self.trim), live)
        # live_since is -inf for members live from the start: their ramp is 1 at once.
        ramp = np.clip((now - self.live_since) / max(p.slow_start, 1e-9), p.clamp_low, 1.0)
        target = normalise_live(target * ramp, live)
        target = self._drain(now, target, obs, live, counted, capacity=capacity)
        target = clamp_shares(target, live, p.clamp_low, p.clamp_high)
        idle = self._idle(obs, live, counted)
        self.shares = self._bounded_move(target, live, idle)
        self.live_before = live.copy()
        return self.shares.copy()

    def _drain(
        self,
        now: float,
        target: FloatArray,
        obs: Observations,
        live: BoolArray,
        counted: BoolArray,
        *,
        capacity: FloatArray,
    ) -> FloatArray:
        """Withhold arrivals from saturated members until their backlog is gone.

        A member whose capacity just fell holds the connections that piled up before we knew;
        at its new share it finishes them only as fast as its spare capacity allows. Its backlog
        is its connections beyond what it would hold at the pool's mean utilisation (Little's
        law: utilisation x capacity x connection lifetime); withholding backlog / drain_time
        arrivals per second drains it in about drain_time. The cut is feed-forward from the
        reported backlog, which shrinks as it drains, so it ends by itself; it applies only
        while the member reports saturation. A count within three Poisson deviations (3 x the
        root of the connections held) of the held connections is no backlog: a server holding
        five connections reads 100 % CPU now and then without any queue. `capacity` is the one
        the shares follow (blended with the prior while evidence is thin): a backlog is no surer
        than the estimate it is read against, and the raw estimate of a few connections made
        near-saturated members look backlogged and cut them by half in low-rate runs.
        """
        p = self.params
        if p.drain_time <= 0:
            return target
        cpu = np.nan_to_num(obs.cpu, nan=0.0)
        arrivals = float(np.nansum(np.where(live, obs.conn_rate, np.nan)))
        saturated = counted & (cpu >= p.saturation) & np.isfinite(self.estimate)
        if not saturated.any() or not arrivals > 0:
            return target
        calm = counted & ~saturated
        level = min(float(cpu[calm].mean()) if calm.any() else p.saturation, p.saturation)
        held = level * capacity * self.estimator.pool_lifetime()
        excess = np.nan_to_num(obs.conns, nan=0.0) - held - SIGMAS * np.sqrt(held)
        backlog = np.where(saturated, np.nan_to_num(excess, nan=0.0), 0.0)
        cut = np.maximum(backlog, 0.0) / p.drain_time / arrivals
        if (cut > 0).any():
            self.unsettled_at = now
        floor = p.clamp_low / max(int(np.count_nonzero(live)), 1)
        # At most half the share is withheld: the backlog reading is a report old.
        kept = np.maximum(target - cut, np.maximum(0.5 * target, np.minimum(target, floor)))
        out = np.where(saturated, kept, target)
        # What is withheld goes where there is room: to the other members in proportion to
        # their share times their headroom below saturation, not to their shares alone (early
        # on, while estimates still lean on an equal prior, that gave a busy member as much as
        # an idle one).
        room = np.where(live & ~saturated, target * np.maximum(p.saturation - cpu, 0.0), 0.0)
        if room.sum() > 0:
            out = out + float((target - out).sum()) * room / room.sum()
        return normalise_live(out, live)

    def _idle(self, obs: Observations, live: BoolArray, counted: BoolArray) -> bool:
        """Whether the pool is idle enough to hold the shares (see `idle_load`)."""
        if self.live_before is None or not np.array_equal(live, self.live_before):
            return False
        if not counted.any() or (live & ~counted).any():
            return False  # a member we cannot see (blackout, silent) may be anything but idle
        return bool(np.all(np.nan_to_num(obs.cpu[counted], nan=1.0) < self.params.idle_load))

    def _track_membership(self, now: float, obs: Observations, live: BoolArray) -> None:
        """Note first reports and (re)joins; forget what we knew about members that left."""
        if self.was_live is not None:
            joined = live & ~self.was_live
            self.live_since[joined] = now
            left = ~live & self.was_live
            self.estimator.pause(left)
            self.trim[left] = 0.0
            self.trim_error[left] = 0.0
            self.first_report[left] = np.nan
        self.was_live = live.copy()
        reported = np.isfinite(obs.report_age)
        new = reported & np.isnan(self.first_report) & live
        self.first_report[new] = now - obs.report_age[new]
        self.first_report[~reported] = np.nan

    def _capacity(self, live: BoolArray, fresh: BoolArray, counted: BoolArray) -> FloatArray:
        """Estimate where it counts; scaled prior in blackout; the mean estimate when expired."""
        # A member back from an outage is known at once: its remembered estimate, not the prior.
        known = (counted | fresh) & np.isfinite(self.estimate)
        if not known.any():
            return np.where(live, self.prior, 0.0)
        mean_est = float(self.estimate[known].mean())
        prior_known = float(self.prior[known].mean())
        scaled_prior = self.prior * (mean_est / prior_known if prior_known > 0 else 0.0)
        # An estimate from few finished connections is blended with the prior (geometrically:
        # shares are ratios), so that noise in the first rounds does not swing the shares.
        seen = self.estimator.evidence
        trust = np.minimum(1.0, seen / max(self.params.evidence, 1e-12))
        with np.errstate(divide="ignore", invalid="ignore"):
            blended = np.exp(trust * np.log(self.estimate) + (1 - trust) * np.log(scaled_prior))
        blended = np.where(np.isfinite(blended) & (blended > 0), blended, self.estimate)
        capacity = np.where(known, blended, np.where(fresh, scaled_prior, mean_est))
        capacity[~np.isfinite(capacity) | (capacity <= 0)] = mean_est
        return np.where(live, capacity, 0.0)

    def _update_trim(self, obs: Observations, counted: BoolArray) -> None:
        """Integrate the smoothed relative utilisation error outside the dead-band."""
        p = self.params
        self.trim *= 1.0 - p.leak
        cpu = np.nan_to_num(obs.cpu, nan=0.0)
        active = counted & ~self.hold
        if np.count_nonzero(counted) < 2:
            return
        mean_u = float(cpu[counted].mean())
        if mean_u < p.min_cpu:
            return
        error = np.where(active, (cpu - mean_u) / mean_u, 0.0)
        self.trim_error += p.trim_alpha * (error - self.trim_error)
        self.trim_error[~active] = 0.0
        push = np.where(np.abs(self.trim_error) > p.dead_band, self.trim_error, 0.0)
        limit = math.log(p.correction_limit)
        self.trim = np.clip(self.trim - p.gain * push, -limit, limit)
        self.trim[~counted] = 0.0

    def _bounded_move(self, target: FloatArray, live: BoolArray, idle: bool) -> FloatArray:
        """Move from the last shares toward `target` by at most max_step x the mean share.

        With `idle` (an idle pool, same members as before) the shares stay as they are.
        """
        p = self.params
        n_live = int(np.count_nonzero(live))
        if n_live == 0:
            return np.zeros(len(live))
        previous = np.where(live, self.shares, 0.0)
        if previous.sum() <= 0:
            return target
        previous = normalise_live(previous, live)
        delta = target - previous
        relative = np.abs(delta) / np.maximum(np.maximum(previous, target), 1e-12)
        if idle or float(relative[live].max()) <= p.hold_band:
            return previous
        # A saturated member's cut is taken whole: the rail guards against a wrong estimate
        # handing a member more than it can take, and a member that reports saturation cannot
        # take what it has. Taking the cut over rounds is what lets its backlog grow.
        cut = live & self.estimator.saturated & (delta < 0)
        bounded = np.where(cut, 0.0, delta)
        biggest = float(np.abs(bounded).max())
        scale = min(1.0, p.max_step / n_live / biggest) if biggest > 0 else 1.0
        return normalise_live(np.where(cut, target, previous + scale * bounded), live)
