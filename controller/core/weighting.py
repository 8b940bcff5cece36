"""From loads to integer weights, per pool (pure; wraps `policy`).

`PoolWeighting` keeps one policy instance per pool, feeds it `policy.Observations` built from the
load book's view of each member, and quantizes its shares into integer weights summing to
2**weight_bits.

A member that turned active less than `slow_start` seconds ago (added, undrained, activated)
gets its share scaled by the fraction of that time elapsed, so it ramps up from nothing instead
of taking its full share of new connections at once (HAProxy's `slowstart`, for every policy).
When the member list or a configured weight changes, the policy is rebuilt seeded with what it
asked for so far; a new or re-weighted member is seeded with its configured weight, scaled to
the others' seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

import policy
from controller.core.loadbook import DipLoad
from controller.core.pools import BackendPool, PoolMember
from policy.autoscale import MemberState


class PoolWeighting:
    """The policy of one pool and the weights it asks for."""

    def __init__(
        self,
        pool: BackendPool,
        policy_name: str,
        params: Mapping[str, float],
        weight_bits: int,
        slow_start: float = 0.0,
    ) -> None:
        self.pool = pool
        self.slow_start = slow_start
        self.policy_name = policy_name
        self.params = dict(params)
        self.total = 1 << weight_bits
        self.generation = -1
        self.desired: tuple[int, ...] = ()
        self.no_live_member = False
        self._policy: policy.Policy | None = None
        self._spans = policy.ReportSpans(0, 2)
        self._member_names = [m.dip for m in pool]
        self._configured = [m.weight for m in pool]
        self._basis: tuple[float, ...] = ()
        """Each member's weight as the policy last asked for it, before any slow start: the
        seed of a rebuilt policy (a ramping member's reduced weight must not become its prior)."""
        self.desired = self.initial()
        self._rebuild(self.desired)

    def initial(self) -> tuple[int, ...]:
        """Weights from the configuration: active members by configured weight."""
        raw = np.array(
            [m.weight if m.state is MemberState.ACTIVE else 0 for m in self.pool], dtype=np.float64
        )
        if raw.sum() <= 0:
            return tuple(0 for _ in raw)
        return tuple(int(w) for w in policy.quantize(raw / raw.sum(), self.total))

    def _rebuild(self, basis: Sequence[float]) -> None:
        """A fresh policy for the current members, seeded from `basis` (member order)."""
        seed = self._seed(basis)
        self._policy = policy.make_policy(self.policy_name, len(self.pool), seed, self.params)
        self._spans = policy.ReportSpans(len(self.pool), 2)
        self._member_names = [m.dip for m in self.pool]
        self._configured = [m.weight for m in self.pool]
        self.generation = self.pool.generation
        self._basis = tuple(seed)

    def _basis_now(self) -> list[float]:
        """The basis in the pool's current member order (0 for a member new to it)."""
        old = dict(zip(self._member_names, self._basis, strict=False))
        return [old.get(m.dip, 0.0) for m in self.pool]

    def _seed(self, weights: Sequence[float]) -> list[float]:
        """The policy's initial weights: `weights` for members seeded before with an unchanged
        configured weight, the configured weight (scaled to those) for the others."""
        before = dict(zip(self._member_names, self._configured, strict=True))
        members = list(self.pool)
        kept = [before.get(m.dip) == m.weight for m in members]
        # The scale between configured weights and seeds, from members holding a share.
        scaled = [(w, m.weight) for m, w, k in zip(members, weights, kept, strict=True) if k and w]
        seeded = sum(w for w, _ in scaled)
        configured = sum(c for _, c in scaled)
        scale = seeded / configured if seeded > 0 and configured > 0 else 1.0
        seed = [
            float(w) if k else m.weight * scale
            for m, w, k in zip(members, weights, kept, strict=True)
        ]
        return seed if any(seed) else [1.0] * len(members)

    def switch_policy(self, policy_name: str, params: Mapping[str, float]) -> None:
        """Replace the policy, seeded with the weights asked for now: nothing moves until the
        new policy's next round, and then only through the rollout's rate limit and dead-band.
        PolicyError (nothing changed) for an unknown name or bad parameters."""
        desired, basis = self.current(), self._basis_now()
        previous = (self.policy_name, self.params)
        self.policy_name, self.params = policy_name, dict(params)
        try:
            self._rebuild(basis)
        except policy.PolicyError:
            self.policy_name, self.params = previous
            raise
        self.desired = desired

    def _ramp(
        self, now: float, members: Sequence[PoolMember], live: npt.NDArray[np.bool_]
    ) -> npt.NDArray[np.float64]:
        """Each member's slow-start factor (1 when none applies)."""
        if self.slow_start <= 0:
            return np.ones(len(members))
        ramp = np.array(
            [min(1.0, max(0.0, (now - m.since) / self.slow_start)) for m in members],
            dtype=np.float64,
        )
        # A ramp only means something beside a member at full share: a pool whose live members
        # all just started takes its connections at once, as at start-up.
        return ramp if bool(np.any(live & (ramp >= 1.0))) else np.ones(len(members))

    def current(self) -> tuple[int, ...]:
        """The desired weights in the pool's current member order (0 for a member added since
        the last update; a removed member's weight left out), so a rollout between a membership
        change and the next policy round never pairs weights with the wrong members."""
        if self.generation == self.pool.generation:
            return self.desired
        old = dict(zip(self._member_names, self.desired, strict=False))
        return tuple(old.get(m.dip, 0) for m in self.pool)

    def update(self, now: float, loads: Mapping[str, DipLoad]) -> tuple[int, ...]:
        """Run the policy on the latest loads; returns the desired weights (member order)."""
        if self.generation != self.pool.generation:
            desired = self.current()
            self._rebuild(self._basis_now())
            self.desired = desired
        members = list(self.pool)
        views = [loads.get(m.dip) for m in members]
        live = np.array(
            [
                m.state is MemberState.ACTIVE and (v is None or v.live)
                for m, v in zip(members, views, strict=True)
            ],
            dtype=np.bool_,
        )
        cpu = np.array([v.cpu if v else 0.0 for v in views], dtype=np.float64)
        rate = _floats([v.conn_rate if v else None for v in views])
        span_rate, span_cpu = self._spans.means(
            at=_floats([v.last_seen if v else None for v in views]),
            origin=_floats([v.arrived_since if v else None for v in views]),
            counts=np.column_stack(
                (
                    _floats([v.arrived if v else None for v in views]),
                    _floats([v.busy if v else None for v in views]),
                )
            ),
            latest=np.column_stack((rate, cpu)),
        ).T
        obs = policy.Observations(
            cpu=cpu,
            conns=np.array([float(v.conns) if v else 0.0 for v in views], dtype=np.float64),
            conn_rate=span_rate,
            report_age=np.array([v.report_age if v else math.inf for v in views], dtype=np.float64),
            live=live,
            cpu_mean=span_cpu,
        )
        assert self._policy is not None
        shares = np.asarray(self._policy.update(now, obs), dtype=np.float64)
        shares = np.where(live, np.clip(shares, 0.0, None), 0.0)
        if shares.sum() > 0:  # members out of service keep theirs, for when they return
            full = shares / shares.sum() * self.total
            self._basis = tuple(float(b) for b in np.where(live, full, np.array(self._basis)))
        shares = shares * self._ramp(now, members, live)
        if shares.sum() <= 0:
            # No live member: keep the current weights (fail static) rather than drop the VIP's
            # new connections because every agent went quiet at once.
            self.no_live_member = True
            held = np.array(
                self.desired if len(self.desired) == len(members) else [0] * len(members)
            )
            active = np.array([m.state is MemberState.ACTIVE for m in members], dtype=np.bool_)
            kept = np.where(active, held, 0).astype(np.float64)
            if kept.sum() > 0:
                self.desired = tuple(
                    int(w) for w in policy.quantize(kept / kept.sum(), self.total, held)
                )
            else:
                self.desired = tuple(0 for _ in members)
        else:
            self.no_live_member = False
            current = list(self.desired) if len(self.desired) == len(members) else None
            weights = policy.quantize(shares / shares.sum(), self.total, current)
            self.desired = tuple(int(w) for w in weights)
        return self.desired


def _floats(values: Sequence[float | None]) -> npt.NDArray[np.float64]:
    """An array of `values` with NaN for None."""
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)
