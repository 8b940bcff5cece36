"""The version slots of dip_table, pure: what each holds, which is active, which may be reused.

`SlotLedger` knows the version_config the switch holds (active slot and epochs, with the epoch
counter) and since when each other slot has been out of service, and says why a slot may not be
reused yet (see controller.core.rollout for the rules). `SlotTable`
adds what each slot holds (the dip_table shadow and the weights behind it) and the questions
rollouts and reclaims ask of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from controller.core.epochs import EpochCounter, VersionConfig
from controller.core.journal import Journal, SlotWeights
from controller.core.learning import ConnectionLearner
from controller.core.ops import ReadEntry
from controller.core.shadow import DipShadow


class SlotLedger:
    """Which slot is active, each slot's epoch, and since when each other slot has been out of
    service."""

    def __init__(
        self,
        slots: int,
        config: VersionConfig,
        now: float,
        *,
        hold_until: float | None = None,
        last_epoch: int = 0,
    ) -> None:
        self.slots = slots
        self.epochs = EpochCounter(config, last_epoch)
        # None = never active since this controller took over (its Bloom filter needs no grace).
        self.deactivated_at: list[float | None] = [None] * slots
        self.hold_until = hold_until
        # Slots out of service whose Bloom filter may still hold keys: of connections that
        # started under them and ended (or were installed) since. A new connection that reuses
        # such a 5-tuple (a client port freed by a reset has no TIME_WAIT) would follow the
        # slot's old version, so each gets a fresh epoch once it may be reused (`retirable`).
        self.stale = [s != config.active and config.epochs[s] != 0 for s in range(slots)]

    @property
    def active(self) -> int:
        """The active slot."""
        return self.epochs.config.active

    def next_slot(self) -> int:
        """The slot a rollout writes."""
        return (self.active + 1) % self.slots

    def blocker(
        self, slot: int, now: float, quiet_period: float, pending: int, last_digest: float | None
    ) -> str | None:
        """Why `slot` may not be reused yet, or None if it may."""
        if slot == self.active:
            return f"slot {slot} is active"
        if pending:
            return f"slot {slot}: {pending} connections not yet installed"
        if self.hold_until is not None and now < self.hold_until:
            return f"restart hold for {self.hold_until - now:.1f} s"
        since = [t for t in (self.deactivated_at[slot], last_digest) if t is not None]
        if since and now - max(since) <= quiet_period:
            return f"slot {slot} quiet in {quiet_period - (now - max(since)):.2f} s"
        return None

    def flipped(self, config: VersionConfig, now: float) -> None:
        """The switch now holds `config`; the previous active slot starts its quiet period."""
        if config.active != self.active:
            self.deactivated_at[self.active] = now
            self.stale[self.active] = True
        self.epochs.confirm(config)

    def freshened(self, slots: Sequence[int]) -> None:
        """`slots` got fresh epochs (acknowledged): their Bloom filters hold nothing."""
        for slot in slots:
            self.stale[slot] = False


def skip_reason(
    current: Mapping[int, Sequence[int]],
    desired: Mapping[int, Sequence[int]],
    total: int,
    min_change: float,
) -> str | None:
    """Why a rollout to `desired` is not worth it (None = roll out).

    A member going to or from weight 0 always rolls out; otherwise some weight must move by more
    than `min_change` of the pool's total.
    """
    largest = 0
    for pool, weights in desired.items():
        held = current.get(pool)
        if held is None or len(held) != len(weights):
            return None
        for old, new in zip(held, weights, strict=True):
            if (old == 0) != (new == 0):
                return None
            largest = max(largest, abs(int(old) - int(new)))
    if largest == 0:
        return "weights unchanged"
    if largest <= min_change * total:
        return f"largest change {largest}/{total} within the dead-band"
    return None


class SlotTable:
    """The ledger, the shadow of every slot and the weights each slot was filled with."""

    def __init__(self, slots: int, quiet_period: float) -> None:
        self.slots = slots
        self.quiet_period = quiet_period
        self.shadow = DipShadow(slots)
        self.weights: list[SlotWeights | None] = [None] * slots
        self.ledger: SlotLedger | None = None

    def attach(self, ledger: SlotLedger, journal: Journal | None = None) -> None:
        """Start from a switch: a fresh ledger, and a journal's shadow when one was adopted."""
        self.ledger = ledger
        if journal is not None:
            self.shadow.assign(journal.shadow)
            self.weights = list(journal.slot_weights)

    def take_read_back(self, entries: Sequence[ReadEntry], journal: Journal | None) -> int:
        """Make the shadow what dip_table holds (its entries read back); keep each slot's
        weights only where its content is unchanged (from the journal's, or from the shadow's
        own). Returns how many slots kept them."""
        actual = DipShadow.from_entries(self.slots, entries)
        known = journal.shadow if journal is not None else self.shadow
        weights = list(journal.slot_weights) if journal is not None else list(self.weights)
        matching = 0
        for slot in range(self.slots):
            if actual.content(slot) == known.content(slot):
                matching += 1
            else:
                weights[slot] = None
        self.shadow.assign(actual)
        self.weights = weights
        return matching

    def forget(self) -> None:
        """dip_table was cleared: no slot holds anything."""
        self.shadow.forget()
        self.weights = [None] * self.slots

    def blocker(self, now: float, slot: int, learner: ConnectionLearner) -> str | None:
        """Why `slot` may not be reused now (None: it may)."""
        assert self.ledger is not None
        return self.ledger.blocker(
            slot, now, self.quiet_period, learner.pending_count(slot), learner.last_digest(slot)
        )

    def referenced(self, now: float, learner: ConnectionLearner) -> set[str]:
        """DIPs with weight in a slot that connections may still use."""
        assert self.ledger is not None
        dips: set[str] = set()
        for slot, weights in enumerate(self.weights):
            in_use = slot == self.ledger.active or self.blocker(now, slot, learner) is not None
            if weights is not None and in_use:
                dips.update(d for pool in weights.values() for d, w in pool.items() if w > 0)
        return dips

    def retirable(self, now: float, learner: ConnectionLearner) -> list[int]:
        """Inactive slots whose Bloom filters may still hold keys and that are free to reuse
        (nothing pending, quiet period over): a fresh epoch now serves no live connection and
        stops a reused 5-tuple from following their old versions."""
        ledger = self.ledger
        assert ledger is not None
        return [
            s
            for s in range(self.slots)
            if ledger.stale[s] and s != ledger.active and self.blocker(now, s, learner) is None
        ]

    def reclaimable(self, now: float, target: int, learner: ConnectionLearner) -> list[int]:
        """Slots whose entries nobody can reach once they have a fresh epoch, oldest first:
        neither active nor `target`, and free to reuse (nothing pending, quiet period over)."""
        ledger = self.ledger
        assert ledger is not None
        idle = [s for s in range(self.slots) if s not in (target, ledger.active)]
        idle.sort(key=lambda s: -math.inf if (t := ledger.deactivated_at[s]) is None else t)
        return [s for s in idle if self.blocker(now, s, learner) is None]

    def held_weights(self, pools: Mapping[int, Sequence[str]]) -> dict[int, tuple[int, ...]] | None:
        """The active slot's weights in each pool's member order (None if it holds none)."""
        assert self.ledger is not None
        current = self.weights[self.ledger.active]
        if current is None:
            return None
        return {p: tuple(current.get(p, {}).get(d, 0) for d in dips) for p, dips in pools.items()}

    def journal(
        self, pending: int | None, staged: SlotWeights | None, reporters: frozenset[str]
    ) -> Journal:
        """The journal of what the slots hold (`staged`: the weights being written to `pending`)
        and of the DIPs whose agents report."""
        assert self.ledger is not None
        weights = list(self.weights)
        if pending is not None and staged is not None:
            weights[pending] = staged
        return Journal(
            self.ledger.active,
            pending,
            self.shadow.copy(),
            tuple(weights),
            reporters=tuple(sorted(reporters)),
            last_epoch=self.ledger.epochs.last,
        )
