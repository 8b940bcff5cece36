"""Time-series records the core produces (pure): events, throttled faults, learning activity."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller.core.connections import LearningCounters
from controller.core.pools import BackendPool

SHARE_WINDOW = 5.0
FAULT_RECORD_INTERVAL = 1.0


@dataclass(frozen=True)
class RecordEvent:
    """A time-series record for controller.shell.record.Recorder."""

    now: float
    kind: str
    fields: Mapping[str, object]


class RecordLog:
    """Records produced since the shell last took them."""

    def __init__(self) -> None:
        self._records: list[RecordEvent] = []

    def add(self, now: float, kind: str, **fields: object) -> None:
        """Append one record."""
        self._records.append(RecordEvent(now, kind, fields))

    def extend(self, records: Iterable[RecordEvent]) -> None:
        """Append records made elsewhere."""
        self._records.extend(records)

    def fault(self, now: float, what: str, detail: str) -> None:
        """Append a "fault" record."""
        self.add(now, "fault", what=what, detail=detail)

    def take(self) -> list[RecordEvent]:
        """Every record since the last call."""
        out, self._records = self._records, []
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
