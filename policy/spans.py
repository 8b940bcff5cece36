"""Means over the span between the reports a policy sees (pure): arrival rate and CPU.

Agents report every report interval (0.5 s by default) and a policy runs once per rollout (1 s
or more), so it sees every second report or fewer. The ratio policy's capacity estimate takes
the connections a member finished between the two reports it saw as arrivals minus the growth of
its active connections over that span, and divides them by the CPU that work took. A latest
report covers only its own period: when a member's share or load moves (a capacity drop, a
backlog draining, a member ramping up), the last half-second's rate and CPU differ from the
span's by the move, and the estimate with them (arrivals alone misread a member by 20 % of
capacity after the bench's capacity step; a draining member's CPU falling within the span made
it look stronger by 5-8 %). So the load book keeps per agent run the arrivals and the busy
CPU-seconds its reports add up to (`DipLoad.arrived`, `DipLoad.busy`), the simulation does the
same, and `ReportSpans` turns those counts into means between the reports of two consecutive
looks. Where no span is known (the first look, a new agent run, an agent without rates) the
report's own figures stand.
"""

from __future__ import annotations

import numpy as np

from policy.base import FloatArray


class ReportSpans:
    """Per member: the report time and counts of the previous look."""

    def __init__(self, n_members: int, n_counts: int) -> None:
        """Start with no previous look, for `n_counts` counts per member."""
        self.at = np.full(n_members, np.nan)
        self.counts = np.full((n_members, n_counts), np.nan)
        self.origin = np.full(n_members, np.nan)

    def means(
        self, at: FloatArray, origin: FloatArray, counts: FloatArray, latest: FloatArray
    ) -> FloatArray:
        """Mean per second of each count per member since its previous look, shape of `counts`.

        `at` is the time of each member's latest report (NaN: none), `origin` when its counts
        started (NaN: no counts), `counts` (members x counts) what they add up to and `latest`
        (same shape) the latest report's own figures. A member whose report is the one seen
        last time, or whose counts restarted, gets its report's figures (a policy learns nothing
        from a report it saw already), and so does a count that is unknown or went back.
        """
        with np.errstate(invalid="ignore"):
            span = at - self.at
            same_run = origin == self.origin
            spanned = same_run & (span > 1e-9)
            known = spanned[:, None] & (counts >= self.counts)
            per_second = (counts - self.counts) / np.where(spanned, span, 1.0)[:, None]
            means = np.where(known, per_second, latest)
        seen = np.isfinite(at)
        self.at = np.where(seen, at, np.nan)
        self.counts = np.where(seen[:, None], counts, np.nan)
        self.origin = np.where(seen, origin, np.nan)
        return np.asarray(means, dtype=np.float64)
