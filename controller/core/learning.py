"""Connection learning: `new_conn` digests → `conn_table` entries, teardown and idle expiry.

Pure bookkeeping: digests and the outcomes of its own writes (`on_outcome`) come in with `now`;
`due(now)` returns the writes to issue. A connection is pending (counted against the version
slot its first packet chose) until its table_add is acknowledged; the rollout gate reads
`pending_count(slot)` and `last_digest(slot)`; a connection whose first packet hit
affinity_table (version AFFINITY_VERSION) chose no slot and holds none back. Entries go after a
teardown (FIN/RST) plus a linger, or when the switch reports them idle (entry ageing) past the
protocol's idle timeout; a connection never installed is forgotten once silent for that timeout.
A full `conn_table` makes new connections wait (holding their slot, hence rollouts) instead of
dropping them.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address

from controller.core.connections import Connection, ConnKey, ConnState, LearningCounters
from controller.core.ops import (
    EntryTimeoutSet,
    ErrorKind,
    Op,
    Outcome,
    Owner,
    ReadEntry,
    TableDelete,
    TableInsert,
    TableRead,
)
from controller.core.shadow import DipTarget
from p4src.contract import AFFINITY_VERSION, CONN_TABLE, REWRITE_DST

__all__ = ["ConnKey", "ConnState", "Connection", "ConnectionLearner"]

TCP = 6
RETRY_BASE = 0.05
RETRY_MAX = 1.0
DELETE_ATTEMPTS = 5
FOREIGN_GRACE = 1.0


class ConnectionLearner:
    """Tracks every connection from its first digest to the deletion of its entry."""

    def __init__(
        self,
        *,
        capacity: int,
        tcp_idle_timeout: float,
        udp_idle_timeout: float,
        teardown_linger: float,
        foreign_entries: int = 0,
        ageing: bool = True,
    ) -> None:
        self.capacity = capacity
        self.tcp_idle_timeout = tcp_idle_timeout
        self.udp_idle_timeout = udp_idle_timeout
        self.teardown_linger = teardown_linger
        self.ageing = ageing
        self.counters = LearningCounters()
        self.full = False
        self._foreign = foreign_entries
        self.adopt_unknown = foreign_entries > 0
        self._conns: dict[ConnKey, Connection] = {}
        self._by_handle: dict[int, ConnKey] = {}
        self._pending: dict[int, set[ConnKey]] = {}
        self._last_digest: dict[int, float] = {}
        self._per_dip: Counter[str] = Counter()
        self.learned_in_slot: Counter[int] = Counter()  # ~ inserts into each Bloom filter
        self._ready: deque[ConnKey] = deque()
        self._timers: list[tuple[float, int, str, ConnKey | int]] = []
        self._seq = 0
        self._in_use = 0
        self._out: list[Op] = []
        self._foreign_checks: dict[int, float] = {}
        self._refilling = False
        """The switch was lost and conn_table is being read back: handles are not to be used."""
        self._ended: list[ConnKey] = []

    # -- queries

    def pending_count(self, slot: int) -> int:
        """Connections learned under `slot` whose entry is not yet acknowledged."""
        return len(self._pending.get(slot, ()))

    def unsettled(self) -> list[Connection]:
        """Connections learned but not yet acknowledged (carried across a clean restart)."""
        return [self._conns[k] for keys in self._pending.values() for k in keys]

    def last_digest(self, slot: int) -> float | None:
        """When a new_conn digest for `slot` last arrived."""
        return self._last_digest.get(slot)

    def connection(self, key: ConnKey) -> Connection | None:
        """The record of one connection, if known."""
        return self._conns.get(key)

    def dip_connections(self, dip: str) -> int:
        """Known connections (any state) pinned to a DIP."""
        return self._per_dip[dip]

    def __len__(self) -> int:
        return len(self._conns)

    @property
    def waiting(self) -> int:
        """Connections waiting for their install to be issued (table full or retrying)."""
        return len(self._ready)

    @property
    def in_use(self) -> int:
        """conn_table entries held or being written (ours and a previous controller's)."""
        return self._in_use + self._foreign

    def take_ended(self) -> list[ConnKey]:
        """Connections forgotten since the last call: entry deleted (teardown or idle), never
        installed and silent, or left to a previous controller's entry (whose end is unknown)."""
        out, self._ended = self._ended, []
        return out

    def adopt_foreign(self, entries: int) -> None:
        """Attach to a switch holding `entries` conn_table entries this controller did not write."""
        self._foreign = entries
        self.adopt_unknown = True

    # -- inputs

    def on_new_conn(self, now: float, key: ConnKey, version: int, dip: DipTarget) -> None:
        """A new_conn digest: learn the connection unless it is already known."""
        if version != AFFINITY_VERSION:
            self._last_digest[version] = max(now, self._last_digest.get(version, now))
        conn = self._conns.get(key)
        if conn is None:
            self._learn(now, key, version, dip)
            return
        self.counters.duplicate_digests += 1
        if conn.state is ConnState.DELETING:
            # The entry is on its way out; a digest now may be a new connection on the same tuple.
            conn.relearn = (version, dip, now)
            return
        if (conn.version, conn.dip) != (version, dip):
            self.counters.conflicting_digests += 1
        conn.last_digest = max(conn.last_digest, now)

    def on_teardown(self, now: float, key: ConnKey) -> None:
        """A teardown digest (FIN/RST): delete the entry after the linger."""
        conn = self._conns.get(key)
        if conn is None:
            self.counters.unknown_teardown += 1
            return
        conn.teardown_seen = True
        if conn.state is ConnState.INSTALLED and conn.delete_at is None and conn.handle is not None:
            self._schedule_delete(conn, now + self.teardown_linger)

    def on_aged(self, now: float, handles: Iterable[int]) -> None:
        """The switch reports entries idle for longer than their timeout."""
        if self._refilling:
            return  # handles of the lost switch, or of entries not yet matched to connections
        for handle in handles:
            key = self._by_handle.get(handle)
            if key is None:
                if self.adopt_unknown and handle not in self._foreign_checks:
                    # Possibly a previous controller's entry; recheck once in-flight adds settle.
                    self._foreign_checks[handle] = now
                    self._push(now + FOREIGN_GRACE, "foreign", handle)
                continue
            conn = self._conns[key]
            if conn.state is not ConnState.INSTALLED or conn.delete_at is not None:
                continue
            assert conn.installed_at is not None
            if now - conn.installed_at >= self._idle_timeout(conn.key):
                # Guards against a stale notification for a handle the switch has since reused.
                self.counters.expired_idle += 1
                self._schedule_delete(conn, now)

    def switch_lost(self) -> list[Op]:
        """The switch lost conn_table: read back what it holds now (entries this controller
        wrote to the restarted switch before noticing) before installing the rest again."""
        self._refilling = True
        return [TableRead(Owner.LEARNING, CONN_TABLE)]

    def _reinstall(self, present: Mapping[ConnKey, int]) -> int:
        """Install again every installed connection the switch no longer holds (new handles);
        one it holds keeps that entry's handle. Returns how many were installed again.

        Until reinstalled they count as pending against their slot again, which holds that
        slot's reuse exactly as for a newly learned connection.
        """
        restored = 0
        self._refilling = False
        self._by_handle.clear()
        for conn in self._conns.values():
            if conn.state is not ConnState.INSTALLED:
                continue  # adds and deletes in flight settle on their own outcomes
            handle = present.get(conn.key)
            if handle is not None:
                conn.handle = handle
                self._by_handle[handle] = conn.key
                continue
            conn.state = ConnState.PENDING
            conn.handle = None
            conn.delete_at = None
            conn.attempts = 0
            self._pending.setdefault(conn.version, set()).add(conn.key)
            self._in_use -= 1
            self._ready.append(conn.key)
            restored += 1
        self._foreign = 0
        self._foreign_checks.clear()
        self.adopt_unknown = False
        self.counters.reinstalled += restored
        return restored

    # -- outcomes of writes

    def on_outcome(self, now: float, outcome: Outcome) -> None:
        """The outcome of a write `due` (or `switch_lost`) asked for."""
        op = outcome.op
        if isinstance(op, TableRead):
            # Without a read-back every entry is written again (a duplicate is then adopted).
            self._reinstall(conn_entries(outcome.entries) if outcome.ok else {})
        elif isinstance(op, TableInsert):
            key = op.tag
            assert isinstance(key, ConnKey)
            if outcome.ok:
                assert outcome.handle is not None
                self._add_done(now, key, outcome.handle)
            else:
                self._add_failed(now, key, outcome.error)
        elif isinstance(op, EntryTimeoutSet):
            if not outcome.ok:
                self.counters.timeout_failures += 1
                key = op.tag
                assert isinstance(key, ConnKey)
                if outcome.error is not ErrorKind.INVALID:
                    # A transient failure: without its timeout the entry would never age out
                    # (a UDP flow has no teardown), and a drain would wait for drain_timeout.
                    self._retry_timeout(now, key, op.handle)
                # INVALID: ageing unsupported; entries then go only after a teardown.
        elif isinstance(op, TableDelete):
            key = op.tag
            if not isinstance(key, ConnKey):
                self._foreign_deleted(op.handle)
            elif outcome.ok or outcome.error is ErrorKind.NOT_FOUND:
                self._delete_done(key)
            else:
                self._delete_failed(now, key)

    def _add_done(self, now: float, key: ConnKey, handle: int) -> None:
        conn = self._conns[key]
        self._installed(now, conn, handle)
        self.counters.installed += 1
        if self.ageing:
            ms = int(self._idle_timeout(key) * 1000)
            self._out.append(EntryTimeoutSet(Owner.LEARNING, CONN_TABLE, handle, ms, key))
        if conn.teardown_seen:
            self._schedule_delete(conn, now + self.teardown_linger)

    def _add_failed(self, now: float, key: ConnKey, error: ErrorKind | None) -> None:
        """An existing entry counts as installed; otherwise retry later."""
        conn = self._conns[key]
        if error is ErrorKind.DUPLICATE:
            # Already on the switch (a previous controller's entry): pinned, handle unknown.
            # Forget our record; the entry ages out through the foreign-handle path.
            self.counters.foreign_adopted += 1
            self._pending[conn.version].discard(key)
            self._per_dip[conn.dip.name] -= 1
            del self._conns[key]
            self._ended.append(key)
            self._in_use -= 1
            self._foreign += 1
            self.adopt_unknown = True
            return
        self.counters.add_failures += 1
        if error is ErrorKind.TABLE_FULL:
            self.counters.table_full += 1
            self.full = True
        self._in_use -= 1
        conn.state = ConnState.PENDING
        conn.attempts += 1
        self._push(now + min(RETRY_BASE * 2 ** (conn.attempts - 1), RETRY_MAX), "retry", key)

    def _retry_timeout(self, now: float, key: ConnKey, handle: int) -> None:
        conn = self._conns.get(key)
        if conn is None or conn.handle != handle or conn.state is not ConnState.INSTALLED:
            return
        conn.attempts += 1
        self._push(now + min(RETRY_BASE * 2**conn.attempts, RETRY_MAX), "timeout", key)

    def _delete_done(self, key: ConnKey) -> None:
        """Forget the connection (relearn it if a digest came meanwhile)."""
        conn = self._conns.pop(key)
        self._in_use -= 1
        self._per_dip[conn.dip.name] -= 1
        if conn.handle is not None:
            self._by_handle.pop(conn.handle, None)
        if conn.relearn is not None:
            version, dip, seen = conn.relearn
            self._learn(seen, key, version, dip)
        else:
            self._ended.append(key)

    def _delete_failed(self, now: float, key: ConnKey) -> None:
        """Retry a refused delete a few times, then give up on it (counted)."""
        conn = self._conns[key]
        conn.attempts += 1
        if conn.attempts >= DELETE_ATTEMPTS:
            self.counters.delete_failures += 1
            self._delete_done(key)
            return
        conn.state = ConnState.INSTALLED
        conn.delete_at = None
        self._schedule_delete(conn, now + RETRY_BASE * 2**conn.attempts)

    def _foreign_deleted(self, handle: int) -> None:
        """A previous controller's idle entry was deleted (or was already gone)."""
        self._foreign = max(0, self._foreign - 1)
        self._foreign_checks.pop(handle, None)
        self.counters.foreign_deleted += 1

    # -- output

    def due(self, now: float) -> list[Op]:
        """Writes to issue now: timers that fell due, then installs the table has room for."""
        while self._timers and self._timers[0][0] <= now:
            _, _, what, ref = heapq.heappop(self._timers)
            self._fire(now, what, ref)
        self.full = False
        while self._ready:
            if self.in_use >= self.capacity:
                self.full = True
                self.counters.table_full += 1
                break
            conn = self._conns.get(self._ready.popleft())
            if conn is None or conn.state is not ConnState.PENDING:
                continue
            conn.state = ConnState.ADDING
            conn.add_issued_at = now
            self._in_use += 1
            params = (conn.dip.ip, str(conn.dip.port))
            self._out.append(
                TableInsert(
                    Owner.LEARNING, CONN_TABLE, conn.key.match_keys(), REWRITE_DST, params, conn.key
                )
            )
        out, self._out = self._out, []
        return out

    # -- internals

    def _learn(self, now: float, key: ConnKey, version: int, dip: DipTarget) -> None:
        conn = Connection(key, version, dip, ConnState.PENDING, last_digest=now)
        self._conns[key] = conn
        self._pending.setdefault(version, set()).add(key)
        self._per_dip[dip.name] += 1
        self.counters.learned += 1
        self.counters.by_dip[dip.name] += 1
        if version != AFFINITY_VERSION:
            self.learned_in_slot[version] += 1
        self._ready.append(key)
        self._push(now + self._idle_timeout(key), "stale", key)

    def _installed(self, now: float, conn: Connection, handle: int | None) -> None:
        conn.state = ConnState.INSTALLED
        conn.handle = handle
        conn.installed_at = now
        conn.attempts = 0
        self._pending[conn.version].discard(conn.key)
        if handle is not None:
            self._by_handle[handle] = conn.key

    def _schedule_delete(self, conn: Connection, when: float) -> None:
        conn.delete_at = when
        self._push(when, "delete", conn.key)

    def _push(self, when: float, what: str, ref: ConnKey | int) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, what, ref))

    def _fire(self, now: float, what: str, ref: ConnKey | int) -> None:
        if what == "foreign":
            assert isinstance(ref, int)
            self._check_foreign(now, ref)
            return
        assert isinstance(ref, ConnKey)
        conn = self._conns.get(ref)
        if conn is None:
            return
        if what == "retry" and conn.state is ConnState.PENDING:
            self._ready.append(conn.key)
        elif what == "delete" and conn.state is ConnState.INSTALLED and conn.delete_at is not None:
            if conn.delete_at > now:
                return  # superseded by a later schedule; that timer is queued too
            if self._refilling:
                # Its handle is the lost switch's: the same number may name another entry on
                # the new one. Wait for the read-back to say which handle is whose.
                self._push(now + RETRY_BASE, "delete", conn.key)
                return
            if conn.teardown_seen:
                self.counters.expired_teardown += 1
            conn.state = ConnState.DELETING
            assert conn.handle is not None
            self._out.append(TableDelete(Owner.LEARNING, CONN_TABLE, conn.handle, conn.key))
        elif what == "stale" and conn.state is ConnState.PENDING:
            idle = self._idle_timeout(conn.key)
            if now - conn.last_digest >= idle:
                # Never installed and silent for an idle timeout: the connection is gone.
                self.counters.forgotten_pending += 1
                self._pending[conn.version].discard(conn.key)
                self._per_dip[conn.dip.name] -= 1
                del self._conns[conn.key]
                self._ended.append(conn.key)
            else:
                self._push(conn.last_digest + idle, "stale", conn.key)
        elif what == "timeout" and conn.state is ConnState.INSTALLED and conn.handle is not None:
            ms = int(self._idle_timeout(conn.key) * 1000)
            self._out.append(EntryTimeoutSet(Owner.LEARNING, CONN_TABLE, conn.handle, ms, conn.key))
        elif what == "stale" and conn.state is ConnState.ADDING:
            self._push(now + self._idle_timeout(conn.key), "stale", conn.key)

    def _check_foreign(self, now: float, handle: int) -> None:
        if self._refilling:
            return  # the notice named a handle of the lost switch
        noticed = self._foreign_checks.get(handle)
        if noticed is None or handle in self._by_handle:
            self._foreign_checks.pop(handle, None)
            return
        # An add issued before the notification might yet return this handle: wait for it.
        adding = (c for c in self._conns.values() if c.state is ConnState.ADDING)
        if any((c.add_issued_at or 0.0) <= noticed for c in adding):
            self._push(now + FOREIGN_GRACE, "foreign", handle)
        else:
            self._out.append(TableDelete(Owner.LEARNING, CONN_TABLE, handle))

    def _idle_timeout(self, key: ConnKey) -> float:
        return self.tcp_idle_timeout if key.protocol == TCP else self.udp_idle_timeout


def conn_entries(entries: Iterable[ReadEntry]) -> dict[ConnKey, int]:
    """conn_table entries read back, by connection: (src, dst, sport, dport, proto) → handle."""
    out: dict[ConnKey, int] = {}
    for entry in entries:
        values = [v for v in entry.match if isinstance(v, int)]
        if len(values) != 5 or len(entry.match) != 5:
            continue
        src, dst, sport, dport, proto = values
        key = ConnKey(str(IPv4Address(src)), str(IPv4Address(dst)), sport, dport, proto)
        out[key] = entry.handle
    return out
