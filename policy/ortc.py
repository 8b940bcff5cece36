"""Fewest LPM entries for a given owner array (ORTC: Draves, King, Venkatachary, Zill, 1999).

Bottom-up over the binary trie of the space, a node's candidate set is the intersection of its
children's sets when that is non-empty, else their union; a uniform block is a leaf with its
owner. Top-down, the root takes any candidate; a child whose set holds the owner inherited from
above needs no entry, otherwise it takes one of its candidates (one entry). The result is the
minimum number of prefixes that reproduce the array exactly. Only the non-uniform nodes are
visited (about runs x depth), so the cost follows the layout's fragmentation, not the space.
"""

from __future__ import annotations

import numpy as np

from policy.base import IntArray
from policy.blocks import Triple


def ortc(owner: IntArray, max_nodes: int = 50_000) -> list[Triple] | None:
    """Minimal blocks (start, exp, owner) reproducing `owner` (len a power of two, all >= 0).

    Returns None when the trie would need more than `max_nodes` internal nodes (default
    50,000), to bound the time spent on very fragmented large spaces.
    """
    size = len(owner)
    bits = size.bit_length() - 1
    change = np.concatenate(([0], np.cumsum(owner[1:] != owner[:-1])))
    runs = int(change[-1]) + 1
    if runs * max(bits, 1) > max_nodes:
        return None
    cands: dict[tuple[int, int], frozenset[int]] = {}

    def uniform(start: int, exp: int) -> bool:
        return bool(change[start] == change[start + (1 << exp) - 1])

    def up(start: int, exp: int) -> frozenset[int]:
        if uniform(start, exp):
            found = frozenset((int(owner[start]),))
        else:
            half = 1 << (exp - 1)
            left, right = up(start, exp - 1), up(start + half, exp - 1)
            found = (left & right) or (left | right)
        cands[(start, exp)] = found
        return found

    up(0, bits)
    out: list[Triple] = []

    def down(start: int, exp: int, inherited: int) -> None:
        here = cands[(start, exp)]
        if inherited not in here:
            inherited = min(here)
            out.append((start, exp, inherited))
        if not uniform(start, exp):
            half = 1 << (exp - 1)
            down(start, exp - 1, inherited)
            down(start + half, exp - 1, inherited)

    down(0, bits, -1)
    return out
