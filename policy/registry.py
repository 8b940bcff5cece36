"""Policy names, their classes and parameter defaults, and the factory the controller calls."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from policy.base import Policy, PolicyError
from policy.params import build_params, defaults
from policy.ratio import RatioParams, RatioPolicy
from policy.simple import (
    ConnectionsParams,
    ConnectionsPolicy,
    CpuParams,
    CpuPolicy,
    EqualParams,
    EqualPolicy,
    StaticParams,
    StaticPolicy,
)

POLICIES: dict[str, type] = {
    "static": StaticPolicy,
    "equal": EqualPolicy,
    "connections": ConnectionsPolicy,
    "cpu": CpuPolicy,
    "ratio": RatioPolicy,
}
"""Policy name -> class; every class takes (n_members, initial_weights, params)."""

PARAMS: dict[str, type] = {
    "static": StaticParams,
    "equal": EqualParams,
    "connections": ConnectionsParams,
    "cpu": CpuParams,
    "ratio": RatioParams,
}
"""Policy name -> its frozen params dataclass."""

DEFAULT_POLICY = "ratio"


def _check_name(name: str) -> None:
    if name not in POLICIES:
        raise PolicyError(f"unknown policy {name!r}; choose from {sorted(POLICIES)!r}")


def policy_params(name: str) -> dict[str, float]:
    """Parameter names of policy `name` with their defaults."""
    _check_name(name)
    return defaults(PARAMS[name])


def make_policy(
    name: str,
    n_members: int,
    initial_weights: Sequence[float],
    params: Mapping[str, Any] | None = None,
) -> Policy:
    """Build policy `name` for a pool; PolicyError for unknown names or bad parameters."""
    _check_name(name)
    if n_members < 0:
        raise PolicyError(f"n_members must be >= 0, got {n_members!r}")
    built: object = build_params(PARAMS[name], params)
    policy: Policy = POLICIES[name](n_members, initial_weights, built)
    return policy
