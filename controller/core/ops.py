"""The typed contract between the pure core and the shell: operations out, outcomes back.

The core emits one frozen value per thing a switch (or the journal file) can be asked, tagged
with the component that owns it and, where the owner needs it to read the outcome, with the
domain value the operation is about (`tag`). The shell executes each operation and hands back an
`Outcome`; the core routes it to its owner by `op.owner`. A failure carries an `ErrorKind` that
the switch client set from its target's own error codes: nothing in the core reads error text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from controller.core.connections import AffinityKey, ConnKey
from controller.core.epochs import VersionStep
from controller.core.journal import Journal
from controller.core.shadow import DipWrite


class Owner(Enum):
    """The core component that issued an operation and handles its outcome."""

    STARTUP = "startup"
    """Routes and VIPs written at start."""
    VIPS = "vips"
    """vip_table entries of VIPs added or removed while running."""
    RETURN_PATH = "return_path"
    """dip_reverse entries of pool members."""
    LEARNING = "learning"
    """conn_table entries of learned connections."""
    ROLLOUT = "rollout"
    """A version slot being filled and activated, and the journal."""
    RECLAIM = "reclaim"
    """Idle version slots freed under dip_table pressure."""
    AFFINITY = "affinity"
    """affinity_table entries pinning clients of affinity VIPs."""
    WATCH = "watch"
    """The periodic check that the switch still holds what was written."""


class ErrorKind(Enum):
    """Why an operation failed, as the client read it from its target's own codes."""

    NOT_FOUND = "not_found"
    """The entry (handle) does not exist: a delete of it has nothing left to do."""
    DUPLICATE = "duplicate"
    """An entry with the same key exists already."""
    TABLE_FULL = "table_full"
    UNAVAILABLE = "unavailable"
    """The target could not be reached or did not answer; the write may or may not be applied."""
    INVALID = "invalid"
    """The target refused the request as malformed or unsupported."""
    NOT_PRIMARY = "not_primary"
    """This controller is not the switch's primary (P4Runtime arbitration): it may read, not
    write. Nothing was written; the write can succeed once this client becomes primary."""
    UNKNOWN = "unknown"


# What an operation is about, for its owner: a connection, a client's pin, a dip_table write, a
# version_config step, a DIP name.
Tag = ConnKey | AffinityKey | DipWrite | VersionStep | str | None


@dataclass(frozen=True, slots=True)
class DefaultEntry:
    """A table's default action as read back: the action's name (without its control's prefix,
    as the contract names it) and its parameter values."""

    action: str
    params: tuple[int, ...]

    @classmethod
    def read(cls, action: str, params: Sequence[int]) -> DefaultEntry:
        """From a target's answer, whose action name may be qualified (`LbIngress.set_versions`)."""
        return cls(action.rsplit(".", 1)[-1], tuple(int(p) for p in params))


@dataclass(frozen=True, slots=True)
class TableInsert:
    """Add an entry: keys and parameters in the runtime API's string formats."""

    owner: Owner
    table: str
    keys: tuple[str, ...]
    action: str
    params: tuple[str, ...]
    tag: Tag = None


@dataclass(frozen=True, slots=True)
class TableModify:
    """Change the action and parameters of the entry `handle`."""

    owner: Owner
    table: str
    handle: int
    action: str
    params: tuple[str, ...]
    tag: Tag = None


@dataclass(frozen=True, slots=True)
class TableDelete:
    """Delete the entry `handle`."""

    owner: Owner
    table: str
    handle: int
    tag: Tag = None


@dataclass(frozen=True, slots=True)
class TableClear:
    """Delete every entry of a table (its default action stays)."""

    owner: Owner
    table: str


@dataclass(frozen=True, slots=True)
class DefaultActionSet:
    """Set the default action of a table."""

    owner: Owner
    table: str
    action: str
    params: tuple[str, ...]
    tag: Tag = None


@dataclass(frozen=True, slots=True)
class EntryTimeoutSet:
    """Give the entry `handle` an idle timeout."""

    owner: Owner
    table: str
    handle: int
    timeout_ms: int
    tag: Tag = None


@dataclass(frozen=True, slots=True)
class DefaultActionRead:
    """Read the default action of a table (the outcome's `entry`)."""

    owner: Owner
    table: str
    tag: Tag = None


@dataclass(frozen=True, slots=True)
class EntryCount:
    """Count a table's entries (the outcome's `value`)."""

    owner: Owner
    table: str


@dataclass(frozen=True, slots=True)
class TableRead:
    """Read every entry of a table back (the outcome's `entries`)."""

    owner: Owner
    table: str


MatchValue = int | tuple[int, int]
"""One match field read back: an exact value, or (value, prefix length) of an lpm field."""


@dataclass(frozen=True, slots=True)
class ReadEntry:
    """One entry read back from the switch, as numbers (whatever the target's text forms)."""

    handle: int
    match: tuple[MatchValue, ...]
    action: str
    """The action's name without any control prefix ("rewrite_dst")."""
    params: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class JournalWrite:
    """Replace the state journal (the shell writes it to its file)."""

    owner: Owner
    journal: Journal


SwitchOp = (
    TableInsert
    | TableModify
    | TableDelete
    | TableClear
    | DefaultActionSet
    | DefaultActionRead
    | EntryTimeoutSet
    | EntryCount
    | TableRead
)
Op = SwitchOp | JournalWrite


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one operation ended: `handle` of an insert, `value` of a count, `entry` of a default
    read, `entries` of a table read, or the error."""

    op: Op
    ok: bool
    handle: int | None = None
    value: int | None = None
    entry: DefaultEntry | None = None
    error: ErrorKind | None = None
    detail: str = ""
    entries: tuple[ReadEntry, ...] = ()

    @classmethod
    def done(
        cls,
        op: Op,
        *,
        handle: int | None = None,
        value: int | None = None,
        entry: DefaultEntry | None = None,
        entries: tuple[ReadEntry, ...] = (),
    ) -> Outcome:
        """A success."""
        return cls(op, True, handle=handle, value=value, entry=entry, entries=entries)

    @classmethod
    def failed(cls, op: Op, error: ErrorKind, detail: str) -> Outcome:
        """A failure of the given kind (`detail` is for logs and records only)."""
        return cls(op, False, error=error, detail=detail)


def describe(op: Op) -> str:
    """A short human description of an operation, for logs and records."""
    if isinstance(op, TableInsert):
        return f"{op.table} add {' '.join(op.keys)} => {op.action}({', '.join(op.params)})"
    if isinstance(op, TableModify):
        return f"{op.table} modify #{op.handle} => {op.action}({', '.join(op.params)})"
    if isinstance(op, TableDelete):
        return f"{op.table} delete #{op.handle}"
    if isinstance(op, EntryTimeoutSet):
        return f"{op.table} timeout #{op.handle} {op.timeout_ms} ms"
    if isinstance(op, TableClear):
        return f"{op.table} clear"
    if isinstance(op, DefaultActionSet):
        return f"{op.table} default => {op.action}({', '.join(op.params)})"
    if isinstance(op, DefaultActionRead):
        return f"read {op.table} default"
    if isinstance(op, EntryCount):
        return f"count {op.table}"
    if isinstance(op, TableRead):
        return f"read {op.table}"
    return "journal"
