"""Fresh bucket layout with few LPM entries: a background member plus signed-digit blocks.

The construction, over a space of 2**g buckets with integer demands summing to 2**g:

1. The member with the largest demand, `q`, is the background: one entry of prefix length 0.
   Wherever no longer prefix matches, the hash value is q's, so q's own demand costs nothing more.
2. Every other member j writes its demand in binary (popcount(d_j) digits) or, when shorter, in
   non-adjacent form (NAF, signed digits, d = sum(+2**a) - sum(2**c)). A positive digit is an
   aligned block owned by j (one entry). A negative digit is a hole carved out of j's largest
   block by a longer prefix. NAF's lower digits sum to less than 2/3 of the top digit, so every
   hole fits in j's top block.
3. A hole of size 2**c is filled, when possible, by another member's positive block of the same
   size (that block needs its entry anyway, so the hole is free); otherwise the hole is the
   background's, at the cost of one entry.
4. Top-level blocks are placed in decreasing size from address 0, which keeps every block aligned;
   holes are placed the same way from the start of their enclosing block. The background owns the
   rest: d_q minus its hole entries, which is >= 0 (checked, else members fall back to binary).

Entries = 1 + sum over j != q of (positive digits + unfilled holes)
        <= popcount(d_q) + sum over j != q of NAF weight(d_j) <= sum of popcount(d_i).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policy.base import BoolArray, IntArray
from policy.blocks import Triple
from policy.slots import place_near


def signed_digits(demand: IntArray, width: int) -> tuple[BoolArray, BoolArray]:
    """Boolean digit matrices (positive, negative) of the NAF of each demand, `width` columns."""
    x = demand.astype(np.int64).copy()
    pos = np.zeros((len(x), width), dtype=np.bool_)
    neg = np.zeros((len(x), width), dtype=np.bool_)
    for bit in range(width):
        odd = (x & 1) == 1
        digit = np.where(odd, 2 - (x & 3), 0)
        pos[:, bit] = digit == 1
        neg[:, bit] = digit == -1
        x = (x - digit) >> 1
    return pos, neg


def binary_digits(demand: IntArray, width: int) -> BoolArray:
    """Boolean matrix of the binary digits of each demand, `width` columns."""
    shifts = np.arange(width, dtype=np.int64)
    return ((demand.astype(np.int64)[:, None] >> shifts[None, :]) & 1).astype(np.bool_)


def fresh_layout(
    demand: IntArray,
    space_bits: int,
    old_owner: IntArray | None = None,
    background: int | None = None,
) -> list[Triple]:
    """Blocks (start, exp, owner) whose LPM reading gives each member exactly its demand.

    `demand` holds non-negative integers summing to 2**space_bits (or all zero). The first triple
    is the background's whole-space block when one is needed; longer blocks override it. With
    `old_owner` (owner of each value before; default None) each top-level block goes to the free
    aligned slot where its member already owns most, so fewer values move. `background`
    (default None: the largest member) names the member owning the whole-space entry, e.g. the
    previous layout's, which keeps its land; any live member keeps the popcount bound.
    """
    live = np.flatnonzero(demand > 0)
    if len(live) == 0:
        return []
    if len(live) == 1:
        return [(0, space_bits, int(live[0]))]
    bg = int(live[np.argmax(demand[live])])
    if background is not None and 0 <= background < len(demand) and demand[background] > 0:
        bg = background
    others = live[live != bg]
    width = space_bits + 2
    d = demand[others].astype(np.int64)
    plain = binary_digits(d, width)
    pos, neg = signed_digits(d, width)
    use_naf = pos.sum(axis=1) + neg.sum(axis=1) < plain.sum(axis=1)
    while True:
        positive = np.where(use_naf[:, None], pos, plain)
        holes = np.where(use_naf[:, None], neg, False)
        fill = _match_holes(positive, holes)
        unfilled = holes & (fill < 0)
        unfilled_size = int((unfilled * (1 << np.arange(width, dtype=np.int64))).sum())
        if unfilled_size <= int(demand[bg]):
            break
        # Too many holes for the background to fill: the member with most hole space goes binary.
        hole_size = (unfilled * (1 << np.arange(width, dtype=np.int64))).sum(axis=1)
        use_naf[int(np.argmax(hole_size))] = False
    return _place(_Digits.of(bg, others.tolist(), positive, holes, fill), space_bits, old_owner)


def _match_holes(positive: BoolArray, holes: BoolArray) -> IntArray:
    """For each hole (row, exp): the row of a same-size positive block filling it, else -1."""
    fill = np.full(positive.shape, -1, dtype=np.int64)
    for exp in np.flatnonzero(holes.any(axis=0)).tolist():
        hole_rows = np.flatnonzero(holes[:, exp])
        block_rows = np.flatnonzero(positive[:, exp])
        k = min(len(hole_rows), len(block_rows))
        # A row never has a hole and a block at the same digit, so the pair is two members.
        fill[hole_rows[:k], exp] = block_rows[:k]
    return fill


@dataclass(frozen=True)
class _Digits:
    """The chosen digits of the non-background members (rows) and how holes are filled."""

    bg: int
    owner: list[int]
    positive: BoolArray
    holes: BoolArray
    fill: IntArray
    top: list[int]
    """Exponent of each row's largest positive digit."""
    with_holes: list[bool]
    """Whether each row has holes."""
    hole_exps: dict[int, list[int]]
    """Exponents of each holed row's holes, largest first."""

    @classmethod
    def of(
        cls, bg: int, owner: list[int], positive: BoolArray, holes: BoolArray, fill: IntArray
    ) -> _Digits:
        """Bundle the digits and derive `top` and `with_holes`."""
        width = positive.shape[1]
        top = (width - 1 - np.argmax(positive[:, ::-1], axis=1)).tolist()
        with_holes: list[bool] = np.asarray(holes.any(axis=1), dtype=np.bool_).tolist()
        rows, exps = np.nonzero(holes[:, ::-1])
        hole_exps: dict[int, list[int]] = {}
        for row, exp in zip(rows.tolist(), (holes.shape[1] - 1 - exps).tolist(), strict=True):
            hole_exps.setdefault(row, []).append(exp)
        return cls(bg, owner, positive, holes, fill, top, with_holes, hole_exps)


def _place(digits: _Digits, space_bits: int, old_owner: IntArray | None) -> list[Triple]:
    """Lay out the chosen digits as address blocks; see the module docstring."""
    positive, fill = digits.positive, digits.fill
    filler = np.zeros(positive.shape, dtype=np.bool_)
    rows_h, exps_h = np.nonzero(fill >= 0)
    filler[fill[rows_h, exps_h], exps_h] = True
    rows, exps = np.nonzero(positive & ~filler)
    order = np.lexsort((rows, -exps))
    rows, exps = rows[order], exps[order]
    starts = np.concatenate(([0], np.cumsum(np.int64(1) << exps)[:-1])).astype(np.int64)
    occupied = int(starts[-1] + (1 << int(exps[-1]))) if len(exps) else 0
    if old_owner is not None:
        members = np.asarray(digits.owner, dtype=np.int64)[rows]
        starts = np.asarray(place_near(members, exps, old_owner, space_bits), dtype=np.int64)
    out: list[Triple] = [] if occupied == 1 << space_bits else [(0, space_bits, digits.bg)]
    top, with_holes = digits.top, digits.with_holes
    for start, row, exp in zip(starts.tolist(), rows.tolist(), exps.tolist(), strict=True):
        out.append((start, exp, digits.owner[row]))
        if with_holes[row] and exp == top[row]:
            _carve(out, digits, row, start)
    return out


def _carve(out: list[Triple], digits: _Digits, row: int, start: int) -> None:
    """Place row's holes from the start of its top block, filled by matched blocks or the bg."""
    for exp in digits.hole_exps[row]:
        filled_by = int(digits.fill[row, exp])
        if filled_by < 0:
            out.append((start, exp, digits.bg))
        else:
            out.append((start, exp, digits.owner[filled_by]))
            if digits.with_holes[filled_by] and exp == digits.top[filled_by]:
                _carve(out, digits, filled_by, start)
        start += 1 << exp
