"""The demo's scenario as values: server capacities, offered load and phase timing (pure).

Capacities are CPU shares of one core (10/20/30/40 % for four servers). The offered load is
chosen so that equal weights overload the weakest server (each server gets 1/n of the load,
which is more than the weakest can serve) while the whole pool runs at about half its
capacity, so a load-aware policy can even out utilisation.
"""

from __future__ import annotations

from dataclasses import dataclass

REQUEST_OVERHEAD_MS = 0.5
"""CPU a server spends per connection beyond ``work_ms`` (accept, parse, reply), measured."""
LOAD_FACTOR = 0.5
"""Offered load as a fraction of the pool's total capacity."""
EQUAL_OVERLOAD = 1.2
"""Under equal weights the weakest server gets at least this multiple of its capacity."""


class PlanError(ValueError):
    """Demo options that make no sense together."""


def default_capacities(n_servers: int) -> tuple[float, ...]:
    """Unequal CPU shares: 0.1, 0.2, 0.3, 0.4 for four servers, spread 0.1..0.4 otherwise."""
    if not 2 <= n_servers <= 16:
        raise PlanError(f"--servers must be 2..16, got {n_servers!r}")
    step = 0.3 / (n_servers - 1)
    return tuple(round(0.1 + i * step, 3) for i in range(n_servers))


def offered_rate(capacities: tuple[float, ...], work_ms: float, requests: int = 1) -> float:
    """New connections per second for the demo's load (see the module docstring)."""
    per_conn = requests * (work_ms + REQUEST_OVERHEAD_MS) / 1000.0
    busy = max(LOAD_FACTOR * sum(capacities), EQUAL_OVERLOAD * len(capacities) * min(capacities))
    return round(busy / per_conn, 1)


@dataclass(frozen=True)
class DemoPlan:
    """Everything the demo's run needs to know."""

    policy: str
    capacities: tuple[float, ...]
    work_ms: float
    requests: int
    lifetime: float
    rate: float
    duration: float
    equal_duration: float
    settle_before: float
    settle_after: float
    progress_every: float = 5.0
    policy_params: tuple[tuple[str, float], ...] = ()
    """``[policy_params]`` of the controller in the policy phase."""


def make_demo_plan(
    policy: str = "ratio",
    n_servers: int = 4,
    duration: float = 150.0,
    *,
    work_ms: float = 5.0,
    rate: float | None = None,
    requests: int = 4,
    lifetime: float = 2.0,
) -> DemoPlan:
    """The plan for ``n_servers`` servers over ``duration`` seconds (a third of it equal);
    each connection makes ``requests`` requests spread over ``lifetime`` seconds."""
    if duration < 30:
        raise PlanError(f"--duration must be at least 30 s, got {duration!r}")
    if work_ms <= 0:
        raise PlanError(f"work per request must be > 0 ms, got {work_ms!r}")
    if rate is not None and rate <= 0:
        raise PlanError(f"--rate must be > 0, got {rate!r}")
    if requests < 1 or lifetime < 0:
        raise PlanError(f"need requests >= 1 and lifetime >= 0, got {requests!r}, {lifetime!r}")
    capacities = default_capacities(n_servers)
    equal = round(duration / 3, 1)
    return DemoPlan(
        policy=policy,
        capacities=capacities,
        work_ms=work_ms,
        requests=requests,
        lifetime=lifetime,
        rate=rate if rate is not None else offered_rate(capacities, work_ms, requests),
        duration=duration,
        equal_duration=equal,
        settle_before=min(10.0, equal / 3),
        settle_after=min(40.0, (duration - equal) / 2),
    )
