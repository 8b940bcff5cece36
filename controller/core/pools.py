"""Backend pools: members of each VIP and their lifecycle (active, draining, standby, down).

A member is ACTIVE (may take new connections when its agent says it is up), STANDBY (configured,
programmed for the return path, takes nothing), DRAINING (weight 0; existing connections carry
on) or DOWN (taken out by an operator). Removing a member drains it first; `tick` reports when
a draining member has no connections left (or its drain timed out), and the member then leaves
the pool (or returns to STANDBY when autoscaling drained it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from controller.config import DipConfig, VipConfig
from policy.autoscale import MemberState


class PoolError(ValueError):
    """A lifecycle request that does not apply (unknown member, duplicate, wrong state)."""


@dataclass(frozen=True)
class PoolMember:
    """One DIP in a pool."""

    ip: str
    port: int
    weight: int
    state: MemberState
    since: float = 0.0
    remove_when_drained: bool = False
    dip: str = field(init=False, repr=False, compare=False)
    """The member's name, "ip:port" (computed once: read on every policy round)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "dip", f"{self.ip}:{self.port}")


@dataclass(frozen=True)
class DrainFinished:
    """A draining member has no connections left (or its drain timed out)."""

    pool: int
    member: PoolMember
    removed: bool
    timed_out: bool


class BackendPool:
    """The members of one VIP's pool, in configuration order (new members are appended)."""

    def __init__(self, pool_id: int, vip: VipConfig, now: float = -math.inf) -> None:
        """Members start in their configured state at `now` (by default: ever since, so the
        members a controller starts with are not slow-started)."""
        self.pool_id = pool_id
        self.vip = vip
        self._members = [
            PoolMember(d.ip, d.port, d.weight, MemberState(d.state), since=now) for d in vip.dips
        ]
        self.generation = 0
        """Bumped whenever the member list changes (the policy must be rebuilt)."""

    def __iter__(self) -> Iterator[PoolMember]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    @property
    def members(self) -> tuple[PoolMember, ...]:
        """All members in order."""
        return tuple(self._members)

    def index(self, dip: str) -> int:
        """Position of a member; raise PoolError if unknown."""
        for i, member in enumerate(self._members):
            if member.dip == dip:
                return i
        raise PoolError(f"{dip!r} is not a member of pool {self.vip.name!r}")

    def member(self, dip: str) -> PoolMember:
        """A member by name."""
        return self._members[self.index(dip)]

    def add(self, now: float, dip: DipConfig) -> PoolMember:
        """Append a new member (active or standby as configured)."""
        if any(m.dip == dip.name for m in self._members):
            raise PoolError(f"{dip.name!r} is already a member of pool {self.vip.name!r}")
        member = PoolMember(dip.ip, dip.port, dip.weight, MemberState(dip.state), since=now)
        self._members.append(member)
        self.generation += 1
        return member

    def set_weight(self, dip: str, weight: int) -> PoolMember:
        """Change a member's configured weight (its policy is reseeded with it)."""
        i = self.index(dip)
        self._members[i] = replace(self._members[i], weight=weight)
        self.generation += 1
        return self._members[i]

    def drain(self, now: float, dip: str, *, remove: bool) -> PoolMember:
        """Stop new connections to a member; with `remove`, it leaves once drained."""
        i = self.index(dip)
        member = self._members[i]
        if member.state is MemberState.DRAINING:
            updated = replace(member, remove_when_drained=member.remove_when_drained or remove)
        elif member.state in (MemberState.STANDBY, MemberState.DOWN) and remove:
            updated = replace(
                member, state=MemberState.DRAINING, since=now, remove_when_drained=True
            )
        elif member.state is MemberState.ACTIVE:
            updated = replace(
                member, state=MemberState.DRAINING, since=now, remove_when_drained=remove
            )
        else:
            raise PoolError(f"{dip!r} is {member.state.value}; nothing to drain")
        self._members[i] = updated
        return updated

    def standby(self, now: float, dip: str) -> PoolMember:
        """Take a member out of service but keep it: an active member drains first (and turns
        standby once drained), a pending removal is cancelled, a down member turns standby."""
        i = self.index(dip)
        member = self._members[i]
        if member.state is MemberState.ACTIVE:
            updated = replace(member, state=MemberState.DRAINING, since=now)
        elif member.state is MemberState.DOWN:
            updated = replace(member, state=MemberState.STANDBY, since=now)
        else:
            updated = replace(member, remove_when_drained=False)
        self._members[i] = updated
        return updated

    def undrain(self, now: float, dip: str) -> PoolMember:
        """Return a draining or standby member to service (a down member needs `activate`:
        an operator took it out on purpose)."""
        member = self.member(dip)
        if member.state is MemberState.DOWN:
            raise PoolError(f"{dip!r} is down; activate it explicitly")
        return self.activate(now, dip)

    def activate(self, now: float, dip: str) -> PoolMember:
        """Let a standby, draining or down member take new connections again."""
        i = self.index(dip)
        member = self._members[i]
        if member.state is MemberState.ACTIVE:
            return member
        updated = replace(member, state=MemberState.ACTIVE, since=now, remove_when_drained=False)
        self._members[i] = updated
        return updated

    def tick(
        self, now: float, connections: Callable[[str], int], drain_timeout: float, settle: float
    ) -> list[DrainFinished]:
        """Finish drains: no connections left (after `settle` s) or `drain_timeout` passed."""
        finished: list[DrainFinished] = []
        kept: list[PoolMember] = []
        for member in self._members:
            if member.state is not MemberState.DRAINING or now - member.since <= settle:
                kept.append(member)
                continue
            timed_out = now - member.since > drain_timeout
            if connections(member.dip) > 0 and not timed_out:
                kept.append(member)
                continue
            finished.append(
                DrainFinished(self.pool_id, member, member.remove_when_drained, timed_out)
            )
            if not member.remove_when_drained:
                kept.append(replace(member, state=MemberState.STANDBY, since=now))
        if len(kept) != len(self._members):
            self.generation += 1
        self._members = kept
        return finished
