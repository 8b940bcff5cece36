"""Integer weights from real shares: largest remainder, exact total, live members keep >= 1."""

from __future__ import annotations

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
