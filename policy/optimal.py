"""Fewest LPM entries that split a 2**g hash space exactly by integer demands.

The model. A layout of prefix entries is a tree under containment: each entry is a block of
2**e hash values, owned by one member, inside the nearest longer-prefix-free block that holds
it. An entry of size 2**e adds 2**e to its owner and takes 2**e from the owner of the entry
around it (or from nobody, for a top-level entry). So every layout writes each demand as a sum
of signed powers of two, d_i = sum_e digit[i, e] * 2**e, with exactly one +1 digit per entry
and one -1 digit per nested entry, at the same e. Counting digits: entries = (D + 1) / 2, where
D is the number of non-zero digits over all members, and at every level e < g the +1 and -1
digits cancel (sum_i digit[i, e] = 0); at level g one +1 is the whole-space entry.

Two reductions make the minimum easy to state:

- No member needs two digits at one level (digit +-2): two +1 blocks of one member at level e
  can be traded for one at e + 1, with the partner of one of them switching sign; that never
  costs more (see `tests/unit/test_policy_optimal.py` for the check against the unreduced
  search). Then a member's remaining value r[i, e] = (d_i - lower digits) / 2**e is either
  floor(d_i / 2**e) ("low") or that plus one ("high"), and the level sums fix how many members
  are high: H[e] = (sum_i d_i mod 2**e) / 2**e, the carry into bit e of sum_i d_i.
- A member pays a digit at level e exactly when its state disagrees with bit e of its demand
  (low on a 1, high on a 0). A member whose state agrees keeps it at e + 1 (a high member on a
  1-bit stays high, a low one on a 0-bit stays low); a member that pays may take either state
  at e + 1.

So the minimum is a choice, level by level, of which paying ("free") members are high next,
exactly as many as the carry H[e + 1] needs. The choice here: rank the free members by their
remaining bits e+1, e+2, ... read from the lowest as a binary fraction, highest first, and make
the top ones high. Being high is worth most to a member whose next bits are 1s (it then agrees
with them for free, and longest when its run of 1s is longest) and least to one whose next bits
are 0s. Ties are members with the same remaining bits, whose futures are interchangeable. This
rule reproduces the minimum of the exact searches in the tests: an exhaustive search over every
LPM layout of small spaces, and a search over every sequence of high sets for larger ones.

Building the entries from the digits: a member's +1 digits are its blocks and its -1 digits are
holes; all of a member's holes fit in its largest block (its digits stay valid, so the holes sum
to less than that block), and each hole is filled by another member's block of the same size.
Filling every level's holes with that level's blocks in any order gives a tree, because a
block's own holes are smaller than it: placing each block's holes from its start, largest first,
keeps every block aligned.
"""

from __future__ import annotations

import numpy as np

from policy.base import IntArray, PolicyError
from policy.blocks import Triple


def high_states(demand: IntArray, space_bits: int) -> tuple[IntArray, IntArray]:
    """(state, digit) matrices of shape (members, space_bits + 1) of a minimal layout.

    state[i, e] is 1 where member i is "high" at level e; digit[i, e] in {-1, 0, 1} is its
    signed digit at level e (see the module docstring).
    """
    d = np.asarray(demand, dtype=np.int64)
    if len(d) == 0 or int(d.sum()) != 1 << space_bits or (d < 0).any():
        raise PolicyError(f"demands must be >= 0 and sum to 2**{space_bits}, got {d.tolist()!r}")
    g = space_bits
    levels = np.arange(g + 1, dtype=np.int64)
    bits = (d[:, None] >> levels[None, :]) & 1
    # The bits of each demand reversed over g + 1 places: bit e of d is bit g - e of rev, so
    # rev mod 2**(g - e) reads bits e+1, e+2, ... of d with bit e+1 most significant.
    rev = np.zeros(len(d), dtype=np.int64)
    for e in range(g + 1):
        rev |= bits[:, e] << (g - e)
    carry = [int((d & ((1 << e) - 1)).sum()) >> e for e in range(g + 1)]
    state = np.zeros_like(bits)
    index = np.arange(len(d), dtype=np.int64)
    for e in range(g):
        s, b = state[:, e], bits[:, e]
        free = np.flatnonzero(s != b)
        kept_high = int(np.count_nonzero((s == 1) & (b == 1)))
        need = carry[e + 1] - kept_high
        if not 0 <= need <= len(free):  # cannot happen for valid demands; guard the invariant
            raise AssertionError(f"no state assignment at level {e} for {d.tolist()!r}")
        nxt = np.where(s == b, s, 0)
        key = rev[free] & ((1 << (g - e)) - 1)
        # Highest key first; among equal keys the lower index (deterministic, interchangeable).
        order = free[np.lexsort((index[free], -key))]
        nxt[order[:need]] = 1
        state[:, e + 1] = nxt
    upper = np.concatenate((state[:, 1:], np.zeros((len(d), 1), dtype=np.int64)), axis=1)
    digit = bits + state - 2 * upper
    return state, digit


def minimal_entry_count(demand: IntArray, space_bits: int) -> int:
    """The fewest LPM entries giving every member exactly its demand (0 if all are zero)."""
    d = np.asarray(demand, dtype=np.int64)
    if not d.any():
        return 0
    _, digit = high_states(d, space_bits)
    return (int(np.count_nonzero(digit)) + 1) // 2


def optimal_layout(demand: IntArray, space_bits: int) -> list[Triple]:
    """Blocks (start, exp, owner) with the fewest entries giving each member its demand.

    `demand` holds non-negative integers summing to 2**space_bits (or all zero: no blocks).
    Blocks come parent before child (largest first within a parent), so reading them in order
    with later ones overriding earlier ones gives the owners.
    """
    d = np.asarray(demand, dtype=np.int64)
    if not d.any():
        return []
    _, digit = high_states(d, space_bits)
    # Per level: members with a block (+1) and members with a hole (-1) of that size.
    blocks_at = [np.flatnonzero(digit[:, e] > 0).tolist() for e in range(space_bits + 1)]
    holes_at = [np.flatnonzero(digit[:, e] < 0).tolist() for e in range(space_bits + 1)]
    top = np.where(digit > 0, np.arange(space_bits + 1)[None, :], -1).max(axis=1).tolist()
    # Who fills each hole: the level's blocks in member order, matched to its holes in order.
    filler: dict[tuple[int, int], int] = {}
    loose: list[tuple[int, int]] = []  # blocks that fill no hole: top-level
    for e in range(space_bits + 1):
        holes = holes_at[e]
        for j, member in enumerate(blocks_at[e]):
            if j < len(holes):
                filler[(holes[j], e)] = member
            else:
                loose.append((member, e))
    if len(loose) != 1 or loose[0][1] != space_bits:  # the level sums guarantee one root
        raise AssertionError(f"unbalanced digits for {d.tolist()!r}")
    hole_exps = [sorted(np.flatnonzero(digit[i] < 0).tolist(), reverse=True) for i in range(len(d))]
    out: list[Triple] = []
    stack = [(0, space_bits, loose[0][0])]
    while stack:
        start, exp, member = stack.pop()
        out.append((start, exp, member))
        if exp != top[member]:
            continue  # only a member's largest block holds its holes
        at = start
        for hole in hole_exps[member]:
            stack.append((at, hole, filler[(member, hole)]))
            at += 1 << hole
    return out
