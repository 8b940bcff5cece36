"""Entry handles for a P4Runtime target, which knows entries only by their match.

Pure. The core speaks Thrift-style handles (ints from an insert); P4Runtime names an entry by
table, match and priority. The book gives each entry a handle when it is inserted, or when it is
first seen in a read or a notification, and remembers its current action and idle timeout: a
P4Runtime MODIFY replaces both, so changing one means sending the other as it stands.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from controller.switch.p4runtime_codec import ActionValue, EntryKey


@dataclass(frozen=True, slots=True)
class EntryState:
    """What the client knows of one entry it holds a handle for."""

    key: EntryKey
    action: ActionValue
    timeout_ns: int = 0


class HandleBook:
    """Handle ↔ entry maps of one switch connection (handles are unique across tables)."""

    def __init__(self) -> None:
        self._next = 1
        self._entries: dict[int, EntryState] = {}
        self._handles: dict[EntryKey, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def new_handle(self) -> int:
        """A handle never given before (for an insert in flight)."""
        handle = self._next
        self._next += 1
        return handle

    def entry(self, handle: int) -> EntryState | None:
        """The entry `handle` names, if the client knows one."""
        return self._entries.get(handle)

    def handle_of(self, key: EntryKey) -> int | None:
        """The handle of the entry with this identity, if it has one."""
        return self._handles.get(key)

    def bind(self, handle: int, state: EntryState) -> None:
        """Record that `handle` now names `state` (an insert succeeded); a handle the same key
        had before (an entry the switch lost) is forgotten."""
        old = self._handles.get(state.key)
        if old is not None and old != handle:
            self._entries.pop(old, None)
        self._entries[handle] = state
        self._handles[state.key] = handle

    def adopt(self, key: EntryKey, action: ActionValue, timeout_ns: int = 0) -> int:
        """The handle of an entry read back: its known one (state refreshed) or a new one."""
        handle = self._handles.get(key)
        if handle is None:
            handle = self.new_handle()
        self.bind(handle, EntryState(key, action, timeout_ns))
        return handle

    def update(
        self, handle: int, *, action: ActionValue | None = None, timeout_ns: int | None = None
    ) -> None:
        """Record a successful MODIFY of `handle`."""
        state = self._entries.get(handle)
        if state is None:
            return
        if action is not None:
            state = replace(state, action=action)
        if timeout_ns is not None:
            state = replace(state, timeout_ns=timeout_ns)
        self._entries[handle] = state

    def forget(self, handle: int) -> None:
        """The entry `handle` named is gone (deleted, or not found on the switch)."""
        state = self._entries.pop(handle, None)
        if state is not None and self._handles.get(state.key) == handle:
            del self._handles[state.key]

    def forget_table(self, table_id: int) -> None:
        """Every entry of a table is gone (cleared)."""
        for handle in [h for h, s in self._entries.items() if s.key.table_id == table_id]:
            self.forget(handle)

    def forget_all(self) -> None:
        """The switch holds no entry any more (a program was loaded); handles are not reused."""
        self._entries.clear()
        self._handles.clear()

    def keep_only(self, table_id: int, keys: set[EntryKey]) -> None:
        """A full read of a table found exactly `keys`: forget handles of entries not there."""
        gone = [
            h for h, s in self._entries.items() if s.key.table_id == table_id and s.key not in keys
        ]
        for handle in gone:
            self.forget(handle)
