"""A read-only picture of the core for the shell (metrics, status, logs): values, no references
into the core's state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.core.affinity import AffinityCounters
from controller.core.connections import LearningCounters
from controller.core.rollout import RolloutCounters
from policy.autoscale import MemberState


@dataclass(frozen=True)
class MemberView:
    """One pool member: its state, the weight the policy asks for and the one the active
    version holds."""

    dip: str
    state: MemberState
    weight: int
    active_weight: int


@dataclass(frozen=True)
class PoolView:
    """One pool (VIP) and its members in order."""

    name: str
    members: tuple[MemberView, ...]

    def active_weight(self, dip: str) -> int:
        """A member's weight in the active version (0 if it is no member)."""
        return next((m.active_weight for m in self.members if m.dip == dip), 0)


@dataclass(frozen=True)
class CoreView:
    """The core at one instant."""

    policy: str
    started: bool
    active_slot: int | None
    backpressure: str | None
    learning: LearningCounters
    rollouts: RolloutCounters
    affinity: AffinityCounters
    affinity_entries: int
    digest_faults: Mapping[str, int]
    conn_entries: int
    conn_table_full: bool
    members_removed: int
    switch_losses: int
    """Times the switch was found to have lost its state (and was reprogrammed)."""
    pools: tuple[PoolView, ...]
    policy_params: Mapping[str, float] = field(default_factory=dict)
    """The policy's parameters as given (defaults apply to those left out)."""
