"""Client-IP affinity, pure: one affinity_table entry ("pin") per client of each affinity VIP.

A VIP configured with `affinity = "client_ip"` makes the data plane hash every connection of a
client with source port 0, so all of them select the same version slot and bucket even before
the controller knows anything; and an affinity_table entry (client, VIP, port, protocol) ->
DIP, checked before version selection, keeps them on that DIP once its version is gone. This
component owns those entries (Owner.AFFINITY):

- a client's first connection to the VIP (its new_conn digest) installs its pin to that
  connection's DIP; later connections join the pin (their digests say version AFFINITY_VERSION
  once the entry is in place);
- a pin is deleted `affinity_timeout` seconds after the last of its connections ended (the
  learner reports an end when it deletes or forgets a connection's conn_table entry), never
  while one is alive;
- a pin to a DIP that no longer takes new connections (draining, standby, removed, or down
  by its agent's reports) is deleted at once (`retire`): its live connections keep their
  conn_table entries, and the client's next connection is balanced again;
- a full affinity_table, or a refused add, leaves the client unpinned (counted and recorded):
  its connections fall back to plain hashing with sport 0, which still keeps them together
  while the slot holding the client lasts, and never breaks a connection.

Every connection also gets its own conn_table entry (controller.core.learning), so a pin only
ever decides where new connections go.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from controller.core.connections import AffinityKey, ConnKey
from controller.core.digests import VipKey
from controller.core.ops import ErrorKind, Op, Outcome, Owner, TableDelete, TableInsert
from controller.core.records import FaultThrottle, RecordLog
from controller.core.shadow import DipTarget
from p4src.contract import AFFINITY_TABLE, REWRITE_DST

DELETE_RETRY = 1.0


class PinState(Enum):
    """Where a pin's affinity_table entry is."""

    ADDING = "adding"
    INSTALLED = "installed"
    DELETING = "deleting"
    UNPINNED = "unpinned"
    """No entry (table full or add refused): the client is tracked only to expire."""


@dataclass
class Pin:
    """The controller's record of one client's affinity."""

    key: AffinityKey
    dip: DipTarget
    state: PinState
    live: set[ConnKey] = field(default_factory=set)
    handle: int | None = None
    idle_since: float | None = None
    reinstall: DipTarget | None = None
    """Connections came while the entry was being deleted: add it again (to this DIP) after."""


@dataclass
class AffinityCounters:
    """Monotonic counters (exported as metrics)."""

    pinned: int = 0
    expired: int = 0
    retired: int = 0
    table_full: int = 0
    add_failures: int = 0
    delete_failures: int = 0


class ClientAffinity:
    """Every pin, from its client's first connection to the deletion of its entry."""

    def __init__(self, capacity: int, timeouts: Mapping[VipKey, float], records: RecordLog) -> None:
        self.capacity = capacity
        self.timeouts = dict(timeouts)
        """affinity_timeout of each affinity VIP (the VIPs this component serves)."""
        self.counters = AffinityCounters()
        self._records = records
        self._throttle = FaultThrottle()
        self._pins: dict[AffinityKey, Pin] = {}
        self._by_dip: dict[str, set[AffinityKey]] = {}
        self._held = 0  # pins with an entry on the switch or on its way (not UNPINNED)
        self._timers: list[tuple[float, int, AffinityKey]] = []
        self._seq = 0
        self._out: list[Op] = []

    def serves(self, vip: VipKey) -> bool:
        """Whether `vip` has client-IP affinity."""
        return vip in self.timeouts

    def pin(self, key: AffinityKey) -> Pin | None:
        """A client's pin, if it has one."""
        return self._pins.get(key)

    @property
    def entries(self) -> int:
        """affinity_table entries held or being written."""
        return self._held

    # -- inputs

    def on_new_conn(self, now: float, conn: ConnKey, dip: DipTarget, eligible: bool) -> None:
        """A new connection of an affinity VIP reached `dip` (`eligible`: the DIP still takes
        new connections, so a first connection may pin its client there)."""
        key = AffinityKey.of(conn)
        pin = self._pins.get(key)
        if pin is None:
            if not eligible:
                return
            if self._held >= self.capacity:
                pin = self._track(Pin(key, dip, PinState.UNPINNED))
                self._unpinned(now, pin, "table_full", f"{self.capacity} entries in use")
            else:
                pin = self._track(Pin(key, dip, PinState.ADDING))
                self._held += 1
                self._out.append(self._insert(pin))
        elif pin.state is PinState.DELETING and eligible:
            pin.reinstall = dip
        pin.live.add(conn)
        pin.idle_since = None

    def on_ended(self, now: float, conns: Iterable[ConnKey]) -> None:
        """Connections whose conn_table entries are gone: their pins may start to expire."""
        for conn in conns:
            key = AffinityKey.of(conn)
            pin = self._pins.get(key)
            if pin is None or conn not in pin.live:
                continue
            pin.live.discard(conn)
            if not pin.live:
                pin.idle_since = now
                self._push(now + self.timeouts[key.vip_key], key)

    def retire(self, dips: Iterable[str]) -> None:
        """Delete the pins to DIPs that take no new connections any more (called every tick:
        a pin still being added is deleted on a later call, once it is installed)."""
        for dip in dips:
            for key in list(self._by_dip.get(dip, ())):
                pin = self._pins[key]
                if pin.state is PinState.INSTALLED:
                    self.counters.retired += 1
                    self._delete(pin)
                elif pin.state is PinState.UNPINNED:
                    self._forget(pin)

    def switch_lost(self) -> None:
        """The switch lost affinity_table (and start-up clears it): every pin is gone, and no
        handle of the lost switch may be used on the new one (it hands the numbers out again).
        Clients are pinned afresh on their next connection, as after a controller restart;
        outcomes of writes still in flight find no pin and are ignored."""
        self._pins.clear()
        self._by_dip.clear()
        self._held = 0
        self._timers.clear()

    def on_outcome(self, now: float, outcome: Outcome) -> None:
        """The outcome of an add or delete this component asked for."""
        op = outcome.op
        key = op.tag if isinstance(op, TableInsert | TableDelete) else None
        pin = self._pins.get(key) if isinstance(key, AffinityKey) else None
        if pin is None:
            return
        if isinstance(op, TableInsert):
            if outcome.ok:
                pin.state, pin.handle = PinState.INSTALLED, outcome.handle
                self.counters.pinned += 1
                if pin.idle_since is not None:
                    self._push(max(now, pin.idle_since + self.timeouts[pin.key.vip_key]), pin.key)
            else:
                what = "table_full" if outcome.error is ErrorKind.TABLE_FULL else "add_failed"
                pin.state = PinState.UNPINNED
                self._held -= 1
                self._unpinned(now, pin, what, outcome.detail)
        elif outcome.ok or outcome.error is ErrorKind.NOT_FOUND:
            self._forget(pin)
            if pin.reinstall is not None and pin.live:
                again = self._track(Pin(pin.key, pin.reinstall, PinState.ADDING, pin.live))
                self._held += 1
                self._out.append(self._insert(again))
        else:
            self.counters.delete_failures += 1
            pin.state = PinState.INSTALLED
            self._push(now + DELETE_RETRY, pin.key)

    # -- output

    def due(self, now: float) -> list[Op]:
        """Writes to issue now: pins whose clients have been gone for their timeout."""
        while self._timers and self._timers[0][0] <= now:
            _, _, key = heapq.heappop(self._timers)
            pin = self._pins.get(key)
            if pin is None or pin.live or pin.idle_since is None:
                continue
            if now < pin.idle_since + self.timeouts[key.vip_key]:
                continue  # a later end re-armed it; that timer is queued too
            if pin.state is PinState.UNPINNED:
                self._forget(pin)
            elif pin.state is PinState.INSTALLED:
                self.counters.expired += 1
                self._delete(pin)
        out, self._out = self._out, []
        return out

    # -- internals

    def _track(self, pin: Pin) -> Pin:
        self._pins[pin.key] = pin
        self._by_dip.setdefault(pin.dip.name, set()).add(pin.key)
        return pin

    def _forget(self, pin: Pin) -> None:
        del self._pins[pin.key]
        keys = self._by_dip[pin.dip.name]
        keys.discard(pin.key)
        if not keys:
            del self._by_dip[pin.dip.name]
        if pin.state is not PinState.UNPINNED:
            self._held -= 1

    def _insert(self, pin: Pin) -> TableInsert:
        params = (pin.dip.ip, str(pin.dip.port))
        keys = pin.key.match_keys()
        return TableInsert(Owner.AFFINITY, AFFINITY_TABLE, keys, REWRITE_DST, params, pin.key)

    def _delete(self, pin: Pin) -> None:
        assert pin.handle is not None
        pin.state = PinState.DELETING
        self._out.append(TableDelete(Owner.AFFINITY, AFFINITY_TABLE, pin.handle, pin.key))

    def _unpinned(self, now: float, pin: Pin, what: str, detail: str) -> None:
        """An UNPINNED client: count, record (throttled), keep it only to expire."""
        if what == "table_full":
            self.counters.table_full += 1
        else:
            self.counters.add_failures += 1
        client = f"{pin.key.client} -> {pin.key.vip}:{pin.key.port}"
        event = self._throttle.note(
            now, f"affinity_{what}", f"{client} not pinned, plain hashing: {detail}"
        )
        if event is not None:
            self._records.extend([event])
        if pin.idle_since is not None:
            self._push(pin.idle_since + self.timeouts[pin.key.vip_key], pin.key)

    def _push(self, when: float, key: AffinityKey) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, key))
