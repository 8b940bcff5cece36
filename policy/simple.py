"""Baseline policies: static, equal, least connections, and naive inverse CPU."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from policy.base import FloatArray, Observations, PolicyError, normalise_live
from policy.params import check_range


def prior_weights(n_members: int, initial_weights: Sequence[float]) -> FloatArray:
    """Configured weights as a validated float array (all 1 when empty)."""
    w = np.ones(n_members) if len(initial_weights) == 0 else np.asarray(initial_weights, np.float64)
    if w.shape != (n_members,) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise PolicyError(
            f"initial_weights must be {n_members} finite values >= 0, got {initial_weights!r}"
        )
    return w


@dataclass(frozen=True)
class StaticParams:
    """The static policy has no parameters."""


class StaticPolicy:
    """Shares proportional to the configured initial weights (live members only)."""

    def __init__(
        self, n_members: int, initial_weights: Sequence[float], params: StaticParams
    ) -> None:
        """Remember the configured weights."""
        self.params = params
        self.prior = prior_weights(n_members, initial_weights)

    def update(self, now: float, obs: Observations) -> FloatArray:
        """Configured weights normalised over live members (equal if they are all zero)."""
        return normalise_live(self.prior, obs.live)


@dataclass(frozen=True)
class EqualParams:
    """The equal policy has no parameters."""


class EqualPolicy:
    """The same share for every live member."""

    def __init__(
        self, n_members: int, initial_weights: Sequence[float], params: EqualParams
    ) -> None:
        """Keep the parameters (the live mask says who shares)."""
        self.params = params

    def update(self, now: float, obs: Observations) -> FloatArray:
        """1 / live count for each live member."""
        return normalise_live(np.ones(obs.n_members), obs.live)


@dataclass(frozen=True)
class ConnectionsParams:
    """Least-connections shares: share ∝ 1 / (conns + offset)."""

    offset: float = 1.0
    """Added to every member's connection count (default 1.0) so an idle member is not infinite."""

    def __post_init__(self) -> None:
        """Validate ranges."""
        check_range(self, "offset", 1e-9)


class ConnectionsPolicy:
    """Send more new connections to members with fewer active ones (memoryless)."""

    def __init__(
        self, n_members: int, initial_weights: Sequence[float], params: ConnectionsParams
    ) -> None:
        """Keep the parameters."""
        self.params = params

    def update(self, now: float, obs: Observations) -> FloatArray:
        """Shares ∝ 1 / (conns + offset) over live members."""
        conns = np.nan_to_num(obs.conns, nan=0.0).clip(0.0)
        return normalise_live(1.0 / (conns + self.params.offset), obs.live)


@dataclass(frozen=True)
class CpuParams:
    """Naive inverse-load shares: share ∝ 1 / max(cpu, cpu_floor)."""

    cpu_floor: float = 0.05
    """Smallest CPU used in the division (default 0.05), so an idle member is not infinite."""

    def __post_init__(self) -> None:
        """Validate ranges."""
        check_range(self, "cpu_floor", 1e-6, 1.0)


class CpuPolicy:
    """Inverse CPU, no memory: the textbook baseline that oscillates under feedback delay."""

    def __init__(self, n_members: int, initial_weights: Sequence[float], params: CpuParams) -> None:
        """Keep the parameters."""
        self.params = params

    def update(self, now: float, obs: Observations) -> FloatArray:
        """Shares ∝ 1 / max(cpu, floor) over live members (unknown cpu counts as the floor)."""
        cpu = np.nan_to_num(obs.cpu, nan=0.0)
        return normalise_live(1.0 / np.maximum(cpu, self.params.cpu_floor), obs.live)
