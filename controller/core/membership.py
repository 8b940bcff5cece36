"""The VIPs' pools and what decides their weights, pure: members and their lifecycle, each
pool's policy (`PoolWeighting`) and autoscaling, and the VIPs a reload adds or removes.

Pool ids are the switch's: the file's order at a cold start, the ids vip_table holds at a warm
one (`adopt`), and the next unused id for a VIP a reload adds (ids are never reused within a
run). A VIP a reload removes stays, leaving, until its members have drained (`VipChanges`).
The core asks which pool a DIP is in and what weights each pool wants, and writes the switch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from controller.config import VIP_LIMIT_DEFAULT, Config, ControllerSettings, DipConfig, VipConfig
from controller.core.autoscaling import PoolAutoscaling
from controller.core.loadbook import DipLoad
from controller.core.ops import Op, ReadEntry
from controller.core.pools import BackendPool, PoolError, PoolMember
from controller.core.records import RecordLog
from controller.core.reload import ReloadPlan
from controller.core.vip_changes import VipChanges
from controller.core.weighting import PoolWeighting
from policy.autoscale import MemberState


class Membership:
    """Every pool, its policy and autoscaling, and the VIPs on their way in or out."""

    def __init__(self, config: Config, policy_name: str, records: RecordLog) -> None:
        self._config = config
        self._records = records
        self.pools = [BackendPool(i, vip) for i, vip in enumerate(config.vips)]
        """In configuration order, then VIPs added since; the rollouts read this very list."""
        self._next_pool_id = len(self.pools)
        self.weighting = [self._weighting(p, policy_name, config.policy_params) for p in self.pools]
        self.vip_changes = VipChanges(records)
        self.autoscaling: list[PoolAutoscaling] = []
        self._scale(config, changed=True)

    def _weighting(
        self, pool: BackendPool, policy_name: str, params: Mapping[str, float]
    ) -> PoolWeighting:
        settings = self._config.controller
        return PoolWeighting(pool, policy_name, params, settings.weight_bits, settings.slow_start)

    def _scale(self, config: Config, *, changed: bool) -> None:
        """Autoscaling for every pool not leaving; a pool's keeps its state unless `changed`."""
        scaling = config.autoscale
        kept = {} if changed else {a.pool.pool_id: a for a in self.autoscaling}
        self.autoscaling = [
            kept.get(p.pool_id) or PoolAutoscaling(p, scaling)
            for p in self.pools
            if scaling is not None and not self.vip_changes.leaving(p.pool_id)
        ]

    # -- questions

    def desired(self) -> dict[int, tuple[int, ...]]:
        """The weights each pool's policy asks for now, by pool id (member order)."""
        return {w.pool.pool_id: w.current() for w in self.weighting}

    def pool_of(self, dip: str) -> int:
        """The pool a DIP belongs to; KeyError if none."""
        for pool in self.pools:
            if any(m.dip == dip for m in pool):
                return pool.pool_id
        raise KeyError(dip)

    def pool_named(self, vip: str) -> int:
        """The pool of the VIP called `vip` in the configuration; KeyError if none."""
        for pool in self.pools:
            if pool.vip.name == vip:
                return pool.pool_id
        raise KeyError(vip)

    def pool_by_id(self, pool_id: int) -> BackendPool:
        """The pool with id `pool_id`; KeyError if none."""
        for pool in self.pools:
            if pool.pool_id == pool_id:
                return pool
        raise KeyError(pool_id)

    def member_pool(self, dip: str, pool_id: int | None) -> BackendPool:
        """The pool an operator's change of `dip` applies to (PoolError while it leaves)."""
        # A DIP may serve a TCP and a UDP VIP alike: callers that know the VIP name its pool.
        pool = self.pool_by_id(self.pool_of(dip) if pool_id is None else pool_id)
        if self.vip_changes.leaving(pool.pool_id):
            raise PoolError(f"VIP {pool.vip.name!r} is being removed; its members only drain")
        return pool

    def takes_new(self, dip: str) -> bool:
        """Whether a DIP is an active member (may take new connections, and pins)."""
        return any(m.dip == dip and m.state is MemberState.ACTIVE for p in self.pools for m in p)

    def ramping(self, now: float) -> bool:
        """Whether some member is slow-starting (its weight grows with each policy round), or
        did so lately: twice the ramp, so its last step is rolled out too, whatever delays the
        rollouts meet."""
        window = 2 * self._config.controller.slow_start
        return any(
            m.state is MemberState.ACTIVE and now - m.since < window for p in self.pools for m in p
        )

    # -- each policy round

    def update(self, now: float, loads: Mapping[str, DipLoad]) -> None:
        """Autoscale, then run every pool's policy on the latest loads."""
        for scaling in self.autoscaling:
            activate, drain = scaling.decide(now, loads)
            for dip in activate:
                scaling.pool.activate(now, dip)
                self._records.add(now, "phase", name=f"autoscale: activate {dip}")
            for dip in drain:
                scaling.pool.drain(now, dip, remove=False)
                self._records.add(now, "phase", name=f"autoscale: drain {dip}")
        for weighting in self.weighting:
            weighting.update(now, loads)

    def switch_policy(self, name: str, params: Mapping[str, float]) -> None:
        """Every pool's policy replaced in place (validated by the caller)."""
        for weighting in self.weighting:
            weighting.switch_policy(name, params)

    # -- start-up and reloads

    def adopt(self, now: float, entries: Sequence[ReadEntry]) -> list[Op]:
        """Take the pool ids vip_table holds (see VipChanges.adopt)."""
        ops = self.vip_changes.adopt(now, self.pools, entries)
        held = [e.params[0] for e in entries if e.params]
        self._next_pool_id = max([p.pool_id for p in self.pools] + held, default=-1) + 1
        return ops

    def problems(self, plan: ReloadPlan) -> list[str]:
        """What the running state refuses of a reload: a name, service or member still held
        by a VIP that is leaving, or more VIPs than vip_table holds."""
        problems: list[str] = []
        leaving = [p.vip for p in self.pools if self.vip_changes.leaving(p.pool_id)]
        for vip in plan.added_vips:
            problems.extend(
                f"vip {vip.name!r}: {old.name!r} ({old.ip}:{old.port}/{old.protocol}) is still"
                " draining after its removal; reload again once it has left"
                for old in leaving
                if old.name == vip.name or (old.ip, old.port, old.protocol) == _service(vip)
            )
        protocols = {v.name: v.protocol for v in plan.config.vips}
        added = [(v.name, v.protocol, d) for v in plan.added_vips for d in v.dips]
        added.extend((name, protocols[name], d) for name, d in plan.added_dips)
        for vip_name, protocol, dip in added:
            problems.extend(
                f"vip {vip_name!r}: {dip.name} still belongs to {pool.vip.name!r} (draining);"
                " reload again once it has left"
                for pool in self.pools
                if pool.vip.name != vip_name
                and pool.vip.protocol == protocol
                and any(m.dip == dip.name for m in pool)
            )
        if len(self.pools) + len(plan.added_vips) > VIP_LIMIT_DEFAULT:
            problems.append(
                f"{len(self.pools)} VIPs (some may be draining) plus {len(plan.added_vips)} new"
                f" exceed the vip_table size {VIP_LIMIT_DEFAULT}"
            )
        return problems

    def reload(self, now: float, plan: ReloadPlan) -> list[tuple[BackendPool, PoolMember]]:
        """Carry out a reload's pools, members and policy (`problems` found none; `configure`
        takes its settings); returns the members that joined, whose return paths the core
        writes."""
        config = plan.config
        self._config = config
        if plan.policy is not None:
            self.switch_policy(*plan.policy)
        vips = {v.name: v for v in config.vips}
        for pool in self.pools:
            pool.vip = vips.get(pool.vip.name, pool.vip)
        joined = [(p, m) for vip in plan.added_vips for p in [self._add_vip(now, vip)] for m in p]
        named = {p.vip.name: p for p in self.pools if not self.vip_changes.leaving(p.pool_id)}
        for name in plan.removed_vips:
            pool = named[name]
            for member in pool:
                pool.drain(now, member.dip, remove=True)
            self.vip_changes.retire(pool)
        for vip_name, dip in plan.added_dips:
            joined.extend(self._declare(now, named[vip_name], dip, restate=True))
        for change in plan.changed_dips:
            restate = change.old.state != change.new.state
            joined.extend(self._declare(now, named[change.vip], change.new, restate=restate))
        for vip_name, dip_name in plan.removed_dips:
            pool = named[vip_name]
            if any(m.dip == dip_name for m in pool):
                pool.drain(now, dip_name, remove=True)
        self._scale(config, changed=plan.autoscale)
        return joined

    def add_member(self, now: float, pool_id: int, dip: DipConfig) -> PoolMember:
        """Add a member to a pool (an operator's or a reload's)."""
        return self.member_pool(dip.name, pool_id).add(now, dip)

    def _add_vip(self, now: float, vip: VipConfig) -> BackendPool:
        pool = BackendPool(self._next_pool_id, vip, now)
        self._next_pool_id += 1
        self.pools.append(pool)
        current = self.weighting[0] if self.weighting else None
        name = current.policy_name if current else self._config.controller.policy
        params = current.params if current else self._config.policy_params
        self.weighting.append(self._weighting(pool, name, params))
        self.vip_changes.add(pool)
        return pool

    def _declare(
        self, now: float, pool: BackendPool, dip: DipConfig, *, restate: bool
    ) -> list[tuple[BackendPool, PoolMember]]:
        """Make a member what the file says: added if absent, its weight set, and with
        `restate` its state (a state the admin API set stays unless the file changes it)."""
        if not any(m.dip == dip.name for m in pool):
            return [(pool, pool.add(now, dip))]
        if pool.member(dip.name).weight != dip.weight:
            pool.set_weight(dip.name, dip.weight)
        if restate and dip.state == "standby":
            pool.standby(now, dip.name)
        elif restate:
            pool.activate(now, dip.name)  # also cancels a pending removal
        return []

    def forget(self, pool_ids: Sequence[int]) -> list[BackendPool]:
        """Pools whose VIP left the switch: nothing of them stays; returns them."""
        gone = [p for p in self.pools if p.pool_id in pool_ids]
        if gone:
            self.pools[:] = [p for p in self.pools if p not in gone]
            self.weighting = [w for w in self.weighting if w.pool not in gone]
            self.autoscaling = [a for a in self.autoscaling if a.pool not in gone]
        return gone

    def configure(self, settings: ControllerSettings) -> None:
        """Live settings for the policies (a reload's, applied with it)."""
        for weighting in self.weighting:
            weighting.slow_start = settings.slow_start


def _service(vip: VipConfig) -> tuple[str, int, str]:
    return (vip.ip, vip.port, vip.protocol)
