"""Match-action tables with BMv2's semantics: exact, LPM (longest prefix wins) and ternary
(smallest priority number wins, ties to the lowest handle), size limits, handles, default actions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from p4model.errors import ErrorCode, SwitchError
from p4model.keys import NameIndex, parse_lpm, parse_ternary, parse_value, prefix_mask


class MatchKind(Enum):
    """P4 match kinds the model supports."""

    EXACT = "exact"
    LPM = "lpm"
    TERNARY = "ternary"


@dataclass(frozen=True)
class KeyField:
    """One key field of a table: its P4 expression, width in bits and match kind."""

    name: str
    width: int
    kind: MatchKind


@dataclass(frozen=True)
class ActionSpec:
    """An action a table may run: full name and parameter (name, width) pairs in order."""

    name: str
    params: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class EntryRecord:
    """One installed entry as the control plane sees it: key values with their prefix length
    (lpm) or masks (ternary), the action, its parameter values and the priority."""

    handle: int
    values: tuple[int, ...]
    prefix_len: int
    masks: tuple[int, ...]
    action: str
    params: tuple[int, ...]
    priority: int


@dataclass(frozen=True, slots=True)
class Entry:
    """An installed entry: handle, the action to run and its parameter values."""

    handle: int
    action: str
    params: tuple[int, ...]
    priority: int = 0


# Internal form of an entry's key: (prefix length, values, masks). Exact tables: (0, values, ());
# LPM: (prefix length, values with the lpm one masked, ()); ternary: (0, values & masks, masks).
_Key = tuple[int, tuple[int, ...], tuple[int, ...]]


class Table:
    """A table of a P4 program; `lookup` takes the key values in the declared order."""

    def __init__(
        self,
        name: str,
        keys: Sequence[KeyField],
        actions: Sequence[ActionSpec],
        size: int,
        default: tuple[str, tuple[int, ...]],
        *,
        support_timeout: bool = False,
        const: bool = False,
        size_declared: bool = True,
    ) -> None:
        """Declare a table; `default` is (full action name, parameter values); `size_declared`
        is False when the program gives the table no `size` (its P4Info then says 1024)."""
        kinds = [k.kind for k in keys]
        if kinds.count(MatchKind.LPM) > 1:
            raise SwitchError(f"{name}: at most one lpm key per table")
        self.name = name
        self.keys = tuple(keys)
        self.size = size
        self.support_timeout = support_timeout
        self.const = const
        self.size_declared = size_declared
        self.actions = tuple(actions)
        self.initial_default = (default[0], tuple(default[1]))
        self.ternary = MatchKind.TERNARY in kinds
        self._lpm_index = kinds.index(MatchKind.LPM) if MatchKind.LPM in kinds else -1
        self._actions = {a.name: a for a in actions}
        self._action_names = NameIndex(f"action of {name}", self._actions)
        self.default = Entry(-1, default[0], default[1])
        self._entries: dict[int, tuple[_Key, Entry]] = {}
        self._next_handle = 0
        self._exact: dict[tuple[int, ...], Entry] = {}  # never rebound: `lookup` is its get
        # lpm: prefix_len -> {(exact values..., masked lpm value): entry}
        self._lpm: dict[int, dict[tuple[int, ...], Entry]] = {}
        # (mask of the lpm field, bucket) from the longest prefix down: lookup's search order
        self._lpm_levels: list[tuple[int, dict[tuple[int, ...], Entry]]] = []
        self._ternary: list[tuple[_Key, Entry]] = []
        # The matching entry for key values in the declared order, or None on a miss. Chosen
        # once per table rather than per packet: an exact table is the dict's own `get`.
        self.lookup: Callable[[tuple[int, ...]], Entry | None]
        if self.ternary:
            self.lookup = self._lookup_ternary
        elif self._lpm_index == 0 and len(keys) == 1:
            self.lookup = self._lookup_lpm_only
        elif 0 <= self._lpm_index == len(keys) - 1:
            self.lookup = self._lookup_lpm_last
        elif self._lpm_index >= 0:
            self.lookup = self._lookup_lpm
        else:
            self.lookup = self._exact.get

    # ---- control plane -------------------------------------------------------------------
    def add(
        self, keys: Sequence[str], action: str, params: Sequence[str], priority: int = 0
    ) -> int:
        """Install an entry; return its handle."""
        self._check_mutable()
        match = self._parse_match(keys)
        entry = Entry(self._next_handle, *self._parse_action(action, params), priority)
        if len(self._entries) >= self.size:
            raise SwitchError(
                f"{self.name}: table full (TABLE_FULL, size {self.size})", ErrorCode.TABLE_FULL
            )
        if self._exists(match, priority):
            raise SwitchError(
                f"{self.name}: entry {list(keys)!r} already exists (DUPLICATE_ENTRY)",
                ErrorCode.DUPLICATE_ENTRY,
            )
        self._next_handle += 1
        self._entries[entry.handle] = (match, entry)
        self._index(match, entry)
        return entry.handle

    def modify(self, handle: int, action: str, params: Sequence[str]) -> None:
        """Change the action and parameters of an entry."""
        self._check_mutable()
        match, old = self._get(handle)
        entry = Entry(handle, *self._parse_action(action, params), old.priority)
        self._unindex(match, old)
        self._entries[handle] = (match, entry)
        self._index(match, entry)

    def delete(self, handle: int) -> None:
        """Remove an entry."""
        self._check_mutable()
        match, entry = self._get(handle)
        del self._entries[handle]
        self._unindex(match, entry)

    def clear(self) -> None:
        """Remove every entry (the default action stays)."""
        self._check_mutable()
        self._entries.clear()
        self._exact.clear()
        self._lpm.clear()
        self._lpm_levels = []
        self._ternary = []

    def set_default(self, action: str, params: Sequence[str]) -> None:
        """Set the action run on a miss."""
        self.default = Entry(-1, *self._parse_action(action, params))

    def num_entries(self) -> int:
        """Number of installed entries."""
        return len(self._entries)

    def entries(self) -> list[tuple[int, list[int | list[int]], str, list[int]]]:
        """Every installed entry as (handle, match, action, params), JSON-ready: an exact value
        is an int, an lpm one [value, prefix length], a ternary one [value, mask]."""
        out: list[tuple[int, list[int | list[int]], str, list[int]]] = []
        for handle, ((length, values, masks), entry) in self._entries.items():
            match: list[int | list[int]] = []
            for i, (field, value) in enumerate(zip(self.keys, values, strict=True)):
                if field.kind is MatchKind.LPM:
                    match.append([value, length])
                elif field.kind is MatchKind.TERNARY:
                    match.append([value, masks[i]])
                else:
                    match.append(value)
            out.append((handle, match, entry.action, list(entry.params)))
        return out

    def find(self, keys: Sequence[str], priority: int = 0) -> int | None:
        """The handle of the entry with exactly this match (and priority), or None."""
        match = self._parse_match(keys)
        length, values, _ = match
        if self.ternary:
            for key, entry in self._ternary:
                if key == match and entry.priority == priority:
                    return entry.handle
            return None
        if self._lpm_index >= 0:
            found = self._lpm.get(length, {}).get(values)
        else:
            found = self._exact.get(values)
        return None if found is None else found.handle

    def records(self) -> list[EntryRecord]:
        """Every installed entry (const ones included) in handle order."""
        return [
            EntryRecord(e.handle, values, length, masks, e.action, e.params, e.priority)
            for (length, values, masks), e in self._entries.values()
        ]

    def record(self, handle: int) -> EntryRecord:
        """The installed entry with this handle (SwitchError INVALID_HANDLE if none)."""
        (length, values, masks), e = self._get(handle)
        return EntryRecord(e.handle, values, length, masks, e.action, e.params, e.priority)

    def add_const(self, values: Sequence[int], action: str, params: Sequence[int]) -> None:
        """Install one of the program's `const entries` (exact keys only)."""
        entry = Entry(self._next_handle, action, tuple(params))
        self._next_handle += 1
        key: _Key = (0, tuple(values), ())
        self._entries[entry.handle] = (key, entry)
        self._index(key, entry)

    # ---- data plane ----------------------------------------------------------------------
    def _lookup_lpm(self, key: tuple[int, ...]) -> Entry | None:
        i = self._lpm_index
        head, value, tail = key[:i], key[i], key[i + 1 :]
        for mask, bucket in self._lpm_levels:
            hit = bucket.get((*head, value & mask, *tail))
            if hit is not None:
                return hit
        return None

    def _lookup_lpm_only(self, key: tuple[int, ...]) -> Entry | None:
        # a routing table: the lpm field is the whole key
        (value,) = key
        for mask, bucket in self._lpm_levels:
            hit = bucket.get((value & mask,))
            if hit is not None:
                return hit
        return None

    def _lookup_lpm_last(self, key: tuple[int, ...]) -> Entry | None:
        # the usual layout (ipv4_lpm, dip_table): exact fields first, the lpm one last
        head, value = key[:-1], key[-1]
        for mask, bucket in self._lpm_levels:
            hit = bucket.get((*head, value & mask))
            if hit is not None:
                return hit
        return None

    def _lookup_ternary(self, key: tuple[int, ...]) -> Entry | None:
        for (_, values, masks), entry in self._ternary:
            if all(k & m == v for k, v, m in zip(key, values, masks, strict=True)):
                return entry
        return None

    # ---- internals -----------------------------------------------------------------------
    def _check_mutable(self) -> None:
        if self.const:
            raise SwitchError(f"{self.name}: table has const entries and cannot be changed")

    def _get(self, handle: int) -> tuple[_Key, Entry]:
        try:
            return self._entries[handle]
        except (KeyError, TypeError):
            raise SwitchError(
                f"{self.name}: no entry with handle {handle!r} (INVALID_HANDLE)",
                ErrorCode.INVALID_HANDLE,
            ) from None

    def _parse_match(self, keys: Sequence[str]) -> _Key:
        if isinstance(keys, str) or len(keys) != len(self.keys):
            raise SwitchError(
                f"{self.name}: expected {len(self.keys)} match keys "
                f"({', '.join(k.name for k in self.keys)}), got {keys!r}"
            )
        values: list[int] = []
        masks: list[int] = []
        length = 0
        for field, text in zip(self.keys, keys, strict=True):
            what = f"{self.name} key {field.name}"
            if field.kind is MatchKind.EXACT:
                value, mask = parse_value(text, field.width, what), (1 << field.width) - 1
            elif field.kind is MatchKind.LPM:
                value, length = parse_lpm(text, field.width, what)
                mask = prefix_mask(length, field.width)
            else:
                value, mask = parse_ternary(text, field.width, what)
            values.append(value)
            masks.append(mask)
        if self.ternary:
            return 0, tuple(values), tuple(masks)
        return length, tuple(values), ()

    def _parse_action(self, action: str, params: Sequence[str]) -> tuple[str, tuple[int, ...]]:
        spec = self._actions[self._action_names.resolve(action)]
        if isinstance(params, str) or len(params) != len(spec.params):
            raise SwitchError(
                f"{self.name}: action {spec.name} takes {len(spec.params)} parameters "
                f"({', '.join(p for p, _ in spec.params)}), got {params!r}"
            )
        values = tuple(
            parse_value(text, width, f"{self.name} {spec.name} parameter {pname}")
            for (pname, width), text in zip(spec.params, params, strict=True)
        )
        return spec.name, values

    def _exists(self, key: _Key, priority: int) -> bool:
        length, values, _ = key
        if self.ternary:
            return any(k == key and e.priority == priority for k, e in self._ternary)
        if self._lpm_index >= 0:
            return values in self._lpm.get(length, {})
        return values in self._exact

    def _index(self, key: _Key, entry: Entry) -> None:
        length, values, _ = key
        if self.ternary:
            self._ternary.append((key, entry))
            self._ternary.sort(key=lambda item: (item[1].priority, item[1].handle))
        elif self._lpm_index >= 0:
            if length not in self._lpm:
                self._lpm[length] = {}
                self._sort_lpm_levels()
            self._lpm[length][values] = entry
        else:
            self._exact[values] = entry

    def _unindex(self, key: _Key, entry: Entry) -> None:
        length, values, _ = key
        if self.ternary:
            self._ternary = [item for item in self._ternary if item[1].handle != entry.handle]
        elif self._lpm_index >= 0:
            bucket = self._lpm[length]
            del bucket[values]
            if not bucket:
                del self._lpm[length]
                self._sort_lpm_levels()
        else:
            del self._exact[values]

    def _sort_lpm_levels(self) -> None:
        width = self.keys[self._lpm_index].width
        self._lpm_levels = [
            (prefix_mask(length, width), self._lpm[length])
            for length in sorted(self._lpm, reverse=True)
        ]
