"""Commit protocol: slot reuse rules, step order, aborts that leave the active version alone;
the epoch counter behind version_config."""

from __future__ import annotations

import pytest

from controller.core.epochs import (
    EpochCounter,
    EpochsExhaustedError,
    FlipVersion,
    FreshEpochs,
    ReadVersions,
    VersionConfig,
)
from controller.core.rollout import CommitProtocol, RolloutPlan
from controller.core.shadow import BucketKey, DipTarget, DipWrite, WriteKind
from controller.core.slots import SlotLedger, skip_reason

ZERO = VersionConfig(0, (0, 0, 0, 0))


def writes(n: int, slot: int = 1) -> tuple[DipWrite, ...]:
    return tuple(
        DipWrite(WriteKind.ADD, slot, BucketKey(0, i, 16), DipTarget("10.0.0.1", 80), None)
        for i in range(n)
    )


def plan(n: int = 3, slot: int = 1) -> RolloutPlan:
    counter = EpochCounter(VersionConfig(0, (1, 2, 3, 4)))
    fresh = counter.fresh([slot])
    return RolloutPlan(slot, 7, fresh, writes(n, slot), counter.flip(slot), {0: (1, 1)}, 10.0)


def test_steps_go_fresh_epoch_then_writes_then_flip_last() -> None:
    p = plan(3)
    assert p.fresh == FreshEpochs(VersionConfig(0, (1, 5, 3, 4)), (1,))
    assert p.flip == FlipVersion(VersionConfig(1, (1, 5, 3, 4)))
    commit = CommitProtocol(p, previous_active=0)
    assert commit.begin() == [p.fresh]
    fill = commit.step_done(10.1, p.fresh)
    assert len(fill) == 3 and all(isinstance(s, DipWrite) for s in fill)
    assert commit.step_done(10.2, fill[0]) == []
    assert commit.step_done(10.2, fill[2]) == []
    assert commit.step_done(10.3, fill[1]) == [p.flip]
    assert not commit.done
    assert commit.step_done(10.4, p.flip) == []
    assert commit.outcome is not None and commit.outcome.committed
    assert commit.outcome.entries_written == 3
    assert commit.outcome.duration == pytest.approx(0.4)


def test_failed_write_waits_for_the_others_then_aborts_without_flipping() -> None:
    p = plan(3)
    commit = CommitProtocol(p, previous_active=0)
    commit.begin()
    fill = commit.step_done(0, p.fresh)
    assert commit.step_failed(10.2, fill[0], "TABLE_FULL") == []
    assert commit.step_done(10.2, fill[1]) == []
    assert not commit.done
    assert commit.step_done(10.5, fill[2]) == []
    assert commit.outcome is not None and not commit.outcome.committed
    assert "TABLE_FULL" in commit.outcome.reason


def test_failed_fresh_epoch_aborts_at_once() -> None:
    p = plan(2)
    commit = CommitProtocol(p, previous_active=0)
    commit.begin()
    assert commit.step_failed(1.0, p.fresh, "down") == []
    assert commit.outcome is not None and not commit.outcome.committed


@pytest.mark.parametrize(("read", "committed"), [(1, True), (0, False), (3, False)])
def test_ambiguous_flip_is_resolved_by_reading_version_config(read: int, committed: bool) -> None:
    p = plan(0)
    commit = CommitProtocol(p, previous_active=0)
    commit.begin()
    assert commit.step_done(0, p.fresh) == [p.flip]
    assert commit.step_failed(1, p.flip, "timeout") == [ReadVersions()]
    assert commit.step_failed(2, ReadVersions(), "timeout") == [ReadVersions()]
    assert commit.step_done(3, ReadVersions(), p.flip.config.with_active(read)) == []
    assert commit.outcome is not None and commit.outcome.committed is committed


def test_epochs_are_issued_above_everything_seen_and_never_twice() -> None:
    counter = EpochCounter(VersionConfig(2, (9, 0, 40, 3)), last_issued=12)
    first = counter.fresh([1, 3])
    assert first.config == VersionConfig(2, (9, 41, 40, 42))
    assert counter.config == first.config  # believed at once: the safe side for idle slots
    assert counter.flip(3).config == VersionConfig(3, (9, 41, 40, 42))
    assert counter.config.active == 2  # a flip counts only once acknowledged
    counter.confirm(VersionConfig(3, (100, 41, 40, 42)))  # read back from the switch
    assert counter.fresh([0]).config.epochs[0] == 101


def test_epoch_counter_stops_at_32_bits() -> None:
    counter = EpochCounter(ZERO, last_issued=(1 << 32) - 2)
    counter.fresh([0])
    with pytest.raises(EpochsExhaustedError):
        counter.fresh([1])


@pytest.mark.parametrize(
    ("action", "params", "problem"),
    [
        ("set_versions", (0, 1, 2), "set_versions(0, 1, 2)"),
        ("NoAction", (), "NoAction()"),
        ("set_versions", (4, 1, 2, 3, 4), "out-of-range"),
        ("set_versions", (0, 1, 2, 3, 1 << 32), "out-of-range"),
    ],
)
def test_unreadable_version_config_is_refused(
    action: str, params: tuple[int, ...], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        VersionConfig.from_entry(action, params, 4)
    assert VersionConfig.from_entry("set_versions", (3, 5, 6, 7, 8), 4) == VersionConfig(
        3, (5, 6, 7, 8)
    )
    assert VersionConfig(3, (5, 6, 7, 8)).params() == ("3", "5", "6", "7", "8")


def test_ledger_blocks_active_pending_hold_and_quiet_then_frees() -> None:
    ledger = SlotLedger(4, ZERO, now=0.0)
    assert ledger.next_slot() == 1
    assert ledger.blocker(1, 0.0, 2.0, pending=0, last_digest=None) is None
    assert "active" in (ledger.blocker(0, 0.0, 2.0, 0, None) or "")
    ledger.flipped(ZERO.with_active(1), 5.0)
    assert ledger.active == 1 and ledger.deactivated_at[0] == 5.0
    assert "not yet installed" in (ledger.blocker(0, 100.0, 2.0, pending=3, last_digest=None) or "")
    assert "quiet" in (ledger.blocker(0, 6.0, 2.0, 0, None) or "")
    assert ledger.blocker(0, 7.5, 2.0, 0, None) is None
    # A digest for the slot restarts its quiet period.
    assert "quiet" in (ledger.blocker(0, 7.5, 2.0, 0, last_digest=7.0) or "")
    held = SlotLedger(4, ZERO, now=0.0, hold_until=30.0)
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
