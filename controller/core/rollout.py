"""The rollout commit protocol, pure: when a version slot may be reused, and the steps to switch.

A rollout moves the active version from slot `a` to `s = (a + 1) % VERSION_SLOTS` (always the
next one, so "oldest Bloom match wins" in the data plane stays meaningful). Slot `s` may be
reused only when (1) every connection learned under `s` has its conn_table entry written and
acknowledged, and (2) `s` left the active position, and its last new_conn digest arrived, more
than `quiet_period` ago (covering digests still in flight). Then:

1. `register_reset(bloom_s)` — first, so that while `s` is being filled no packet can match it
   (it is not active, so nothing adds bits to it);
2. the dip_table writes that turn `s` into the new weights (issued together; nothing reads `s`);
3. `register_write(active_version, 0, s)` — the one atomic step, issued only after every write
   above was acknowledged.

Any failure before step 3 aborts with the active version untouched. A failed step 3 is
ambiguous, so the protocol reads `active_version` back and commits or aborts on what it finds.

Residual risk (inherent to stateless Bloom version selection, documented rather than hidden): a
brand-new connection whose 5-tuple falsely matches the stale Bloom filter of slot `s` uses `s`
without adding bits anywhere; if its first packet lands in the last (digest delay + reset latency)
before `bloom_s` is cleared and its next packet comes before its entry is installed, that packet
follows the active slot instead. Expected cases per rollout ≈ new-connection rate * P_fp(s) *
window, with P_fp ≈ (1 - e^(-2n/BLOOM_BITS))^2 for n connections learned while `s` was active
(n = 1,000 → 1e-3). Such digests also restart `s`'s quiet period, so a badly filled filter shows
up as rollout backpressure first. Keep n well below BLOOM_BITS / 20.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from controller.core.shadow import DipWrite
from controller.core.steps import FlipVersion, ReadActive, ResetBloom, Step


@dataclass
class RolloutCounters:
    """Rollout counters (exported as metrics)."""

    rollouts: int = 0
    rollouts_aborted: int = 0
    backpressure: int = 0
    write_failures: int = 0
    reclaims: int = 0
    """Rounds that freed idle slots of a full dip_table (controller.core.reclaim)."""
    entries_reclaimed: int = 0
    reclaim_failures: int = 0
    table_too_small: int = 0
    """Rollouts not tried: the version cannot fit next to the active one."""
    resyncs: int = 0
    """dip_table read back because a write contradicted the shadow."""


@dataclass(frozen=True)
class RolloutPlan:
    """A decided rollout: the slot, its writes and the weights it installs (per pool)."""

    slot: int
    version: int
    writes: tuple[DipWrite, ...]
    weights: Mapping[int, tuple[int, ...]]
    decided_at: float


@dataclass(frozen=True)
class RolloutOutcome:
    """How a rollout ended."""

    plan: RolloutPlan
    committed: bool
    finished_at: float
    entries_written: int
    reason: str = ""

    @property
    def duration(self) -> float:
        """Seconds from decision to the flip's acknowledgement (or the abort)."""
        return self.finished_at - self.plan.decided_at


class _Phase(Enum):
    RESET = "reset"
    FILL = "fill"
    FLIP = "flip"
    VERIFY = "verify"
    DONE = "done"


class CommitProtocol:
    """Drives one rollout through reset → writes → flip; feed it each step's outcome (`error`
    is a description for the record, never parsed)."""

    def __init__(self, plan: RolloutPlan, previous_active: int) -> None:
        self.plan = plan
        self.previous_active = previous_active
        self.phase = _Phase.RESET
        self._outstanding = 0
        self._written = 0
        self._failure: str | None = None
        self.outcome: RolloutOutcome | None = None

    @property
    def done(self) -> bool:
        """Whether the rollout has committed or aborted."""
        return self.outcome is not None

    def begin(self) -> list[Step]:
        """The first step."""
        self._outstanding = 1
        return [ResetBloom(self.plan.slot)]

    def step_done(self, now: float, step: Step, value: object = None) -> list[Step]:
        """A step was acknowledged (`value` = what a read returned); returns the next steps."""
        self._outstanding -= 1
        if isinstance(step, ResetBloom):
            if not self.plan.writes:
                return self._flip()
            self.phase = _Phase.FILL
            self._outstanding = len(self.plan.writes)
            return list(self.plan.writes)
        if isinstance(step, DipWrite):
            self._written += 1
            return self._after_write(now)
        if isinstance(step, FlipVersion):
            self._finish(now, committed=True)
            return []
        # ReadActive
        if value == self.plan.slot:
            self._finish(now, committed=True)
        elif value == self.previous_active:
            self._finish(now, committed=False, reason=self._failure or "flip failed")
        else:
            self._finish(now, committed=False, reason=f"active_version reads {value!r}")
        return []

    def step_failed(self, now: float, step: Step, error: str) -> list[Step]:
        """A step failed; returns the next steps (none once aborted)."""
        self._outstanding -= 1
        if isinstance(step, ResetBloom):
            self._finish(now, committed=False, reason=f"register_reset: {error}")
            return []
        if isinstance(step, DipWrite):
            self._failure = self._failure or f"dip_table {step.kind.value}: {error}"
            return self._after_write(now)
        # FlipVersion or ReadActive: ask the switch what happened (again, until it answers).
        self._failure = self._failure or f"register_write(active_version): {error}"
        self.phase = _Phase.VERIFY
        self._outstanding = 1
        return [ReadActive()]

    def _after_write(self, now: float) -> list[Step]:
        if self._outstanding > 0:
            return []
        if self._failure is not None:
            self._finish(now, committed=False, reason=self._failure)
            return []
        return self._flip()

    def _flip(self) -> list[Step]:
        self.phase = _Phase.FLIP
        self._outstanding = 1
        return [FlipVersion(self.plan.slot)]

    def _finish(self, now: float, *, committed: bool, reason: str = "") -> None:
        self.phase = _Phase.DONE
        self.outcome = RolloutOutcome(self.plan, committed, now, self._written, reason)
