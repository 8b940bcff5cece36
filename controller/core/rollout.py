"""The rollout commit protocol, pure: when a version slot may be reused, and the steps to switch.

A rollout moves the active version from slot `a` to `s = (a + 1) % VERSION_SLOTS` (always the
next one, so "oldest Bloom match wins" in the data plane stays meaningful). Slot `s` may be
reused only when (1) every connection learned under `s` has its conn_table entry written and
acknowledged, and (2) `s` left the active position, and its last new_conn digest arrived, more
than `quiet_period` ago (covering digests still in flight). Then, three kinds of write, each
acknowledged before the next kind is issued:

1. a fresh epoch for `s` (version_config's default action, `active` unchanged): from then on no
   cell of `bloom_s` equals `s`'s epoch, so no packet selects `s` (it is not active, so nothing
   tags cells with the new epoch either). This replaces clearing the filter: one table write, no
   register access, and it is atomic where a register reset of BLOOM_BITS cells was not;
2. the dip_table writes that turn `s` into the new weights (issued together; nothing reads `s`);
3. version_config with `active = s` — the one atomic step of the switch-over.

A rollout is thus two register-free single-entry writes plus the dip_table diff. Any failure
before step 3 aborts with the active version untouched (a fresh epoch that may or may not have
landed is harmless: the slot is not active and the epoch is never used again; see
controller.core.epochs). A failed step 3 is ambiguous, so the protocol reads version_config's
default entry back and commits or aborts on the `active` it finds.

Residual risk (inherent to stateless Bloom version selection, documented rather than hidden): a
brand-new connection whose key falsely matches `bloom_s` under `s`'s old epoch uses `s` without
tagging any cell; if its first packet lands in the last (digest delay + epoch write latency)
before the fresh epoch and its next packet comes before its entry is installed, that packet
follows the active slot instead. Expected cases per rollout ≈ new-connection rate * P_fp(s) *
window, with P_fp ≈ (1 - e^(-2n/BLOOM_BITS))^2 for n keys inserted while `s` was active
(n = 1,000 → 1e-3). Such digests also restart `s`'s quiet period, so a badly filled filter shows
up as rollout backpressure first. Keep n well below BLOOM_BITS / 20. Cells of earlier epochs add
nothing to P_fp: they can never equal a fresh epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from controller.core.epochs import FlipVersion, FreshEpochs, ReadVersions, VersionConfig
from controller.core.shadow import DipWrite
from controller.core.steps import Step


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
    retires: int = 0
    """Idle slots given a fresh epoch once free to reuse (`SlotTable.retirable`)."""
    table_too_small: int = 0
    """Rollouts not tried: the version cannot fit next to the active one."""
    resyncs: int = 0
    """dip_table read back because a write contradicted the shadow."""


@dataclass(frozen=True)
class RolloutPlan:
    """A decided rollout: the slot, its version_config writes, its dip_table writes and the
    weights it installs (per pool)."""

    slot: int
    version: int
    fresh: FreshEpochs
    writes: tuple[DipWrite, ...]
    flip: FlipVersion
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
    FRESH = "fresh"
    FILL = "fill"
    FLIP = "flip"
    VERIFY = "verify"
    DONE = "done"


class CommitProtocol:
    """Drives one rollout through fresh epoch → writes → flip; feed it each step's outcome
    (`error` is a description for the record, never parsed)."""

    def __init__(self, plan: RolloutPlan, previous_active: int) -> None:
        self.plan = plan
        self.previous_active = previous_active
        self.phase = _Phase.FRESH
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
        return [self.plan.fresh]

    def step_done(self, now: float, step: Step, read: VersionConfig | None = None) -> list[Step]:
        """A step was acknowledged (`read` = what a ReadVersions found); returns the next steps."""
        self._outstanding -= 1
        if isinstance(step, FreshEpochs):
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
        # ReadVersions
        active = None if read is None else read.active
        if active == self.plan.slot:
            self._finish(now, committed=True)
        elif active == self.previous_active:
            self._finish(now, committed=False, reason=self._failure or "flip failed")
        else:
            self._finish(now, committed=False, reason=f"version_config reads active {active!r}")
        return []

    def step_failed(self, now: float, step: Step, error: str) -> list[Step]:
        """A step failed; returns the next steps (none once aborted)."""
        self._outstanding -= 1
        if isinstance(step, FreshEpochs):
            self._finish(now, committed=False, reason=f"fresh epoch: {error}")
            return []
        if isinstance(step, DipWrite):
            self._failure = self._failure or f"dip_table {step.kind.value}: {error}"
            return self._after_write(now)
        # FlipVersion or ReadVersions: ask the switch what happened (again, until it answers).
        self._failure = self._failure or f"flip of version_config: {error}"
        self.phase = _Phase.VERIFY
        self._outstanding = 1
        return [ReadVersions()]

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
        return [self.plan.flip]

    def _finish(self, now: float, *, committed: bool, reason: str = "") -> None:
        self.phase = _Phase.DONE
        self.outcome = RolloutOutcome(self.plan, committed, now, self._written, reason)
