"""The steps of a rollout or a reclaim and the switch operations that carry them (pure).

`CommitProtocol` and `Reclaim` think in steps; `step_op` turns a step into the operation its
owner emits, and `op_step` reads the step back from the operation an outcome carries.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.core.ops import (
    Op,
    Owner,
    RegisterRead,
    RegisterReset,
    RegisterWrite,
    SwitchOp,
    TableDelete,
    TableInsert,
    TableModify,
)
from controller.core.shadow import DipWrite, WriteKind
from p4src.contract import ACTIVE_VERSION, DIP_TABLE, REWRITE_DST


@dataclass(frozen=True)
class ResetBloom:
    """Clear a slot's Bloom filter."""

    slot: int


@dataclass(frozen=True)
class FlipVersion:
    """Make the slot active."""

    slot: int


@dataclass(frozen=True)
class ReadActive:
    """Read the active slot back after an ambiguous flip."""


Step = ResetBloom | DipWrite | FlipVersion | ReadActive


def step_op(owner: Owner, step: Step) -> SwitchOp:
    """The switch operation that carries out `step`."""
    if isinstance(step, ResetBloom):
        return RegisterReset(owner, step.slot)
    if isinstance(step, FlipVersion):
        return RegisterWrite(owner, ACTIVE_VERSION, 0, step.slot)
    if isinstance(step, ReadActive):
        return RegisterRead(owner, ACTIVE_VERSION, 0)
    if step.kind is WriteKind.ADD:
        return TableInsert(
            owner, DIP_TABLE, step.match_keys(), REWRITE_DST, step.action_params(), step
        )
    assert step.handle is not None
    if step.kind is WriteKind.MODIFY:
        return TableModify(owner, DIP_TABLE, step.handle, REWRITE_DST, step.action_params(), step)
    return TableDelete(owner, DIP_TABLE, step.handle, step)


def op_step(op: Op) -> Step | None:
    """The step an operation carried out (None for operations that carry no step)."""
    if isinstance(op, RegisterReset):
        return ResetBloom(op.slot)
    if isinstance(op, RegisterWrite):
        return FlipVersion(op.value)
    if isinstance(op, RegisterRead):
        return ReadActive()
    if isinstance(op, TableInsert | TableModify | TableDelete) and isinstance(op.tag, DipWrite):
        return op.tag
    return None
