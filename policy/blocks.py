"""Aligned power-of-two blocks of a hash space: the building material of prefix entries."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policy.base import IntArray


@dataclass(frozen=True)
class Block:
    """An aligned block [start, start + 2**exp) of a 2**space_bits space owned by `owner`."""

    start: int
    exp: int
    owner: int

    @property
    def size(self) -> int:
        """Number of hash values in the block."""
        return 1 << self.exp


def aligned_cover(lo: int, hi: int) -> list[tuple[int, int]]:
    """Fewest aligned blocks (start, exp) exactly covering [lo, hi), in address order."""
    out: list[tuple[int, int]] = []
    while lo < hi:
        exp = (lo & -lo).bit_length() - 1 if lo else (hi - lo).bit_length() - 1
        while lo + (1 << exp) > hi:
            exp -= 1
        out.append((lo, exp))
        lo += 1 << exp
    return out


def binary_pieces(start: int, amount: int) -> list[tuple[int, int]]:
    """Aligned blocks (start, exp) for the set bits of `amount`, largest first from `start`.

    `start` must be aligned to the largest piece, as it is inside a block bigger than `amount`.
    """
    out: list[tuple[int, int]] = []
    for exp in range(amount.bit_length() - 1, -1, -1):
        if amount >> exp & 1:
            out.append((start, exp))
            start += 1 << exp
    return out


def maximal_blocks(owner: IntArray) -> list[Block]:
    """Maximal uniform aligned blocks of an owner array (len a power of two); skips owner -1."""
    size = len(owner)
    bits = size.bit_length() - 1
    levels: list[IntArray] = [owner.astype(np.int64)]
    for _ in range(bits):
        child = levels[-1].reshape(-1, 2)
        levels.append(np.where(child[:, 0] == child[:, 1], child[:, 0], -2))
    out: list[Block] = []
    for exp, level in enumerate(levels):
        if exp < bits:
            parent = np.repeat(levels[exp + 1], 2)
            mask = (level >= 0) & (parent < 0)
        else:
            mask = level >= 0
        for pos in np.flatnonzero(mask).tolist():
            out.append(Block(pos << exp, exp, int(level[pos])))
    return out


def merge_buddies(blocks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge pairs of buddy blocks (start, exp) of one owner into their parent, repeatedly."""
    live = set(blocks)
    changed = True
    while changed:
        changed = False
        for start, exp in sorted(live, key=lambda b: b[1]):
            if (start, exp) not in live:
                continue
            buddy = (start ^ (1 << exp), exp)
            if buddy in live:
                live.discard((start, exp))
                live.discard(buddy)
                live.add((min(start, buddy[0]), exp + 1))
                changed = True
    return sorted(live)
