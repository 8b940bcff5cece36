"""Per-DIP load state built from agent reports: validation, ordering and liveness (pure).

Liveness is decided here and nowhere else (`DipLoad.live`), with `down_after = 3 x interval`:

* never reported → "unknown": a DIP without an agent, served on its configured weight; but a
  DIP known to have reported before (`expect_reports`, from the state journal across a
  controller restart) → "down" until it reports again, so a server whose agent died while no
  controller watched gets nothing;
* the first report ever → straight to "up" (a new agent is not recovering from anything);
* no report for `down_after` seconds, or the agent itself reports "down" → "down";
* reports resuming after "down" → "blackout" for `blackout` seconds of uninterrupted reports,
  then "up" (or "drain" if the agent asks for it) — so a flapping server earns no traffic.

Ordering: a report is accepted when its `seq` is above the last accepted one. A lower `seq` is
taken as an agent restart (seq restarts at 0) when its `ts` is newer than the last accepted report
or the DIP has been silent for `down_after`; otherwise it is stale (reordered or replayed). The
same `seq` again is a duplicate. `last_seen` is the controller's clock (`now`), never the agent's.

Claims are bounded by the controller's clock, so one forged or broken report (a far-future `ts`,
`seq` near 2**63) cannot set a mark the genuine agent never reaches again: while a DIP is not
silent, `seq` may run ahead by at most `SEQ_SLACK` plus one report per `MIN_AGENT_INTERVAL` of
controller time, and `ts` by the controller time elapsed plus `down_after`; beyond that a report is
stale. And `RESYNC_REPORTS` consecutive rejected reports that form a plausible run of their own
(rising `seq`, `ts` advancing with the controller's clock) are a live agent the book lost track
of (its clock stepped, or a forged report got in first): the run's latest report is accepted as a
restart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from agent.wire import LoadReport, ProtocolError, decode_report, parse_dip

DipState = Literal["up", "down", "blackout", "drain", "unknown"]
LIVE_STATES: Final = frozenset({"up", "unknown"})
Outcome = Literal["accepted", "malformed", "unknown_dip", "stale", "duplicate"]

MALFORMED_REASONS: Final = (
    "oversized",
    "not_json",
    "bad_version",
    "missing_field",
    "bad_field",
    "bad_dip",
    "internal",
)
COUNTER_NAMES: Final = (
    "accepted",
    "malformed",
    *(f"malformed_{reason}" for reason in MALFORMED_REASONS),
    "unknown_dip",
    "stale",
    "duplicate",
    "restarts",
)
MIN_AGENT_INTERVAL: Final = 0.01
"""The shortest report interval p4lb-agent accepts: seq grows by at most one per this long."""
SEQ_SLACK: Final = 1000
"""Seq advance always allowed (agents restarted under a new interval, clock granularity)."""
RESYNC_REPORTS: Final = 2
"""Consecutive plausible rejected reports after which the book follows them (a restart)."""
MAX_RUNS: Final = 4
"""Runs of rejected reports followed at once per DIP."""
EXACT_COUNT: Final = 2.0**53
"""Largest arrival count kept: past it a float stops counting single connections, and a count
an absurd conn_rate pushed there would read as no arrivals for the rest of the agent's run."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What happened to one message: `outcome` "accepted" or the rejection kind."""

    outcome: Outcome
    dip: str | None = None
    """The report's DIP when the message decoded (None for malformed input)."""
    detail: str = ""
    """Human-readable reason for a rejection (the ProtocolError text for malformed input)."""

    @property
    def accepted(self) -> bool:
        """True if the report updated the book."""
        return self.outcome == "accepted"


@dataclass(frozen=True, slots=True)
class DipLoad:
    """A DIP's load and liveness as seen at one instant."""

    dip: str
    state: DipState
    cpu: float
    """Latest reported CPU utilisation (0 if never reported)."""
    conns: int
    conn_rate: float | None
    last_seen: float | None
    """Controller time of the last accepted report."""
    report_age: float
    """Seconds since `last_seen` (inf if never)."""
    seq: int | None
    reported_state: str | None
    """The state field of the latest report ("up", "drain", "down")."""
    arrived: float | None = None
    """New connections the agent's current run has reported since `arrived_since` (each
    report's conn_rate times the agent's time since the run's previous report); None without
    rates. A policy that looks less often than agents report takes its rate between two looks
    from this count (`policy.ReportSpans`), not from the latest report's period alone."""
    arrived_since: float | None = None
    """Controller time of the report `arrived` and `busy` count from (a new run starts anew)."""
    busy: float | None = None
    """Busy CPU-seconds the same reports add up to (each report's cpu times the agent's time
    since the run's previous report); None with `arrived`. The mean CPU between two looks comes
    from this count, so that the work a member did and the CPU it took cover the same span."""

    @property
    def live(self) -> bool:
        """Whether the DIP may take new connections (as far as its agent tells)."""
        return self.state in LIVE_STATES

    @property
    def reported(self) -> bool:
        """Whether the DIP's agent has reported since this controller started."""
        return self.last_seen is not None


@dataclass(slots=True)
class _Run:
    """A run of rejected reports: the latest one's seq, ts and arrival, and its length."""

    seq: int
    ts: float
    at: float
    length: int = 1


@dataclass(slots=True)
class _DipRecord:
    seq: int = -1
    ts: float = -math.inf
    cpu: float = 0.0
    conns: int = 0
    conn_rate: float | None = None
    arrived: float | None = None
    arrived_since: float | None = None
    busy: float | None = None
    expected: bool = False
    """Known (from the journal) to have reported to a previous controller."""
    reported_state: str | None = None
    last_seen: float | None = None
    recovering_since: float | None = None
    runs: list[_Run] = field(default_factory=list)
    """Rejected reports forming plausible runs of their own (see RESYNC_REPORTS)."""


class LoadBook:
    """Latest load per DIP, fed with raw report bytes and queried with an explicit `now`."""

    def __init__(
        self,
        dips: Iterable[str],
        interval: float,
        blackout: float | None = None,
    ) -> None:
        if not interval > 0 or not math.isfinite(interval):
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        if blackout is None:
            blackout = 2 * interval
        if not 0 <= blackout < math.inf:
            raise ValueError(f"blackout must be >= 0 seconds, got {blackout!r}")
        self.interval = float(interval)
        self.down_after = 3.0 * self.interval
        self.blackout = float(blackout)
        self._records: dict[str, _DipRecord] = {}
        self._counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        for dip in dips:
            self.add_dip(dip)

    @property
    def counters(self) -> Mapping[str, int]:
        """Counts of accepted reports, restarts and every kind of rejected input."""
        return dict(self._counters)

    @property
    def dips(self) -> tuple[str, ...]:
        """The DIPs this book tracks, in insertion order."""
        return tuple(self._records)

    def add_dip(self, dip: str) -> None:
        """Start tracking a DIP (no-op if tracked); raises ValueError for a malformed name."""
        try:
            parse_dip(dip)
        except ProtocolError as exc:
            raise ValueError(str(exc)) from None
        self._records.setdefault(dip, _DipRecord())

    def remove_dip(self, dip: str) -> None:
        """Stop tracking a DIP; its later reports count as unknown_dip."""
        self._records.pop(dip, None)

    def ingest(self, now: float, data: bytes) -> IngestResult:
        """Decode and apply one message; never raises on bad input (it is counted instead)."""
        counters = self._counters
        try:
            report = decode_report(data)
        except Exception as exc:  # decode_report raises ProtocolError only; a bug drops one report
            reason = exc.reason if isinstance(exc, ProtocolError) else "internal"
            counters["malformed"] += 1
            counters[f"malformed_{reason}"] = counters.get(f"malformed_{reason}", 0) + 1
            detail = f"{exc}" if reason != "internal" else f"{type(exc).__name__}: {exc}"
            return IngestResult("malformed", None, detail)
        dip = report.dip
        record = self._records.get(dip)
        if record is None:
            counters["unknown_dip"] += 1
            return IngestResult("unknown_dip", dip, f"{dip!r} is not a configured DIP")
        silent = record.last_seen is None or now - record.last_seen >= self.down_after
        if report.seq == record.seq and report.ts == record.ts:
            counters["duplicate"] += 1
            return IngestResult("duplicate", dip, f"seq {report.seq} seen already")
        if silent:  # a new run may start anywhere
            problem = ""
        elif report.seq <= record.seq and not report.ts > record.ts:
            problem = f"seq {report.seq} <= {record.seq} and ts not newer"
        elif report.seq == record.seq:
            # The same seq with another ts: no agent does that (seq counts every report), and
            # a restarted one counts from 0. Dropped without joining any run.
            counters["stale"] += 1
            return IngestResult("stale", dip, f"seq {report.seq} again with another ts")
        else:
            problem = self._implausible(
                record.seq, record.ts, now - (record.last_seen or 0), report
            )
        restarted = report.seq <= record.seq
        if problem:
            if not self._resynced(record, report, now):
                counters["stale"] += 1
                return IngestResult("stale", dip, f"{problem} (last accepted seq {record.seq})")
            restarted = True
        record.runs = []
        if restarted:
            counters["restarts"] += 1
        was_down = record.last_seen is not None and (silent or record.reported_state == "down")
        if was_down and report.state != "down":
            record.recovering_since = now
        rate = report.conn_rate
        if rate is None:
            record.arrived = record.arrived_since = record.busy = None
        else:
            total = busy = math.nan
            if (
                not (restarted or silent)
                and record.arrived is not None
                and record.busy is not None
                and report.ts > record.ts
            ):
                total = record.arrived + rate * (report.ts - record.ts)
                busy = record.busy + report.cpu * (report.ts - record.ts)
            if total < EXACT_COUNT:
                record.arrived, record.busy = total, busy
            else:  # a new run, or a count no longer exact (an absurd rate): count afresh
                record.arrived, record.busy, record.arrived_since = 0.0, 0.0, now
        record.seq = report.seq
        record.ts = report.ts
        record.cpu = report.cpu
        record.conns = report.conns
        record.conn_rate = report.conn_rate
        record.reported_state = report.state
        record.last_seen = now
        counters["accepted"] += 1
        return IngestResult("accepted", dip)

    def _implausible(self, seq: int, ts: float, elapsed: float, report: LoadReport) -> str:
        """Why `report` claims more progress than `elapsed` controller seconds allow ("" if not)."""
        elapsed = max(0.0, elapsed)
        if report.seq - seq > SEQ_SLACK + elapsed / MIN_AGENT_INTERVAL:
            return f"seq {report.seq} jumps too far ahead"
        if report.ts - ts > elapsed + self.down_after:
            return f"ts {report.ts!r} runs ahead of the controller's clock"
        return ""

    def _resynced(self, record: _DipRecord, report: LoadReport, now: float) -> bool:
        """Note a rejected report; True once it completes a run of RESYNC_REPORTS plausible ones
        while no other run is going on (two streams at once are a replay or a liar beside the
        agent, and neither is followed until one falls silent)."""
        live = [r for r in record.runs if now - r.at < self.down_after]
        run = next(
            (
                r
                for r in live
                if report.seq > r.seq
                and report.ts > r.ts
                and not self._implausible(r.seq, r.ts, now - r.at, report)
            ),
            None,
        )
        if run is None:
            run = _Run(report.seq, report.ts, now)
            live = [*live[-(MAX_RUNS - 1) :], run]
        else:
            run.seq, run.ts, run.at, run.length = report.seq, report.ts, now, run.length + 1
        record.runs = live
        return run.length >= RESYNC_REPORTS and len(live) == 1

    def state(self, now: float, dip: str) -> DipState:
        """Liveness of one tracked DIP at `now` (KeyError if untracked)."""
        return self._state(now, self._records[dip])

    def _state(self, now: float, record: _DipRecord) -> DipState:
        if record.last_seen is None:
            return "down" if record.expected else "unknown"
        if now - record.last_seen >= self.down_after:
            return "down"
        if record.reported_state == "down":
            return "down"
        since = record.recovering_since
        if since is not None and now - since < self.blackout:
            return "blackout"
        return "drain" if record.reported_state == "drain" else "up"

    def expect_reports(self, dips: Iterable[str]) -> None:
        """These tracked DIPs reported to a previous controller: until they report again they
        are "down", not "unknown" (their agent may have died while nobody watched)."""
        for dip in dips:
            record = self._records.get(dip)
            if record is not None:
                record.expected = True

    def snapshot(self, now: float) -> dict[str, DipLoad]:
        """Every tracked DIP's load and state at `now`, in insertion order."""
        result: dict[str, DipLoad] = {}
        for dip, record in self._records.items():
            last = record.last_seen
            result[dip] = DipLoad(
                dip=dip,
                state=self._state(now, record),
                cpu=record.cpu,
                conns=record.conns,
                conn_rate=record.conn_rate,
                last_seen=last,
                report_age=math.inf if last is None else max(0.0, now - last),
                seq=None if record.seq < 0 else record.seq,
                reported_state=record.reported_state,
                arrived=record.arrived,
                arrived_since=record.arrived_since,
                busy=record.busy,
            )
        return result
