"""Other balancers' published rules, as baselines for `python -m bench policy` (not for --policy).

- `GrpcWrrPolicy`: gRPC's client-side `weighted_round_robin` (gRFC A58, "gRPC Client-Side
  Weighted Round Robin LB Policy"). Each backend's weight is qps / (utilization + eps / qps *
  error_utilization_penalty) from its latest ORCA report (no errors here, so qps / utilization);
  a backend is weighted only after `blackout_period` of reports and until
  `weight_expiration_period` without one; backends without a usable weight get the mean of the
  usable ones. The C-core static stride scheduler then clamps every weight into [0.1, 10] x the
  mean (its kMinRatio / kMaxRatio). Weights are recomputed every `weight_update_period`; there
  is no smoothing beyond the report.
- `WeightedLeastConnection`: LVS's `wlc` scheduler (ip_vs_wlc.c), a per-connection dispatcher:
  each new connection goes to the server with the least overhead / weight, where overhead is
  active connections x 256 + inactive ones (every connection here is active, so the least
  active / weight), with the configured weights. It sees its own connection table at once, so
  it needs no reports; its weights are what an operator configured.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from policy.base import FloatArray, IntArray, Observations, normalise_live
from policy.params import check_range
from policy.simple import prior_weights


@dataclass(frozen=True)
class GrpcWrrParams:
    """gRFC A58's configuration, with its defaults, in seconds."""

    blackout_period: float = 10.0
    """A backend's weight counts only after this long of reports (default 10.0)."""
    weight_expiration_period: float = 180.0
    """A weight without a new report for this long is unusable (default 180.0)."""
    error_utilization_penalty: float = 1.0
    """Penalty per error-per-query (default 1.0; no errors are simulated)."""
    min_ratio: float = 0.1
    """The C-core scheduler's floor, as a multiple of the mean weight (default 0.1)."""
    max_ratio: float = 10.0
    """The C-core scheduler's ceiling, as a multiple of the mean weight (default 10.0)."""

    def __post_init__(self) -> None:
        """Validate ranges."""
        check_range(self, "blackout_period", 0.0)
        check_range(self, "weight_expiration_period", 0.0)
        check_range(self, "error_utilization_penalty", 0.0)
        check_range(self, "min_ratio", 0.0, 1.0)
        check_range(self, "max_ratio", 1.0)


class GrpcWrrPolicy:
    """gRPC weighted_round_robin (gRFC A58) as shares: qps / utilization per backend."""

    def __init__(
        self, n_members: int, initial_weights: Sequence[float], params: GrpcWrrParams
    ) -> None:
        """No weights until reports have come in for the blackout period."""
        self.params = params
        self.non_empty_since = np.full(n_members, np.nan)
        self.last_update = np.full(n_members, np.nan)
        self.weight = np.full(n_members, np.nan)

    def update(self, now: float, obs: Observations) -> FloatArray:
        """Shares from the latest reports (A58's weight, blackout, expiry and the clamps)."""
        p = self.params
        live = obs.live.astype(np.bool_)
        at = now - obs.report_age
        qps = np.nan_to_num(obs.conn_rate, nan=0.0)
        util = np.nan_to_num(obs.cpu, nan=0.0)
        fresh = np.isfinite(at) & ~(at <= self.last_update)
        usable_report = fresh & (qps > 0) & (util > 0)
        # A58: a report with qps or utilization of zero resets the blackout (non_empty_since).
        self.non_empty_since[fresh & ~usable_report] = np.nan
        start = usable_report & np.isnan(self.non_empty_since)
        self.non_empty_since[start] = at[start]
        with np.errstate(divide="ignore", invalid="ignore"):
            self.weight = np.where(usable_report, qps / util, self.weight)
        self.last_update = np.where(fresh, at, self.last_update)
        self.non_empty_since[~live] = np.nan
        expired = now - self.last_update >= p.weight_expiration_period
        blacked = ~(now - self.non_empty_since >= p.blackout_period)
        usable = live & np.isfinite(self.weight) & ~expired & ~blacked
        if not usable.any():
            return normalise_live(np.ones(len(live)), live)
        mean = float(self.weight[usable].mean())
        weights = np.where(usable, self.weight, mean)
        mean_all = float(weights[live].mean())
        weights = np.clip(weights, p.min_ratio * mean_all, p.max_ratio * mean_all)
        return normalise_live(weights, live)


class WeightedLeastConnection:
    """LVS wlc: each connection to the server with the least active connections / weight."""

    def __init__(self, weights: Sequence[float]) -> None:
        """Configured weights, one per server (> 0 to receive connections)."""
        self.weights = prior_weights(len(weights), weights)

    def dispatch(self, active: IntArray, arrivals: int, live: np.ndarray) -> IntArray:
        """How many of `arrivals` new connections each server gets, one at a time."""
        out = np.zeros(len(active), dtype=np.int64)
        eligible = np.flatnonzero(live & (self.weights > 0)).tolist()
        if not eligible or arrivals <= 0:
            return out
        # (active + 1) / weight is the overhead after taking one more: the kernel compares
        # overhead_i * weight_j > overhead_j * weight_i, i.e. the least active / weight; ties go
        # to the first server, as in its list walk.
        heap = [(int(active[i]) / float(self.weights[i]), i) for i in eligible]
        heapq.heapify(heap)
        for _ in range(arrivals):
            _, i = heapq.heappop(heap)
            out[i] += 1
            heapq.heappush(heap, ((int(active[i]) + int(out[i])) / float(self.weights[i]), i))
        return out
