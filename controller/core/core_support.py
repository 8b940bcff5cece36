"""Values and plumbing of the pure core: calls and their outcomes, records, start-up, journal."""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from controller.core.connections import ConnOp, LearningCounters, OpKind
from controller.core.learning import ConnectionLearner
from controller.core.pools import BackendPool
from controller.core.rollout import FlipVersion, ReadActive, ResetBloom, Step
from controller.core.shadow import DipShadow, DipWrite, WriteKind

SHARE_WINDOW = 5.0
FAULT_RECORD_INTERVAL = 1.0
PROTOCOL_NUMBERS = frozenset({6, 17})


class DigestLike(Protocol):
    """The fields of a switch digest the core reads (read-only)."""

    @property
    def kind(self) -> str: ...
    @property
    def src_ip(self) -> str: ...
    @property
    def dst_ip(self) -> str: ...
    @property
    def src_port(self) -> int: ...
    @property
    def dst_port(self) -> int: ...
    @property
    def protocol(self) -> int: ...
    @property
    def version(self) -> int: ...
    @property
    def dip_ip(self) -> str: ...
    @property
    def dip_port(self) -> int: ...


@dataclass(frozen=True)
class SwitchCall:
    """Call `method(*args)` on the SwitchClient and report the outcome with `token`."""

    token: int
    method: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class SwitchView:
    """What the shell read from the switch before starting."""

    active_version: int
    conn_entries: int
    dip_entries: int


@dataclass(frozen=True)
class RecordEvent:
    """A time-series record for controller.shell.record.Recorder."""

    now: float
    kind: str
    fields: Mapping[str, Any]


Handler = Callable[[float, bool, Any, str], None]


class CallQueue:
    """Calls waiting to be handed to the shell, and the handler of each outstanding one."""

    def __init__(self) -> None:
        self._out: list[SwitchCall] = []
        self._handlers: dict[int, Handler] = {}
        self._token = 0

    def call(self, method: str, args: tuple[Any, ...], handler: Handler) -> None:
        """Queue a call; `handler(now, ok, value, error)` runs with its outcome."""
        self._token += 1
        self._handlers[self._token] = handler
        self._out.append(SwitchCall(self._token, method, args))

    def resolve(self, now: float, token: int, ok: bool, value: Any, error: str) -> None:
        """Run the handler of a finished call (unknown tokens are ignored)."""
        handler = self._handlers.pop(token, None)
        if handler is not None:
            handler(now, ok, value, error)

    def take(self) -> list[SwitchCall]:
        """Calls queued since the last take."""
        out, self._out = self._out, []
        return out

    @property
    def outstanding(self) -> int:
        """Calls handed out and not yet resolved."""
        return len(self._handlers) - len(self._out)


def learning_call(calls: CallQueue, learner: ConnectionLearner, op: ConnOp) -> None:
    """Queue the conn_table call for one learning op, wiring its outcome back to the learner."""
    key = op.key
    if op.kind is OpKind.ADD:
        assert key is not None and op.dip is not None

        def added(now: float, ok: bool, value: Any, error: str) -> None:
            if ok:
                learner.add_done(now, key, int(value))
            else:
                learner.add_failed(now, key, error)

        args = ("conn_table", "rewrite_dst", key.match_keys(), [op.dip.ip, str(op.dip.port)])
        calls.call("table_add", args, added)
    elif op.kind is OpKind.SET_TIMEOUT:

        def timed(now: float, ok: bool, value: Any, error: str) -> None:
            if not ok:
                learner.timeout_failed()

        calls.call("table_set_timeout", ("conn_table", op.handle, op.timeout_ms), timed)
    elif op.kind is OpKind.DELETE:
        assert key is not None

        def deleted(now: float, ok: bool, value: Any, error: str) -> None:
            if ok:
                learner.delete_done(now, key)
            else:
                learner.delete_failed(now, key, error)

        calls.call("table_delete", ("conn_table", op.handle), deleted)
    else:
        handle = op.handle
        assert handle is not None
        calls.call(
            "table_delete", ("conn_table", handle), lambda *_: learner.foreign_deleted(handle)
        )


class ActivityRecords:
    """Turns learning counters into "learn", "expire" and "share" records."""

    def __init__(self) -> None:
        self._learned = 0
        self._expired = 0
        self._share_since = 0.0
        self._share_mark: Counter[str] = Counter()

    def collect(
        self, now: float, counters: LearningCounters, pools: Iterable[BackendPool]
    ) -> list[RecordEvent]:
        """Records for what happened since the previous call."""
        out: list[RecordEvent] = []
        expired = counters.expired_idle + counters.expired_teardown
        if counters.learned != self._learned:
            out.append(RecordEvent(now, "learn", {"count": counters.learned - self._learned}))
            self._learned = counters.learned
        if expired != self._expired:
            out.append(RecordEvent(now, "expire", {"count": expired - self._expired}))
            self._expired = expired
        if now - self._share_since >= SHARE_WINDOW:
            delta = counters.by_dip - self._share_mark
            for pool in pools:
                counts = {m.dip: delta.get(m.dip, 0) for m in pool}
                total = sum(counts.values())
                if total:
                    shares = {d: c / total for d, c in counts.items()}
                    out.append(RecordEvent(now, "share", {"pool": pool.vip.name, "shares": shares}))
            self._share_since = now
            self._share_mark = Counter(counters.by_dip)
        return out


class FaultThrottle:
    """Turns a stream of faults into "fault" records: the first of each kind at once, then at
    most one per `interval` naming how many were left out (the counters keep every one)."""

    def __init__(self, interval: float = FAULT_RECORD_INTERVAL) -> None:
        self.interval = interval
        self._next: dict[str, float] = {}
        self._skipped: Counter[str] = Counter()

    def note(self, now: float, what: str, detail: str) -> RecordEvent | None:
        """The record to write for this fault, or None while throttled."""
        if now < self._next.get(what, -math.inf):
            self._skipped[what] += 1
            return None
        self._next[what] = now + self.interval
        skipped = self._skipped.pop(what, 0)
        if skipped:
            detail = f"{detail} (and {skipped} more since the last record)"
        return RecordEvent(now, "fault", {"what": what, "detail": detail})


def digest_problem(
    digest: DigestLike, slots: int, vips: Mapping[tuple[str, int, int], frozenset[str]]
) -> tuple[str, str] | None:
    """Why a digest cannot be taken as is: ("malformed" | "unknown_vip" | "unknown_dip", detail).

    `vips` maps each configured (VIP ip, port, protocol) to its pool's DIP names. A digest for a
    DIP outside the pool is still worth pinning (the data plane already sent the connection
    there); the others are dropped by the caller.
    """
    if digest.kind not in ("new_conn", "teardown"):
        return "malformed", f"unknown digest kind {digest.kind!r}"
    for name in ("src_port", "dst_port", "dip_port"):
        value = getattr(digest, name)
        if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
            return "malformed", f"{name} {value!r} is not a port number"
    if digest.protocol not in PROTOCOL_NUMBERS:
        return "malformed", f"protocol {digest.protocol!r} is neither TCP nor UDP"
    version = digest.version
    if not isinstance(version, int) or not 0 <= version < slots:
        return "malformed", f"version {version!r} is not a slot in [0, {slots})"
    for name in ("src_ip", "dst_ip", "dip_ip"):
        value = getattr(digest, name)
        try:
            ipaddress.IPv4Address(value if isinstance(value, str) else "")
        except ValueError:
            return "malformed", f"{name} {value!r} is not an IPv4 address"
    if digest.kind != "new_conn":
        return None
    vip = (digest.dst_ip, digest.dst_port, digest.protocol)
    members = vips.get(vip)
    if members is None:
        return "unknown_vip", f"{digest.dst_ip}:{digest.dst_port}/{digest.protocol} is no VIP"
    dip = f"{digest.dip_ip}:{digest.dip_port}"
    if dip not in members:
        return "unknown_dip", f"{dip} is not in the pool of {digest.dst_ip}:{digest.dst_port}"
    return None


@dataclass(frozen=True)
class RouteEntry:
    """One ipv4_lpm entry: forward(port, src_mac, dst_mac) for a prefix."""

    keys: Sequence[str]
    params: Sequence[str]


class BootTracker:
    """Counts start-up writes still unacknowledged and remembers the first failure."""

    def __init__(self) -> None:
        self.outstanding = 0
        self.failure: str | None = None

    def expect(self) -> None:
        """One more write to wait for."""
        self.outstanding += 1

    def settle(self) -> None:
        """One write acknowledged."""
        self.outstanding -= 1

    def fail(self, reason: str) -> None:
        """A start-up write failed: start-up failed."""
        self.outstanding -= 1
        self.failure = self.failure or reason

    @property
    def done(self) -> bool:
        """Every start-up write is settled."""
        return self.outstanding <= 0


class StepCalls:
    """Turns rollout steps into SwitchClient calls."""

    @staticmethod
    def call_for(step: Step) -> tuple[str, tuple[Any, ...]]:
        """(method, args) for one step."""
        if isinstance(step, ResetBloom):
            return "register_reset", (step.register,)
        if isinstance(step, FlipVersion):
            return "register_write", ("active_version", 0, step.slot)
        if isinstance(step, ReadActive):
            return "register_read", ("active_version", 0)
        return StepCalls.write_call(step)

    @staticmethod
    def write_call(write: DipWrite) -> tuple[str, tuple[Any, ...]]:
        """(method, args) for one dip_table write."""
        if write.kind is WriteKind.ADD:
            return "table_add", (
                "dip_table",
                "rewrite_dst",
                write.match_keys(),
                write.action_params(),
            )
        assert write.handle is not None
        if write.kind is WriteKind.MODIFY:
            return "table_modify", ("dip_table", "rewrite_dst", write.handle, write.action_params())
        return "table_delete", ("dip_table", write.handle)


class JournalError(ValueError):
    """A state journal that cannot be read."""


@dataclass(frozen=True)
class JournalState:
    """What a journal says the switch holds."""

    active: int
    pending: int | None
    shadow: DipShadow
    slot_weights: list[dict[int, dict[str, int]] | None]
    stopped_at: float | None = None
    """When the previous controller stopped cleanly (its clock), if it did."""
    unsettled: tuple[tuple[Any, ...], ...] = ()
    """Connections it had learned but not yet installed: (src, dst, sport, dport, proto,
    version, dip_ip, dip_port)."""

    def matches(self, active: int, dip_entries: int) -> bool:
        """Whether the switch agrees (active slot and dip_table entry count)."""
        return active in (self.active, self.pending) and self.shadow.size() == dip_entries


def parse_journal(data: Mapping[str, Any], slots: int) -> JournalState:
    """Read a journal written by ControllerCore.journal; raise JournalError if malformed."""
    try:
        shadow = DipShadow.from_json(data["shadow"])
        if shadow.slot_count != slots:
            raise JournalError(f"journal has {shadow.slot_count} slots, switch has {slots}")
        weights: list[dict[int, dict[str, int]] | None] = [
            None
            if w is None
            else {int(p): {str(d): int(x) for d, x in m.items()} for p, m in w.items()}
            for w in data["slot_weights"]
        ]
        pending, stopped = data.get("pending"), data.get("stopped_at")
        unsettled = tuple(
            (str(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]), str(r[6]), int(r[7]))
            for r in data.get("unsettled", ())
        )
        return JournalState(
            int(data["active"]),
            None if pending is None else int(pending),
            shadow,
            weights,
            None if stopped is None else float(stopped),
            unsettled,
        )
    except JournalError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise JournalError(f"malformed journal: {exc!r}") from exc
