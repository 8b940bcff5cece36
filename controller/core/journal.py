"""The state journal, pure: what the controller knows of dip_table, enough to adopt it after a
restart, as one immutable value with its JSON form (the shell owns the file).

Written right before each flip (with the slot being filled as `pending`), after each commit or
abort, and at a clean stop (with `stopped_at` and the connections still being installed). Each
carries the last epoch issued, so a restarted controller never issues one again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controller.core.connections import ConnKey
from controller.core.shadow import DipShadow, DipTarget

SlotWeights = Mapping[int, Mapping[str, int]]
"""Per pool id, each member's weight in one version slot."""


class JournalError(ValueError):
    """A state journal that cannot be read."""


@dataclass(frozen=True)
class UnsettledConnection:
    """A connection learned but not yet installed when the previous controller stopped."""

    key: ConnKey
    version: int
    dip: DipTarget


@dataclass(frozen=True)
class Journal:
    """What a journal says the switch holds."""

    active: int
    pending: int | None
    """The slot being filled when it was written (a flip to it may have happened)."""
    shadow: DipShadow
    """A copy of the dip_table shadow (never mutated once in a Journal)."""
    slot_weights: tuple[SlotWeights | None, ...]
    stopped_at: float | None = None
    """When the previous controller stopped cleanly (its clock), if it did."""
    unsettled: tuple[UnsettledConnection, ...] = ()
    reporters: tuple[str, ...] = ()
    """DIPs whose agents had reported: after a restart they are down until they report again."""
    last_epoch: int = 0
    """The last epoch issued (controller.core.epochs): a restart continues above it."""

    def matches(self, active: int, dip_entries: int) -> bool:
        """Whether the switch agrees (active slot and dip_table entry count)."""
        return active in (self.active, self.pending) and self.shadow.size() == dip_entries

    def to_json(self) -> dict[str, object]:
        """The JSON document of this journal."""
        return {
            "active": self.active,
            "pending": self.pending,
            "shadow": self.shadow.to_json(),
            "slot_weights": [
                None if w is None else {str(p): dict(d) for p, d in w.items()}
                for w in self.slot_weights
            ],
            "stopped_at": self.stopped_at,
            "last_epoch": self.last_epoch,
            "unsettled": [
                [
                    c.key.src,
                    c.key.dst,
                    c.key.sport,
                    c.key.dport,
                    c.key.protocol,
                    c.version,
                    c.dip.ip,
                    c.dip.port,
                ]
                for c in self.unsettled
            ],
            "reporters": list(self.reporters),
        }

    @classmethod
    def from_json(cls, data: object, slots: int) -> Journal:
        """Read a journal document; raise JournalError if it is malformed."""
        if not isinstance(data, Mapping):
            raise JournalError(f"a journal is a JSON object, got {type(data).__name__}")
        try:
            shadow = DipShadow.from_json(data["shadow"])
            if shadow.slot_count != slots:
                raise JournalError(f"journal has {shadow.slot_count} slots, switch has {slots}")
            weights = tuple(
                None
                if w is None
                else {int(p): {str(d): int(x) for d, x in m.items()} for p, m in w.items()}
                for w in data["slot_weights"]
            )
            pending, stopped = data.get("pending"), data.get("stopped_at")
            unsettled = tuple(
                UnsettledConnection(
                    ConnKey(str(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4])),
                    int(r[5]),
                    DipTarget(str(r[6]), int(r[7])),
                )
                for r in data.get("unsettled", ())
            )
            reporters = tuple(str(d) for d in data.get("reporters", ()))
            return cls(
                int(data["active"]),
                None if pending is None else int(pending),
                shadow,
                weights,
                None if stopped is None else float(stopped),
                unsettled,
                reporters,
                int(data.get("last_epoch", 0)),
            )
        except JournalError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise JournalError(f"malformed journal: {exc!r}") from exc
