"""Making room in a full dip_table, pure: when a rollout needs it, which slots, in which order.

A rollout writes the next slot `s` as a diff against what `s` held, so every other slot keeps its
entries until its own turn comes. When the table cannot hold the new version next to them, the
rollout would abort on TABLE_FULL for good. `RoomCheck` pre-computes that from the shadow and
the table size (and says when a version can never fit next to the active one); `choose_slots`
picks the slots to free, and `Reclaim` drives freeing them: one version_config write giving every
chosen slot a fresh epoch, and only after that is acknowledged, deletion of every entry of those
slots. (The rollout's own target needs no reclaim: the rollout gives it a fresh epoch first and
replaces its entries by the diff.)

Why no live connection depends on a reclaimed slot `r`. `r` is chosen only when it is neither the
active slot nor the rollout's target, has no connection learned under it whose conn_table entry
is still unacknowledged, and it left the active position and its last new_conn digest arrived
more than `quiet_period` ago (the very conditions under which a rollout may reuse a slot,
`SlotLedger.blocker`). Which packets read dip_table version `r`?
- Packets of a connection whose conn_table entry is installed never reach dip_table (an entry
  removed later, idle or torn down, ends the connection for every slot alike). Packets that hit
  affinity_table never reach version selection either.
- A connection that chose `r` raised a new_conn digest with its first packet. If that packet came
  while `r` was active, or as a Bloom match more than the worst digest delay (< quiet_period) ago,
  its digest has arrived, so the connection is counted under `r` until its entry is acknowledged:
  pending = 0 means it is installed.
- Version selection picks the oldest slot holding the key (cells equal to the slot's epoch), else
  the active slot. Only the active slot's cells are tagged, so what `r` holds changes after `r`
  left the active position only by a fresh epoch, and that changes the choice only of packets
  for which `r` is the oldest holder: packets of connections that chose `r` (installed, see
  above) and first packets of brand-new connections that falsely match `r`. Connections of
  other slots keep their slot. With the fresh epoch no cell matches `r` (epochs never repeat),
  and `r` is not active, so nothing reads its entries and they can be deleted. The deletes are
  issued only once the epoch write is acknowledged (a packet that read the old epoch would have
  to stay in the switch for a controller round trip to meet a deleted entry); a failed write
  deletes nothing.
The one exposure is the epoch change itself: a new connection whose first packet falsely matched
`r` in the last (digest delay + write latency) and whose next packet comes after it follows the
active slot instead. That is the residual risk `rollout` documents for the fresh epoch of every
rollout, and reclaiming does not add to it: it moves `r`'s one fresh epoch per cycle earlier
(when the rollout reaches `r` it gives `r` another one, matching nothing either way).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from controller.core.epochs import FreshEpochs
from controller.core.shadow import DipWrite, WriteKind

ReclaimStep = FreshEpochs | DipWrite


@dataclass(frozen=True)
class RoomCheck:
    """Whether a new version of `need` entries fits in slot `slot` of a `size`-entry table."""

    slot: int
    need: int
    held: int  # entries the table holds now, over every slot
    held_by_slot: int  # of those, the entries of `slot` (the rollout's diff replaces them)
    active_entries: int  # entries of the active slot (0 when `slot` is the active one)
    size: int

    @property
    def after(self) -> int:
        """Entries the table holds once the rollout is written, reclaiming nothing.

        Every SwitchClient runs calls in the order issued and a slot's deletes come first, so
        this is also the peak while writing.
        """
        return self.held - self.held_by_slot + self.need

    @property
    def shortfall(self) -> int:
        """Entries other slots must give up for the rollout to fit (0: it fits)."""
        return max(0, self.after - self.size)

    @property
    def too_small(self) -> bool:
        """The version cannot fit next to the active one even with every other slot empty."""
        return self.need + self.active_entries > self.size

    def describe(self) -> str:
        """The numbers, for a fault record."""
        return (
            f"slot {self.slot} needs {self.need} entries; dip_table holds {self.held} of "
            f"{self.size} ({self.active_entries} in the active version, {self.held_by_slot} in "
            f"slot {self.slot})"
        )


def choose_slots(shortfall: int, candidates: Sequence[tuple[int, int]]) -> tuple[int, ...]:
    """Slots to reclaim: the fewest candidates, oldest first, that free `shortfall` entries.

    `candidates` are (slot, entries held) of reclaimable slots, oldest deactivation first.
    Returns () when nothing needs freeing or the candidates cannot free enough (then the
    rollout has to wait for more slots to become reclaimable).
    """
    holding = [(slot, n) for slot, n in candidates if n > 0]
    chosen: list[int] = []
    freed = 0
    for slot, n in holding:
        if freed >= shortfall:
            break
        chosen.append(slot)
        freed += n
    return tuple(chosen) if 0 < shortfall <= freed else ()


@dataclass(frozen=True)
class ReclaimPlan:
    """Slots to free: the write of their fresh epochs, then the deletes of each."""

    fresh: FreshEpochs
    deletes: Mapping[int, tuple[DipWrite, ...]]
    decided_at: float

    @property
    def slots(self) -> tuple[int, ...]:
        """The slots being reclaimed."""
        return tuple(self.deletes)

    @property
    def entries(self) -> int:
        """Entries the plan deletes."""
        return sum(len(d) for d in self.deletes.values())


@dataclass(frozen=True)
class ReclaimOutcome:
    """How a reclaim ended: the slots that got fresh epochs and the entries deleted."""

    plan: ReclaimPlan
    freshened: tuple[int, ...]
    deleted: int
    failures: tuple[str, ...]
    finished_at: float

    @property
    def complete(self) -> bool:
        """Every reset and delete succeeded."""
        return not self.failures


class Reclaim:
    """Drives one reclaim: fresh epochs for its slots, then delete those slots' entries."""

    def __init__(self, plan: ReclaimPlan) -> None:
        assert all(
            w.kind is WriteKind.DELETE and w.slot == s for s, ws in plan.deletes.items() for w in ws
        ), "a reclaim plan only deletes entries of its own slots"
        self.plan = plan
        self._outstanding = 0
        self._freshened: list[int] = []
        self._deleted = 0
        self._failures: list[str] = []
        self.outcome: ReclaimOutcome | None = None

    def begin(self, now: float) -> list[ReclaimStep]:
        """The first step: one version_config write with every slot's fresh epoch."""
        if not self.plan.deletes:
            self._finish(now)
            return []
        self._outstanding = 1
        return [self.plan.fresh]

    def step_done(self, now: float, step: ReclaimStep) -> list[ReclaimStep]:
        """A step was acknowledged; returns the next steps (the epochs release the deletes)."""
        self._outstanding -= 1
        if isinstance(step, FreshEpochs):
            self._freshened.extend(step.slots)
            deletes = [w for slot in step.slots for w in self.plan.deletes[slot]]
            self._outstanding += len(deletes)
            self._check(now)
            return list(deletes)
        self._deleted += 1
        self._check(now)
        return []

    def step_failed(self, now: float, step: ReclaimStep, error: str) -> list[ReclaimStep]:
        """A step failed: a failed epoch write keeps every entry (never delete what a packet may
        still select)."""
        self._outstanding -= 1
        if isinstance(step, FreshEpochs):
            self._failures.append(f"fresh epochs for slots {step.slots}: {error}")
        else:
            self._failures.append(f"dip_table delete (slot {step.slot}): {error}")
        self._check(now)
        return []

    def _check(self, now: float) -> None:
        if self._outstanding == 0:
            self._finish(now)

    def _finish(self, now: float) -> None:
        self.outcome = ReclaimOutcome(
            self.plan, tuple(self._freshened), self._deleted, tuple(self._failures), now
        )
