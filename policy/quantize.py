"""Integer weights from real shares (largest remainder, exact total, live members keep >= 1),
and the best steady balance any integer weights can reach."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from policy.base import IntArray, PolicyError


def quantize(shares: ArrayLike, total: int, current: ArrayLike | None = None) -> IntArray:
    """Integer weights summing exactly to `total`, proportional to `shares`.

    Largest-remainder (Hamilton) rounding; every member with a positive share gets at least 1 (it
    is live), members with share 0 get 0; when remainders tie, the unit goes to the member whose
    `current` weight (default None: no preference) is higher than its floor, so an unchanged input
    reproduces the current weights and small changes move few units. Raises PolicyError if there
    are more live members than units, or shares are negative or not finite.
    """
    s = np.asarray(shares, dtype=np.float64)
    if s.ndim != 1:
        raise PolicyError(f"shares must be one-dimensional, got shape {s.shape!r}")
    if total < 0:
        raise PolicyError(f"total must be >= 0, got {total!r}")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise PolicyError(f"shares must be finite and >= 0, got {s.tolist()!r}")
    live = s > 0
    n_live = int(np.count_nonzero(live))
    out = np.zeros(len(s), dtype=np.int64)
    if n_live == 0 or total == 0:
        return out
    if n_live > total:
        raise PolicyError(f"{n_live!r} live members cannot each get a unit of {total!r}")
    cur = (
        np.zeros(len(s), dtype=np.int64)
        if current is None
        else np.asarray(current, dtype=np.int64).reshape(len(s))
    )
    exact = s / s.sum() * total
    base = np.floor(exact).astype(np.int64)
    base[live] = np.maximum(base[live], 1)
    remainder = exact - np.floor(exact)
    left = total - int(base.sum())
    idx = np.arange(len(s))
    if left > 0:
        # Most deserving first: largest remainder, then current weight above the floor, then index.
        prefer = (cur > base).astype(np.int64)
        order = np.lexsort((idx, -prefer, -remainder, ~live))
        out[:] = base
        out[order[:left]] += 1
        return out
    out[:] = base
    while left < 0:
        # Forced minimums overshot: take back from members above 1 with the smallest remainder,
        # preferring those whose current weight is below their floor.
        can = out > 1
        prefer = (cur < out).astype(np.int64)
        order = np.lexsort((idx, -prefer, remainder, ~can))
        take = min(-left, int(np.count_nonzero(can)))
        out[order[:take]] -= 1
        left += take
    return out


def rounding_floor(shares: ArrayLike, total: int) -> float:
    """The lowest max/mean of weight / exact weight that integer weights summing to `total` reach.

    With each member's load proportional to its weight and its capacity to its share, this is
    the steady max/mean utilisation the best integer weights give without any noise: what no
    fixed weights summing to `total` can beat (weights that move average between roundings,
    at the cost of a rollout each time). Members with share 0 are left out, live ones get at
    least 1; PolicyError if there are more live members than units. Exact: for each candidate
    maximum M (some k / exact weight), the weights floor(M x exact) minus the units over
    `total`, taken from the largest members (a unit costs the mean 1 / exact there), have the
    highest mean any weights under M can have. The candidates run up to a bound on the best
    maximum: the best max/mean is at most that of largest-remainder weights, and no weights
    have a higher mean than those giving every spare unit to the smallest member. (Forced
    minimums can put the best maximum well above ceil(exact) / exact: with exact weights
    5.15, 1.53 and 0.32 over 7 units, the 0.32 member's 1 unit lets the 1.53 member take 5.)
    """
    s = np.asarray(shares, dtype=np.float64)
    s = s[s > 0]
    if len(s) == 0 or len(s) > total:
        raise PolicyError(f"{len(s)!r} live members cannot share {total!r} units")
    exact = s / s.sum() * total
    largest_first = np.argsort(-exact, kind="stable")
    start = quantize(s, total) / exact
    highest_mean = (float((1 / exact).sum()) + (total - len(s)) / float(exact.min())) / len(s)
    bound = float(start.max() / start.mean()) * highest_mean
    best = math.inf
    candidates = np.unique(
        np.concatenate([np.arange(1, math.floor(bound * e) + 2) / e for e in exact]).round(12)
    )
    for level in candidates:
        weights = np.floor(level * exact + 1e-9)
        if weights.min() < 1 or weights.sum() < total:
            continue
        over = int(weights.sum()) - total
        for i in largest_first:
            take = min(over, int(weights[i]) - 1)
            weights[i] -= take
            over -= take
            if over == 0:
                break
        ratio = weights / exact
        best = min(best, float(ratio.max() / ratio.mean()))
    return best
