"""The steps of a rollout or a reclaim and the switch operations that carry them (pure).

`CommitProtocol` and `Reclaim` think in steps; `step_op` turns a step into the operation its
owner emits (the step rides along as the operation's tag), and `op_step` reads the step back from
the operation an outcome carries.
"""

from __future__ import annotations

from controller.core.epochs import FlipVersion, FreshEpochs, ReadVersions, VersionStep
from controller.core.ops import (
    DefaultActionRead,
    DefaultActionSet,
    Op,
    Owner,
    SwitchOp,
    TableDelete,
    TableInsert,
    TableModify,
)
from controller.core.shadow import DipWrite, WriteKind
from p4src.contract import DIP_TABLE, REWRITE_DST, SET_VERSIONS, VERSION_CONFIG

Step = VersionStep | DipWrite


def step_op(owner: Owner, step: Step) -> SwitchOp:
    """The switch operation that carries out `step`."""
    if isinstance(step, FreshEpochs | FlipVersion):
        return DefaultActionSet(owner, VERSION_CONFIG, SET_VERSIONS, step.config.params(), step)
    if isinstance(step, ReadVersions):
        return DefaultActionRead(owner, VERSION_CONFIG, step)
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
    if isinstance(op, DefaultActionSet | DefaultActionRead) and isinstance(
        op.tag, FreshEpochs | FlipVersion | ReadVersions
    ):
        return op.tag
    if isinstance(op, TableInsert | TableModify | TableDelete) and isinstance(op.tag, DipWrite):
        return op.tag
    return None
