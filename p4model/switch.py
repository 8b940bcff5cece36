"""`Switch`: the in-process model of the P4 program with the p4-utils runtime API."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from p4model.errors import ErrorCode, SwitchError
from p4model.fast_path import FastPath
from p4model.keys import NameIndex
from p4model.packet import lb_deparser, lb_parser
from p4model.program import DROP_PORT, LbIngress, digest_sample, lb_compute_checksum
from p4model.registers import Register
from p4model.tables import Table
from p4src.contract import Digest, Settings, load_settings

MAX_PORT = 511


class Switch:
    """BMv2 simple_switch running p4src/loadbalancer.p4, in-process.

    Runtime API names and string formats follow p4-utils' SimpleSwitchThriftAPI; every error
    raises SwitchError. `clock` (seconds) drives entry ageing only.
    """

    def __init__(
        self, settings: Settings | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """A switch with empty tables and zeroed registers."""
        self.settings = settings if settings is not None else load_settings()
        self._clock = clock
        self._ingress = LbIngress(self.settings)
        self._fast_path = FastPath(self._ingress)
        self._tables = {t.name: t for t in self._ingress.tables}
        self._registers = {r.name: r for r in self._ingress.registers}
        self._table_names = NameIndex("table", self._tables)
        self._register_names = NameIndex("register", self._registers)
        self._digests: list[Digest] = []
        self._subscribers: list[Callable[[Digest], None]] = []
        self._ageing_table = self._ingress.conn_table  # the one table with support_timeout
        self._timeouts: dict[int, float] = {}  # conn_table handle -> timeout in seconds
        self._last_hit: dict[int, float] = {}  # conn_table handle -> clock() of the last hit

    # ---- tables -------------------------------------------------------------------------
    def table(self, name: str) -> Table:
        """The table called `name` (full name or unique suffix)."""
        return self._tables[self._table_names.resolve(name)]

    def table_add(
        self, table: str, action: str, keys: Sequence[str], params: Sequence[str], prio: int = 0
    ) -> int:
        """Add an entry; return its handle."""
        t = self.table(table)
        handle = t.add(keys, action, params, prio)
        if t is self._ageing_table:
            self._last_hit[handle] = self._clock()
        return handle

    def table_modify(self, table: str, action: str, handle: int, params: Sequence[str]) -> None:
        """Change an entry's action and parameters."""
        self.table(table).modify(handle, action, params)

    def table_delete(self, table: str, handle: int) -> None:
        """Delete an entry."""
        t = self.table(table)
        t.delete(handle)
        if t is self._ageing_table:
            self._timeouts.pop(handle, None)
            self._last_hit.pop(handle, None)

    def table_clear(self, table: str) -> None:
        """Delete every entry of a table (its default action stays)."""
        t = self.table(table)
        t.clear()
        if t is self._ageing_table:
            self._timeouts.clear()
            self._last_hit.clear()

    def table_set_default(self, table: str, action: str, params: Sequence[str]) -> None:
        """Set a table's default action."""
        self.table(table).set_default(action, params)

    def table_get_default(self, table: str) -> tuple[str, list[int]]:
        """A table's default action: its full name and parameter values (BMv2's
        `bm_mt_get_default_entry`)."""
        default = self.table(table).default
        return default.action, list(default.params)

    def table_num_entries(self, table: str) -> int:
        """Number of entries in a table."""
        return self.table(table).num_entries()

    def table_entries(self, table: str) -> list[tuple[int, list[int | list[int]], str, list[int]]]:
        """Every entry of a table as (handle, match, action, params) (see Table.entries)."""
        return self.table(table).entries()

    def table_set_timeout(self, table: str, handle: int, ms: int) -> None:
        """Age the entry out after `ms` idle milliseconds (0 disables); needs support_timeout."""
        t = self.table(table)
        if not t.support_timeout:
            raise SwitchError(f"{t.name}: table does not support entry timeouts")
        if handle not in self._last_hit:
            raise SwitchError(
                f"{t.name}: no entry with handle {handle!r} (INVALID_HANDLE)",
                ErrorCode.INVALID_HANDLE,
            )
        if not isinstance(ms, int) or ms < 0:
            raise SwitchError(f"{t.name}: timeout must be a non-negative int of ms, got {ms!r}")
        if ms == 0:
            self._timeouts.pop(handle, None)
        else:
            self._timeouts[handle] = ms / 1000.0

    def idle_seconds(self, handle: int) -> float:
        """Seconds since conn_table entry `handle` was last hit (or added)."""
        try:
            return self._clock() - self._last_hit[handle]
        except KeyError:
            raise SwitchError(
                f"{self._ageing_table.name}: no entry with handle {handle!r} (INVALID_HANDLE)",
                ErrorCode.INVALID_HANDLE,
            ) from None

    def restart_idle_timer(self, handle: int) -> None:
        """Count conn_table entry `handle` as hit now (P4Runtime restarts an entry's TTL after
        each idle notification, so the next one comes a whole TTL later)."""
        if handle in self._last_hit:
            self._last_hit[handle] = self._clock()

    def sweep_aged(self) -> list[int]:
        """Handles of conn_table entries idle for longer than their timeout (BMv2's AGE list)."""
        now = self._clock()
        last_hit = self._last_hit
        return sorted(h for h, t in self._timeouts.items() if now - last_hit[h] > t)

    def tables(self) -> list[Table]:
        """Every table of the program, in declaration order."""
        return list(self._ingress.tables)

    # ---- registers ----------------------------------------------------------------------
    def register(self, name: str) -> Register:
        """The register array called `name` (full name or unique suffix)."""
        return self._registers[self._register_names.resolve(name)]

    def registers(self) -> list[Register]:
        """Every register array of the program, in declaration order."""
        return list(self._ingress.registers)

    def register_read(self, name: str, index: int | None = None) -> int | list[int]:
        """One cell, or the whole array when `index` is None."""
        return self.register(name).control_read(index)

    def register_write(self, name: str, index: int | list[int], value: int) -> None:
        """Write one cell, or the range [start, end) given as a list."""
        self.register(name).control_write(index, value)

    def register_reset(self, name: str) -> None:
        """Zero a whole register array."""
        self.register(name).reset()

    # ---- digests ------------------------------------------------------------------------
    def pop_digests(self) -> list[Digest]:
        """The digests raised since the last call (only those not given to subscribers)."""
        digests, self._digests = self._digests, []
        return digests

    def subscribe(self, callback: Callable[[Digest], None]) -> None:
        """Deliver every later digest to `callback` when it is raised instead of queueing it."""
        self._subscribers.append(callback)

    # ---- data path ----------------------------------------------------------------------
    def process(self, ingress_port: int, frame: bytes) -> list[tuple[int, bytes]]:
        """Run one frame through parser, ingress, checksums and deparser; the frames that leave.

        A conn_table hit or a new connection takes the specialised path (p4model.fast_path),
        everything else and whatever that path declines the general pipeline.
        """
        if not isinstance(ingress_port, int) or not 0 <= ingress_port <= MAX_PORT:
            raise SwitchError(f"ingress port must be in 0..{MAX_PORT}, got {ingress_port!r}")
        frame = bytes(frame)
        fast = self._fast_path.run(frame)
        if fast is not None:
            port, out, handle, digest = fast
            if digest is None:  # a hit (a new connection always raises its digest)
                self._last_hit[handle] = self._clock()
            else:
                self._emit(digest)
            return [(port, out)]
        p = lb_parser(frame, ingress_port)
        self._ingress.apply(p)
        if p.conn_handle >= 0:
            self._last_hit[p.conn_handle] = self._clock()
        if p.dg_kind:
            self._emit(
                digest_sample(p.dg_kind, p.dg_tuple, p.dg_version, p.dg_dip_addr, p.dg_dip_port)
            )
        if p.egress_spec == DROP_PORT:
            return []
        lb_compute_checksum(p)
        return [(p.egress_spec, lb_deparser(p))]

    def _emit(self, digest: Digest) -> None:
        if self._subscribers:
            for callback in self._subscribers:
                callback(digest)
        else:
            self._digests.append(digest)
