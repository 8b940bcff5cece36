"""Aligned power-of-two blocks of a hash space: the building material of prefix entries."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policy.base import IntArray

Triple = tuple[int, int, int]
"""An aligned block (start, exp, owner): hash values [start, start + 2**exp) of one member."""


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


def maximal_block_arrays(owner: IntArray) -> tuple[IntArray, IntArray, IntArray]:
    """(starts, exps, owners) of the maximal uniform aligned blocks, by size then address.

    `owner` has a power-of-two length; values owned by -1 form no block.
    """
    size = len(owner)
    cut = np.flatnonzero(owner[1:] != owner[:-1]) + 1
    lo = np.concatenate(([0], cut)).astype(np.int64)
    hi = np.concatenate((cut, [size])).astype(np.int64)
    who = owner[lo].astype(np.int64)
    keep = who >= 0
    return run_pieces(lo[keep], hi[keep], who[keep], size)


def run_pieces(
    lo: IntArray, hi: IntArray, label: IntArray, size: int
) -> tuple[IntArray, IntArray, IntArray]:
    """(starts, exps, labels) of the aligned cover of runs [lo, hi), by size then address.

    The runs are disjoint in a space of `size` (a power of two) values. A maximal uniform aligned
    block lies in one run, and the greedy aligned cover of a run is made of exactly its maximal
    blocks.
    """
    lo, hi, label = lo.astype(np.int64), hi.astype(np.int64), label.astype(np.int64)
    length = hi - lo
    whole = ((length & (length - 1)) == 0) & ((lo & (length - 1)) == 0)  # one aligned block
    one = np.frexp(length[whole].astype(np.float64))[1].astype(np.int64) - 1
    split = _split_runs(lo[~whole], hi[~whole], label[~whole], size)
    starts = np.concatenate((lo[whole], split[0]))
    exps = np.concatenate((one, split[1]))
    order = np.lexsort((starts, exps))
    return starts[order], exps[order], np.concatenate((label[whole], split[2]))[order]


def _split_runs(
    lo: IntArray, hi: IntArray, label: IntArray, size: int
) -> tuple[IntArray, IntArray, IntArray]:
    """Aligned cover of runs, unordered (see `run_pieces`).

    Below `mid`, the most aligned point inside a run, there is one piece per set bit of
    mid - lo (smallest first); above it, one per set bit of hi - mid (largest first).
    """
    top = np.frexp((lo ^ hi).astype(np.float64))[1].astype(np.int64) - 1  # highest differing bit
    mid = hi >> top << top
    below, above = mid - lo, hi - mid
    exps = np.arange(size.bit_length(), dtype=np.int64)
    sizes = np.int64(1) << exps
    left = (below[:, None] & sizes) != 0
    right = (above[:, None] & sizes) != 0
    left_start = lo[:, None] + (below[:, None] & (sizes - 1))
    right_start = mid[:, None] + (above[:, None] & ~(2 * sizes - 1))
    grid_exps = np.broadcast_to(exps, left.shape)
    grid_labels = np.broadcast_to(label[:, None], left.shape)
    return (
        np.concatenate((left_start[left], right_start[right])),
        np.concatenate((grid_exps[left], grid_exps[right])),
        np.concatenate((grid_labels[left], grid_labels[right])),
    )


def maximal_blocks(owner: IntArray) -> list[Block]:
    """Maximal uniform aligned blocks of an owner array (len a power of two); skips owner -1."""
    starts, exps, owners = maximal_block_arrays(owner)
    return [
        Block(s, e, o)
        for s, e, o in zip(starts.tolist(), exps.tolist(), owners.tolist(), strict=True)
    ]
