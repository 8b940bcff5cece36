"""HPA-like autoscaling of one pool: how many members should be active, and which ones.

desired = ceil(sum of the active members' utilisation / target), kept as is while the mean
utilisation is within `tolerance` of the target, bounded to [min_active, max_active]. Scaling up
is immediate (at most `max_step_up` members per decision, then `cooldown_up` seconds); scaling
down follows the highest recommendation of the last `stabilisation_window` seconds (so a short
dip never removes capacity), needs a full window of history and `cooldown_down` seconds since the
last scale-down, and drains one member per decision. Members are drained (no new connections,
existing ones finish) before the controller removes them; a draining member is the first one
reactivated when load comes back (it is still warm), then standby members in config order. A
member below `min_active` is replaced at once. Pure: `now` is passed in.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from policy.base import FloatArray, PolicyError
from policy.params import check_range


class MemberState(enum.StrEnum):
    """Lifecycle of a pool member."""

    ACTIVE = "active"
    STANDBY = "standby"
    DRAINING = "draining"
    DOWN = "down"


@dataclass(frozen=True)
class AutoscaleParams:
    """Autoscaling bounds and pacing (every field has a default)."""

    target: float = 0.6
    """Utilisation each active member should run at (default 0.6)."""
    tolerance: float = 0.1
    """No change while mean utilisation / target is within 1 +- tolerance (default 0.1)."""
    min_active: int = 1
    """Never fewer active members (default 1)."""
    max_active: int = 64
    """Never more active members (default 64)."""
    max_step_up: int = 4
    """Most members activated by one decision (default 4)."""
    stabilisation_window: float = 300.0
    """Seconds of recommendations whose maximum decides a scale-down (default 300.0)."""
    cooldown_up: float = 10.0
    """Seconds after a scale-up before the next one (default 10.0)."""
    cooldown_down: float = 60.0
    """Seconds after a scale-down before the next one (default 60.0)."""

    def __post_init__(self) -> None:
        """Validate ranges."""
        check_range(self, "target", 1e-6, 1.0)
        check_range(self, "tolerance", 0.0, 1.0)
        check_range(self, "min_active", 0)
        check_range(self, "max_active", max(self.min_active, 1))
        check_range(self, "max_step_up", 1)
        check_range(self, "stabilisation_window", 0.0)
        check_range(self, "cooldown_up", 0.0)
        check_range(self, "cooldown_down", 0.0)
        for name in ("min_active", "max_active", "max_step_up"):
            if not isinstance(getattr(self, name), int):
                raise PolicyError(
                    f"AutoscaleParams.{name} must be an int, got {getattr(self, name)!r}"
                )


@dataclass(frozen=True)
class ScaleDecision:
    """Desired active count, and the members to activate or to drain now (indices)."""

    desired: int
    activate: tuple[int, ...] = ()
    drain: tuple[int, ...] = ()


class Autoscaler:
    """Keeps the recommendation history and cooldown clocks of one pool."""

    def __init__(self, params: AutoscaleParams | None = None) -> None:
        """Start with no history (default params: AutoscaleParams())."""
        self.params = params or AutoscaleParams()
        self.history: deque[tuple[float, int]] = deque()
        self.started: float | None = None
        self.last_up = -math.inf
        self.last_down = -math.inf

    def recommend(self, utilisation: FloatArray, active: Sequence[int]) -> int:
        """Raw desired count from the active members' utilisation (before pacing)."""
        p = self.params
        n = len(active)
        load = (
            float(np.nansum(np.asarray(utilisation, dtype=np.float64)[list(active)])) if n else 0.0
        )
        if n and abs(load / (n * p.target) - 1.0) <= p.tolerance:
            raw = n
        else:
            raw = math.ceil(load / p.target - 1e-9)
        return min(max(raw, p.min_active, 1 if n else p.min_active), p.max_active)

    def decide(
        self, now: float, utilisation: FloatArray, states: Sequence[MemberState]
    ) -> ScaleDecision:
        """Decide this round's activations and drains."""
        p = self.params
        if len(utilisation) != len(states):
            raise PolicyError(f"{len(utilisation)!r} utilisations for {len(states)!r} members")
        if self.started is None:
            self.started = now
        active = [i for i, s in enumerate(states) if s == MemberState.ACTIVE]
        n = len(active)
        raw = self.recommend(utilisation, active)
        self.history.append((now, raw))
        while self.history and self.history[0][0] < now - p.stabilisation_window:
            self.history.popleft()
        if n < p.min_active or (raw > n and now - self.last_up >= p.cooldown_up):
            step = max(p.min_active - n, min(raw - n, p.max_step_up))
            chosen = _to_activate(states, step)
            if chosen:
                self.last_up = now
            return ScaleDecision(n + step, activate=chosen)
        if n > p.max_active:
            return ScaleDecision(
                p.max_active, drain=_to_drain(utilisation, active, n - p.max_active)
            )
        stable = max(r for _, r in self.history)
        settled = now - self.started >= p.stabilisation_window
        if stable < n and settled and now - self.last_down >= p.cooldown_down:
            self.last_down = now
            return ScaleDecision(stable, drain=_to_drain(utilisation, active, 1))
        return ScaleDecision(n)


def _to_activate(states: Sequence[MemberState], count: int) -> tuple[int, ...]:
    """Up to `count` members to activate: draining ones first (still warm), then standby."""
    draining = [i for i, s in enumerate(states) if s == MemberState.DRAINING]
    standby = [i for i, s in enumerate(states) if s == MemberState.STANDBY]
    return tuple((draining + standby)[: max(count, 0)])


def _to_drain(utilisation: FloatArray, active: list[int], count: int) -> tuple[int, ...]:
    """The `count` least-utilised active members (ties: the last in config order)."""
    u = np.nan_to_num(np.asarray(utilisation, dtype=np.float64)[active], nan=0.0)
    order = sorted(range(len(active)), key=lambda k: (u[k], -active[k]))
    return tuple(sorted(active[k] for k in order[:count]))
