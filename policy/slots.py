"""Placing aligned blocks where their members already were: fewer hash values move."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from policy.base import IntArray
from policy.blocks import maximal_blocks

Free = dict[tuple[int, int], None]  # free aligned blocks (start, exp), an ordered set
CANDIDATES = 16


def place_near(
    members: IntArray, exps: IntArray, old_owner: IntArray, space_bits: int
) -> list[int]:
    """Start of each block (sizes non-increasing) in a free aligned slot its member owned.

    Candidates are the slots holding the member's `CANDIDATES` largest old pieces (maximal
    aligned blocks it owned); the free one holding most of the member's old values wins. A
    block with no free candidate takes the lowest free slot (buddy allocation), which always
    exists because the blocks fit in the space when packed in decreasing size. As blocks come
    in non-increasing size, a slot is free exactly when no placed block overlaps it.
    """
    free: Free = {(0, space_bits): None}
    used = np.zeros(1 << space_bits, dtype=np.bool_)
    pieces: dict[int, list[int]] = defaultdict(list)
    for block in sorted(maximal_blocks(old_owner), key=lambda b: -b.exp):
        pieces[block.owner].append(block.start)
    order = np.argsort(old_owner, kind="stable")  # values grouped by owner, ascending within
    bounds = np.searchsorted(old_owner[order], np.arange(int(old_owner.max(initial=0)) + 2))
    starts: list[int] = []
    for member, exp in zip(members.tolist(), exps.tolist(), strict=True):
        mine = order[bounds[member] : bounds[member + 1]] if member + 1 < len(bounds) else order[:0]
        best, best_overlap = -1, 0
        slots = dict.fromkeys(start >> exp << exp for start in pieces.get(member, []))
        for slot in list(slots)[:CANDIDATES]:
            if used[slot : slot + (1 << exp)].any():
                continue
            lo, hi = np.searchsorted(mine, (slot, slot + (1 << exp)))
            if hi - lo > best_overlap:
                best, best_overlap = slot, int(hi - lo)
        if best < 0:
            best = _lowest_free(free, exp)
        _claim(free, best, exp, space_bits)
        used[best : best + (1 << exp)] = True
        starts.append(best)
    return starts


def _lowest_free(free: Free, exp: int) -> int:
    """Start of the lowest free block of size >= 2**exp."""
    return min(start for start, e in free if e >= exp)


def _claim(free: Free, start: int, exp: int, space_bits: int) -> None:
    """Mark slot (start, exp) used, splitting the free block that holds it."""
    up = next(u for u in range(exp, space_bits + 1) if (start >> u << u, u) in free)
    block = start >> up << up
    del free[(block, up)]
    while up > exp:
        up -= 1
        half = 1 << up
        if start >= block + half:
            free[(block, up)] = None
            block += half
        else:
            free[(block + half, up)] = None
