"""From loads to integer weights and dip_table buckets, per pool (pure; wraps `policy`).

`PoolWeighting` keeps one policy instance per pool, feeds it `policy.Observations` built from the
load book's view of each member, and quantizes its shares into integer weights summing to
2**weight_bits. `pool_buckets` turns weights into the dip_table content of one pool, moving few
hash values from what the active version holds (`held_entries`) within the table room of one
slot (`entry_budget`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

import policy
from controller.config import AutoscaleConfig
from controller.core.pools import BackendPool, MemberState
from controller.core.shadow import BucketKey, DipTarget
from policy.buckets import PrefixEntry, popcount_bound, prefix_entries


@dataclass(frozen=True)
class MemberLoad:
    """What the load feed says about one DIP (a view of controller.core.loadbook.DipLoad)."""

    state: str  # "up" | "down" | "blackout" | "drain"
    cpu: float
    conns: int
    conn_rate: float | None
    report_age: float
    reported: bool


def member_up(load: MemberLoad | None) -> bool:
    """A member may take new connections: reported up, or never reported at all (no agent)."""
    return load is None or not load.reported or load.state == "up"


class PoolWeighting:
    """The policy of one pool and the weights it asks for."""

    def __init__(
        self,
        pool: BackendPool,
        policy_name: str,
        params: Mapping[str, float],
        weight_bits: int,
    ) -> None:
        self.pool = pool
        self.policy_name = policy_name
        self.params = dict(params)
        self.total = 1 << weight_bits
        self.generation = -1
        self.desired: tuple[int, ...] = ()
        self.no_live_member = False
        self._policy: policy.Policy | None = None
        self._rebuild(self.initial())

    def initial(self) -> tuple[int, ...]:
        """Weights from the configuration: active members by configured weight."""
        raw = np.array(
            [m.weight if m.state is MemberState.ACTIVE else 0 for m in self.pool], dtype=np.float64
        )
        if raw.sum() <= 0:
            return tuple(0 for _ in raw)
        return tuple(int(w) for w in policy.quantize(raw / raw.sum(), self.total))

    def _rebuild(self, weights: Sequence[int]) -> None:
        seed = [float(w) if w > 0 else 0.0 for w in weights]
        if not any(seed):
            seed = [1.0] * len(weights)
        self._policy = policy.make_policy(self.policy_name, len(self.pool), seed, self.params)
        self._member_names = [m.dip for m in self.pool]
        self.generation = self.pool.generation
        self.desired = tuple(weights)

    def current(self) -> tuple[int, ...]:
        """The desired weights in the pool's current member order (0 for a member added since
        the last update; a removed member's weight left out), so a rollout between a membership
        change and the next policy round never pairs weights with the wrong members."""
        if self.generation == self.pool.generation:
            return self.desired
        old = dict(zip(self._member_names, self.desired, strict=False))
        return tuple(old.get(m.dip, 0) for m in self.pool)

    def update(self, now: float, loads: Mapping[str, MemberLoad]) -> tuple[int, ...]:
        """Run the policy on the latest loads; returns the desired weights (member order)."""
        if self.generation != self.pool.generation:
            old = dict(zip(self._member_names, self.desired, strict=False))
            self._rebuild([old.get(m.dip, 0) for m in self.pool])
        members = list(self.pool)
        views = [loads.get(m.dip) for m in members]
        live = np.array(
            [
                m.state is MemberState.ACTIVE and member_up(v)
                for m, v in zip(members, views, strict=True)
            ],
            dtype=np.bool_,
        )
        obs = policy.Observations(
            cpu=np.array([v.cpu if v else 0.0 for v in views], dtype=np.float64),
            conns=np.array([float(v.conns) if v else 0.0 for v in views], dtype=np.float64),
            conn_rate=np.array(
                [v.conn_rate if v and v.conn_rate is not None else math.nan for v in views],
                dtype=np.float64,
            ),
            report_age=np.array(
                [v.report_age if v and v.reported else math.inf for v in views], dtype=np.float64
            ),
            live=live,
        )
        assert self._policy is not None
        shares = np.asarray(self._policy.update(now, obs), dtype=np.float64)
        shares = np.where(live, np.clip(shares, 0.0, None), 0.0)
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


def pool_buckets(
    pool_id: int,
    members: Sequence[DipTarget],
    weights: Sequence[int],
    hash_bits: int,
    previous: Sequence[PrefixEntry] | None = None,
    *,
    max_entries: int | None = None,
) -> tuple[dict[BucketKey, DipTarget], list[PrefixEntry]]:
    """dip_table content of one pool for `weights`, and the prefix entries behind it.

    `previous` (default None: the fresh, fewest-entries layout) and `max_entries` (default None:
    prefix_entries' default budget) are passed to `policy.buckets.prefix_entries`.
    """
    w = np.asarray(weights, dtype=np.int64)
    entries = prefix_entries(w, hash_bits, previous or None, max_entries)
    content = {BucketKey(pool_id, e.value, e.prefix_len): members[e.index] for e in entries}
    return content, entries


def held_entries(
    pool_id: int, members: Sequence[DipTarget], held: Mapping[BucketKey, DipTarget]
) -> list[PrefixEntry]:
    """One pool's prefix entries in a slot's content (`held`), as indices into `members`.

    Entries of DIPs no longer in the pool are left out: their hash values count as free.
    """
    index = {m: i for i, m in enumerate(members)}
    return [
        PrefixEntry(key.value, key.prefix_len, index[target])
        for key, target in held.items()
        if key.pool == pool_id and target in index
    ]


def entry_budget(weights: Sequence[int], table_size: int, slots: int, pools: int) -> int:
    """Entries one pool may use in one slot: twice the popcount bound, within an even share
    of the table, never below popcount.

    Twice popcount lets the layout move exactly the minimum of hash values; more room only
    lets fragments accumulate, which costs writes at every rollout.
    """
    bound = popcount_bound(weights)
    return max(min(2 * bound, table_size // (slots * max(pools, 1))), bound)


class PoolAutoscaling:
    """policy.autoscale for one pool: which standby member to activate, which to drain.

    The autoscaler sees as DOWN (never a candidate) every member it must not activate: one
    whose agent says it is not up, and one draining at the operator's request (only a member
    the autoscaler drained itself may be re-activated while it drains).
    """

    def __init__(self, pool: BackendPool, params: AutoscaleConfig) -> None:
        from policy import autoscale  # noqa: PLC0415 - only when autoscaling is enabled

        self.pool = pool
        self._autoscale = autoscale
        self._scaler = autoscale.Autoscaler(
            autoscale.AutoscaleParams(
                target=params.target,
                tolerance=params.tolerance,
                min_active=params.min_active,
                max_active=params.max_active,
                max_step_up=params.max_step_up,
                stabilisation_window=params.stabilisation_window,
                cooldown_up=params.cooldown_up,
                cooldown_down=params.cooldown_down,
            )
        )
        self.drained: set[str] = set()
        """Members this autoscaler drained (to standby) and that still drain."""

    def decide(self, now: float, loads: Mapping[str, MemberLoad]) -> tuple[list[str], list[str]]:
        """(members to activate, members to drain) for the pool's current utilisation."""
        members = list(self.pool)
        views = [loads.get(m.dip) for m in members]
        utilisation = np.array([v.cpu if v else 0.0 for v in views], dtype=np.float64)
        self.drained &= {
            m.dip for m in members if m.state is MemberState.DRAINING and not m.remove_when_drained
        }
        states = [
            self._autoscale.MemberState(
                MemberState.DOWN.value
                if not member_up(v)
                or (m.state is MemberState.DRAINING and m.dip not in self.drained)
                else m.state.value
            )
            for m, v in zip(members, views, strict=True)
        ]
        decision = self._scaler.decide(now, utilisation, states)
        drain = [members[i].dip for i in decision.drain]
        self.drained.update(drain)
        return [members[i].dip for i in decision.activate], drain
