"""Shadow copy of `dip_table`, per version slot: what the controller has written and its handles.

`DipShadow.plan(slot, desired)` returns the fewest writes (deletes, modifies, adds) that turn what a
slot holds into `desired`; their owners report each outcome back (`applied`, `failed`), so the
shadow always matches the switch. A failed write is assumed not to have happened (a refusal).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, NamedTuple

from p4src.contract import REWRITE_DST

if TYPE_CHECKING:
    from controller.core.ops import ReadEntry


class BucketKey(NamedTuple):
    """The part of a dip_table key inside one slot: pool and LPM prefix of the flow hash.

    A tuple rather than a dataclass: rollouts build, hash and sort thousands of them.
    """

    pool: int
    value: int
    prefix_len: int


class DipTarget(NamedTuple):
    """Where a bucket sends new connections: rewrite_dst(ip, port)."""

    ip: str
    port: int

    @property
    def name(self) -> str:
        """The DIP's name, "ip:port"."""
        return f"{self.ip}:{self.port}"


class WriteKind(Enum):
    """What a DipWrite does to the table."""

    ADD = "add"
    MODIFY = "modify"
    DELETE = "delete"


@dataclass(frozen=True)
class DipWrite:
    """One dip_table write for a slot; `handle` is set for MODIFY and DELETE."""

    kind: WriteKind
    slot: int
    key: BucketKey
    target: DipTarget | None
    handle: int | None

    def match_keys(self) -> tuple[str, ...]:
        """dip_table keys: version, pool, "value/len" (the flow hash is HASH_BITS wide)."""
        return (str(self.slot), str(self.key.pool), f"{self.key.value}/{self.key.prefix_len}")

    def action_params(self) -> tuple[str, ...]:
        """rewrite_dst parameters."""
        assert self.target is not None
        return (self.target.ip, str(self.target.port))


@dataclass(frozen=True)
class ShadowEntry:
    """An entry the switch holds: target and handle."""

    target: DipTarget
    handle: int


class DipShadow:
    """What each version slot of dip_table holds, as written and acknowledged."""

    def __init__(self, slots: int) -> None:
        self._slots: list[dict[BucketKey, ShadowEntry]] = [{} for _ in range(slots)]

    @property
    def slot_count(self) -> int:
        """Number of version slots."""
        return len(self._slots)

    def entries(self, slot: int) -> Mapping[BucketKey, ShadowEntry]:
        """The acknowledged entries of one slot."""
        return self._slots[slot]

    def content(self, slot: int) -> dict[BucketKey, DipTarget]:
        """Key → target of one slot (what plan() compares against)."""
        return {key: entry.target for key, entry in self._slots[slot].items()}

    def size(self) -> int:
        """Total entries over all slots."""
        return sum(len(s) for s in self._slots)

    def plan(self, slot: int, desired: Mapping[BucketKey, DipTarget]) -> list[DipWrite]:
        """Minimal writes so that `slot` holds exactly `desired` (deletes first, then the rest,
        each in the order of the mappings)."""
        held = self._slots[slot]
        deletes = [
            DipWrite(WriteKind.DELETE, slot, key, None, entry.handle)
            for key, entry in held.items()
            if key not in desired
        ]
        changes: list[DipWrite] = []
        for key in desired:
            target = desired[key]
            entry = held.get(key)
            if entry is None:
                changes.append(DipWrite(WriteKind.ADD, slot, key, target, None))
            elif entry.target != target:
                changes.append(DipWrite(WriteKind.MODIFY, slot, key, target, entry.handle))
        return deletes + changes

    def applied(self, write: DipWrite, handle: int | None = None) -> None:
        """Record an acknowledged write (`handle` = what table_add returned)."""
        held = self._slots[write.slot]
        if write.kind is WriteKind.DELETE:
            held.pop(write.key, None)
            return
        assert write.target is not None
        if write.kind is WriteKind.ADD:
            assert handle is not None
            held[write.key] = ShadowEntry(write.target, handle)
        else:
            assert write.handle is not None
            held[write.key] = ShadowEntry(write.target, write.handle)

    def failed(self, write: DipWrite, entry_missing: bool) -> None:
        """Record a refused write: a delete of a handle the switch no longer knows is a success
        (and a modify of one means the entry is gone)."""
        if write.kind is not WriteKind.ADD and entry_missing:
            self._slots[write.slot].pop(write.key, None)

    def assign(self, other: DipShadow) -> None:
        """Hold exactly what `other` holds (adopting a journal)."""
        self._slots = [dict(held) for held in other._slots]

    def copy(self) -> DipShadow:
        """An independent copy (for the journal)."""
        other = DipShadow(self.slot_count)
        other._slots = [dict(held) for held in self._slots]
        return other

    @classmethod
    def from_entries(cls, slots: int, entries: Iterable[ReadEntry]) -> DipShadow:
        """The shadow of what dip_table holds, from its entries read back: (version, pool,
        flow hash lpm) → rewrite_dst(ip, port). Entries of another shape are left out (the
        controller writes none)."""
        shadow = cls(slots)
        for entry in entries:
            match = entry.match
            if len(match) != 3 or len(entry.params) != 2 or entry.action != REWRITE_DST:
                continue
            version, pool, lpm = match
            if not (isinstance(version, int) and isinstance(pool, int) and isinstance(lpm, tuple)):
                continue
            if not 0 <= version < slots:
                continue
            ip, port = entry.params
            key = BucketKey(pool, lpm[0], lpm[1])
            target = DipTarget(str(ipaddress.IPv4Address(ip)), port)
            shadow._slots[version][key] = ShadowEntry(target, entry.handle)
        return shadow

    def forget(self) -> None:
        """Drop everything (after table_clear)."""
        for held in self._slots:
            held.clear()

    def to_json(self) -> list[list[list[Any]]]:
        """A JSON-able form for the state journal."""
        return [
            [
                [k.pool, k.value, k.prefix_len, e.target.ip, e.target.port, e.handle]
                for k, e in sorted(s.items())
            ]
            for s in self._slots
        ]

    @classmethod
    def from_json(cls, data: Iterable[Iterable[Iterable[Any]]]) -> DipShadow:
        """Rebuild a shadow from `to_json` output; raise ValueError if malformed."""
        slots = [list(slot) for slot in data]
        shadow = cls(len(slots))
        for i, slot in enumerate(slots):
            for row in slot:
                pool, value, plen, ip, port, handle = row
                key = BucketKey(int(pool), int(value), int(plen))
                shadow._slots[i][key] = ShadowEntry(DipTarget(str(ip), int(port)), int(handle))
        return shadow
