"""Commit protocol: slot reuse rules, step order, aborts that leave the active version alone."""

from __future__ import annotations

import pytest

from controller.core.rollout import CommitProtocol, RolloutPlan
from controller.core.shadow import BucketKey, DipTarget, DipWrite, WriteKind
from controller.core.slots import SlotLedger, skip_reason
from controller.core.steps import FlipVersion, ReadActive, ResetBloom


def writes(n: int, slot: int = 1) -> tuple[DipWrite, ...]:
    return tuple(
        DipWrite(WriteKind.ADD, slot, BucketKey(0, i, 16), DipTarget("10.0.0.1", 80), None)
        for i in range(n)
    )


def plan(n: int = 3, slot: int = 1) -> RolloutPlan:
    return RolloutPlan(slot, 7, writes(n, slot), {0: (1, 1)}, decided_at=10.0)


def test_steps_go_reset_then_writes_then_flip_last() -> None:
    commit = CommitProtocol(plan(3), previous_active=0)
    assert commit.begin() == [ResetBloom(1)]
    fill = commit.step_done(10.1, ResetBloom(1))
    assert len(fill) == 3 and all(isinstance(s, DipWrite) for s in fill)
    assert commit.step_done(10.2, fill[0]) == []
    assert commit.step_done(10.2, fill[2]) == []
    assert commit.step_done(10.3, fill[1]) == [FlipVersion(1)]
    assert not commit.done
    assert commit.step_done(10.4, FlipVersion(1)) == []
    assert commit.outcome is not None and commit.outcome.committed
    assert commit.outcome.entries_written == 3
    assert commit.outcome.duration == pytest.approx(0.4)


def test_failed_write_waits_for_the_others_then_aborts_without_flipping() -> None:
    commit = CommitProtocol(plan(3), previous_active=0)
    commit.begin()
    fill = commit.step_done(0, ResetBloom(1))
    assert commit.step_failed(10.2, fill[0], "TABLE_FULL") == []
    assert commit.step_done(10.2, fill[1]) == []
    assert not commit.done
    assert commit.step_done(10.5, fill[2]) == []
    assert commit.outcome is not None and not commit.outcome.committed
    assert "TABLE_FULL" in commit.outcome.reason


def test_failed_reset_aborts_at_once() -> None:
    commit = CommitProtocol(plan(2), previous_active=0)
    commit.begin()
    assert commit.step_failed(1.0, ResetBloom(1), "down") == []
    assert commit.outcome is not None and not commit.outcome.committed


@pytest.mark.parametrize(("read", "committed"), [(1, True), (0, False), (3, False)])
def test_ambiguous_flip_is_resolved_by_reading_active_version(read: int, committed: bool) -> None:
    commit = CommitProtocol(plan(0), previous_active=0)
    commit.begin()
    assert commit.step_done(0, ResetBloom(1)) == [FlipVersion(1)]
    assert commit.step_failed(1, FlipVersion(1), "timeout") == [ReadActive()]
    assert commit.step_failed(2, ReadActive(), "timeout") == [ReadActive()]
    assert commit.step_done(3, ReadActive(), read) == []
    assert commit.outcome is not None and commit.outcome.committed is committed


def test_ledger_blocks_active_pending_hold_and_quiet_then_frees() -> None:
    ledger = SlotLedger(4, active=0, now=0.0)
    assert ledger.next_slot() == 1
    assert ledger.blocker(1, 0.0, 2.0, pending=0, last_digest=None) is None
    assert "active" in (ledger.blocker(0, 0.0, 2.0, 0, None) or "")
    ledger.flipped(1, 5.0)
    assert ledger.active == 1 and ledger.deactivated_at[0] == 5.0
    assert "not yet installed" in (ledger.blocker(0, 100.0, 2.0, pending=3, last_digest=None) or "")
    assert "quiet" in (ledger.blocker(0, 6.0, 2.0, 0, None) or "")
    assert ledger.blocker(0, 7.5, 2.0, 0, None) is None
    # A digest for the slot restarts its quiet period.
    assert "quiet" in (ledger.blocker(0, 7.5, 2.0, 0, last_digest=7.0) or "")
    held = SlotLedger(4, active=0, now=0.0, hold_until=30.0)
    assert "restart hold" in (held.blocker(1, 29.0, 2.0, 0, None) or "")
    assert held.blocker(1, 31.0, 2.0, 0, None) is None


@pytest.mark.parametrize(
    ("current", "desired", "skip"),
    [
        ({0: (128, 128)}, {0: (128, 128)}, "weights unchanged"),
        ({0: (128, 128)}, {0: (130, 126)}, "dead-band"),
        ({0: (128, 128)}, {0: (140, 116)}, None),
        ({0: (255, 1)}, {0: (256, 0)}, None),  # a member leaving always rolls out
        ({0: (256, 0)}, {0: (255, 1)}, None),
        ({0: (128, 128)}, {0: (86, 85, 85)}, None),  # member list changed
        ({}, {0: (256,)}, None),
    ],
)
def test_skip_reason(
    current: dict[int, tuple[int, ...]], desired: dict[int, tuple[int, ...]], skip: str | None
) -> None:
    reason = skip_reason(current, desired, 256, 0.02)
    assert (reason is None) if skip is None else (skip in (reason or ""))
