"""version_config, pure: the active slot and each slot's epoch, and the steps that write it.

The data plane's keyless table `version_config` has one default action, `set_versions(active,
epoch_0 .. epoch_3)`. Slot i's Bloom filter holds a key only while the key's cells equal epoch_i
(and epoch_i != 0), and only the data plane writes those cells. So "emptying" a slot is giving
it a fresh epoch, and switching versions is changing `active`: each one write of the default
action, with no register access from the control plane (BMv2's P4Runtime server has none).

Epochs must never repeat: cells tagged with an old epoch would match again. `EpochCounter` issues
them from a 32-bit counter that starts above every epoch the switch (read back at start) or the
state journal has seen; at one rollout a second it lasts 136 years.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from p4src.contract import EPOCH_BITS, SET_VERSIONS

EPOCH_LIMIT = 1 << EPOCH_BITS


class EpochsExhaustedError(RuntimeError):
    """Every 32-bit epoch has been issued; the switch's registers must be cleared by a reload."""


@dataclass(frozen=True)
class VersionConfig:
    """The parameters of version_config's default action."""

    active: int
    epochs: tuple[int, ...]

    def params(self) -> tuple[str, ...]:
        """`set_versions` parameters in the runtime API's string format."""
        return (str(self.active), *(str(e) for e in self.epochs))

    @classmethod
    def from_entry(cls, action: str, params: Sequence[int], slots: int) -> VersionConfig:
        """The config a default-entry read returned; ValueError if it is not `set_versions`."""
        if action != SET_VERSIONS or len(params) != 1 + slots:
            raise ValueError(f"version_config default is {action}{tuple(params)!r}")
        active, *epochs = params
        if not 0 <= active < slots or any(not 0 <= e < EPOCH_LIMIT for e in epochs):
            raise ValueError(f"version_config default has out-of-range values {tuple(params)!r}")
        return cls(active, tuple(epochs))

    def with_epochs(self, fresh: Mapping[int, int]) -> VersionConfig:
        """The same config with the given slots' epochs replaced."""
        return VersionConfig(self.active, tuple(fresh.get(s, e) for s, e in enumerate(self.epochs)))

    def with_active(self, slot: int) -> VersionConfig:
        """The same epochs with `slot` active."""
        return VersionConfig(slot, self.epochs)


@dataclass(frozen=True)
class FreshEpochs:
    """Give `slots` fresh epochs: write `config` (which carries them)."""

    config: VersionConfig
    slots: tuple[int, ...]


@dataclass(frozen=True)
class FlipVersion:
    """Make a slot active: write `config` (its `active` is the slot)."""

    config: VersionConfig

    @property
    def slot(self) -> int:
        """The slot being made active."""
        return self.config.active


@dataclass(frozen=True)
class ReadVersions:
    """Read version_config's default entry back (after an ambiguous flip)."""


VersionStep = FreshEpochs | FlipVersion | ReadVersions


class EpochCounter:
    """The version_config the controller believes the switch holds, and the epochs it issued."""

    def __init__(self, config: VersionConfig, last_issued: int = 0) -> None:
        self.config = config
        self.last = max(last_issued, *config.epochs)

    def fresh(self, slots: Sequence[int]) -> FreshEpochs:
        """Issue one new epoch per slot and the write that installs them.

        The belief changes at once, before the write is acknowledged: if the write fails without
        an answer, a later write carrying the new (never used) epochs empties those slots rather
        than bringing back old cells, which is the safe direction for a slot that is not active.
        """
        fresh: dict[int, int] = {}
        for slot in slots:
            if self.last + 1 >= EPOCH_LIMIT:
                raise EpochsExhaustedError(f"epoch counter at {self.last}")
            self.last += 1
            fresh[slot] = self.last
        self.config = self.config.with_epochs(fresh)
        return FreshEpochs(self.config, tuple(slots))

    def flip(self, slot: int) -> FlipVersion:
        """The write that makes `slot` active (the belief changes when it is acknowledged)."""
        return FlipVersion(self.config.with_active(slot))

    def confirm(self, config: VersionConfig) -> None:
        """The switch holds `config` (a flip was acknowledged, or it was read back)."""
        self.config = config
        self.last = max(self.last, *config.epochs)
