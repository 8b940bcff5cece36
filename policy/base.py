"""Shared values of the policy package: observations in, shares out, and the policy interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]


class PolicyError(ValueError):
    """A bad policy name, parameter or input; the message shows the bad value via !r."""


@dataclass(frozen=True)
class Observations:
    """What the controller knows about every member of one pool, in config order.

    `cpu` is the latest report's utilisation 0-1, `conns` active connections, `conn_rate` new
    connections per second since the report the previous round saw (`policy.spans`; the latest
    report's own rate where that is unknown, NaN when there is none), `report_age` seconds since
    the last report (inf if never) and `live` marks members that may receive new connections
    (active and up). `cpu_mean` is the mean utilisation over the same span as `conn_rate`
    (None: not known, `cpu` stands in), so that work done and the CPU it took are read over the
    same seconds.
    """

    cpu: FloatArray
    conns: FloatArray
    conn_rate: FloatArray
    report_age: FloatArray
    live: BoolArray
    cpu_mean: FloatArray | None = None

    def __post_init__(self) -> None:
        """Check every array has the same length."""
        n = len(self.live)
        for name in ("cpu", "conns", "conn_rate", "report_age", "cpu_mean"):
            if getattr(self, name) is not None and len(getattr(self, name)) != n:
                raise PolicyError(
                    f"observation {name!r} has {len(getattr(self, name))} members, live has {n}"
                )

    @property
    def n_members(self) -> int:
        """Number of members described."""
        return len(self.live)

    @classmethod
    def fresh(
        cls,
        cpu: FloatArray,
        conns: FloatArray,
        live: BoolArray | None = None,
        conn_rate: FloatArray | None = None,
    ) -> Observations:
        """Observations with just-received reports (age 0); every member live unless `live` says."""
        n = len(cpu)
        return cls(
            cpu=np.asarray(cpu, dtype=np.float64),
            conns=np.asarray(conns, dtype=np.float64),
            conn_rate=np.full(n, np.nan)
            if conn_rate is None
            else np.asarray(conn_rate, np.float64),
            report_age=np.zeros(n),
            live=np.ones(n, dtype=np.bool_) if live is None else np.asarray(live, dtype=np.bool_),
        )


class Policy(Protocol):
    """Turns observations into new-connection shares (>= 0, summing to 1 over live members)."""

    def update(self, now: float, obs: Observations) -> FloatArray:
        """Return shares for `now`: exactly 0 for non-live members, all zero if none is live."""
        ...


def normalise_live(values: FloatArray, live: BoolArray) -> FloatArray:
    """Scale non-negative `values` to sum 1 over live members (equal split if they sum to 0)."""
    out = np.where(live, np.maximum(np.nan_to_num(values, nan=0.0, posinf=0.0), 0.0), 0.0)
    total = float(out.sum())
    n_live = int(np.count_nonzero(live))
    if n_live == 0:
        return np.zeros(len(live))
    if total <= 0.0:
        return live.astype(np.float64) / n_live
    return out / total
