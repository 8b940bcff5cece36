"""New-connection rates over the span between the reports a policy sees (pure).

Agents report every report interval (0.5 s by default) and a policy runs once per rollout (1 s
or more), so it sees every second report or fewer. The ratio policy's capacity estimate takes
the connections a member finished between the two reports it saw as arrivals minus the growth of
its active connections over that span. The latest report's rate covers only its own period: when
a member's share moves (a capacity drop, a backlog draining, a member ramping up), the rate of
the last half-second differs from the span's by the move, and the estimate with it (20 % of
capacity after the bench's capacity step; a member losing share looked weaker, one gaining share
stronger). So the load book counts arrivals per agent run (`DipLoad.arrived`) and the simulation
does the same; `ArrivalSpans` turns the count into the mean rate between the reports of two
consecutive looks. Where no span is known (the first look, a new agent run, an agent without
rates) the report's own rate stands.
"""

from __future__ import annotations

import numpy as np

from policy.base import FloatArray


class ArrivalSpans:
    """Per member: the report time and arrival count of the previous look."""

    def __init__(self, n_members: int) -> None:
        """Start with no previous look."""
        self.at = np.full(n_members, np.nan)
        self.count = np.full(n_members, np.nan)
        self.origin = np.full(n_members, np.nan)

    def rates(
        self, at: FloatArray, count: FloatArray, origin: FloatArray, rate: FloatArray
    ) -> FloatArray:
        """Mean new-connection rate per member since its previous look.

        `at` is the time of each member's latest report (NaN: none), `count` its arrival count,
        `origin` when that count started (NaN with `count`: no count) and `rate` the report's
        own rate. A member whose report is the one seen last time gets its report's rate (a
        policy learns nothing from a report it saw already).
        """
        with np.errstate(invalid="ignore"):
            span = at - self.at
            same_run = origin == self.origin
            known = same_run & (span > 1e-9) & (count >= self.count)
            means = np.where(known, (count - self.count) / np.where(known, span, 1.0), rate)
        seen = np.isfinite(at)
        self.at = np.where(seen, at, np.nan)
        self.count = np.where(seen, count, np.nan)
        self.origin = np.where(seen, origin, np.nan)
        return np.asarray(means, dtype=np.float64)
