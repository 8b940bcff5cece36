"""Autoscaling per pool (pure): policy.autoscale decides, the pool's members carry it out."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from controller.core.loadbook import DipLoad
from controller.core.pools import BackendPool
from policy.autoscale import AutoscaleParams, Autoscaler, MemberState


class PoolAutoscaling:
    """policy.autoscale for one pool: which standby member to activate, which to drain.

    The autoscaler sees as DOWN (never a candidate) every member it must not activate: one
    whose agent says it is not up, and one draining at the operator's request (only a member
    the autoscaler drained itself may be re-activated while it drains).
    """

    def __init__(self, pool: BackendPool, params: AutoscaleParams) -> None:
        self.pool = pool
        self._scaler = Autoscaler(params)
        self.drained: set[str] = set()
        """Members this autoscaler drained (to standby) and that still drain."""

    def decide(self, now: float, loads: Mapping[str, DipLoad]) -> tuple[list[str], list[str]]:
        """(members to activate, members to drain) for the pool's current utilisation."""
        members = list(self.pool)
        views = [loads.get(m.dip) for m in members]
        utilisation = np.array([v.cpu if v else 0.0 for v in views], dtype=np.float64)
        self.drained &= {
            m.dip for m in members if m.state is MemberState.DRAINING and not m.remove_when_drained
        }
        states = [
            MemberState.DOWN
            if (v is not None and not v.live)
            or (m.state is MemberState.DRAINING and m.dip not in self.drained)
            else m.state
            for m, v in zip(members, views, strict=True)
        ]
        decision = self._scaler.decide(now, utilisation, states)
        drain = [members[i].dip for i in decision.drain]
        self.drained.update(drain)
        return [members[i].dip for i in decision.activate], drain
