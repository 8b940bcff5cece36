"""Bucket layout that moves the fewest hash values from a previous layout.

Every member keeps as much of what it owned as its new demand allows, so exactly
1/2 * sum |demand change| values move (the minimum), and the previous entries are edited rather
than rebuilt, so nested (carved-out) blocks survive:

- Each old entry's pure region (its block minus longer entries inside it) is cut into maximal
  aligned pieces; a piece is owned by the entry's member.
- The background member (the old one if still in the pool, else the largest) owns the
  whole-space entry; pieces of members that left are free.
- A shrinking member keeps its largest pieces and splits one along the binary digits of what
  remains; the rest is released.
- A growing member takes aligned pieces from the released space (buddy allocation: split a
  larger free piece, or split the request when nothing is large enough), then from the
  background's surplus when the background shrinks.
- Each piece that changes hands becomes an entry (or re-labels the entry it equals); released
  pieces nobody took go to the background. `policy.tidy` then merges buddies and drops entries
  that are redundant or shadowed, which never changes an owner.

Fragmentation can push the entry count above the caller's budget; the caller then falls back to
a fresh layout (fewest entries, many moves). See `policy.buckets.prefix_entries`.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from policy.base import BoolArray, IntArray
from policy.blocks import Triple, aligned_cover, binary_pieces, run_pieces
from policy.tidy import Key, flatten, key_array, parents, tidy

_Owned = defaultdict[int, list[Key]]


class _Pool:
    """Free aligned pieces by size, with buddy splitting; optionally capped in total."""

    def __init__(self, pieces: list[Key], budget: int | None = None) -> None:
        self.by_exp: dict[int, list[Key]] = defaultdict(list)
        for piece in sorted(pieces, reverse=True):
            self.by_exp[piece[1]].append(piece)
        self.free = set(pieces)
        self.top = max((exp for _, exp in pieces), default=-1)
        self.total = sum(1 << exp for _, exp in pieces)
        self.budget = self.total if budget is None else min(budget, self.total)

    def take(self, exp: int, near: set[Key] | None = None) -> Key | None:
        """An aligned free piece of 2**exp, splitting the smallest larger one; None if none.

        A piece whose buddy is in `near` (default None: no preference) is taken first, so the
        taker's pieces merge into one entry.
        """
        if self.budget < 1 << exp:
            return None
        have = exp
        while not self.by_exp.get(have):
            if have >= self.top:
                return None
            have += 1
        pick = len(self.by_exp[have]) - 1
        if near and have == exp:
            size = 1 << exp
            buddies = [b for st, e in near if e == exp and (b := (st ^ size, exp)) in self.free]
            if buddies:
                pick = min(map(self.by_exp[exp].index, buddies))
        start, _ = self.by_exp[have].pop(pick)
        self.free.discard((start, have))
        while have > exp:
            have -= 1
            self.by_exp[have].append((start + (1 << have), have))
            self.free.add((start + (1 << have), have))
        self.budget -= 1 << exp
        self.total -= 1 << exp
        return (start, exp)

    def can_split(self, exp: int) -> bool:
        """Whether some free space remains to serve a request smaller than 2**exp."""
        return exp > 0 and self.budget > 0 and self.total > 0

    def add(self, pieces: list[Key]) -> None:
        """Return pieces to the pool."""
        for piece in pieces:
            self.by_exp[piece[1]].append(piece)
            self.free.add(piece)
            self.top = max(self.top, piece[1])
            self.total += 1 << piece[1]
            self.budget += 1 << piece[1]

    def left(self) -> list[Key]:
        """Pieces not taken."""
        return [piece for lst in self.by_exp.values() for piece in lst]


def _keep(
    pieces: list[Key], amount: int, give_back: frozenset[Key] = frozenset()
) -> tuple[list[Key], list[Key]]:
    """Split a member's pieces into (kept, released) so that exactly `amount` is kept.

    `pieces` come largest first, then by address. Pieces in `give_back` (default none) are kept
    last: releasing them deletes an entry.
    """
    kept: list[Key] = []
    skipped: list[Key] = []
    left = amount
    if not give_back.isdisjoint(pieces):
        pieces = sorted(pieces, key=give_back.__contains__)  # stable: sizes stay in order
    for piece in pieces:
        if 1 << piece[1] <= left:
            kept.append(piece)
            left -= 1 << piece[1]
        else:
            skipped.append(piece)
    released = skipped
    if left > 0:
        # The smallest skipped piece is larger than `left`: keep its head, release its tail.
        start, exp = min(skipped, key=lambda p: (p[1], p[0]))
        released = [p for p in skipped if p != (start, exp)]
        kept += binary_pieces(start, left)
        released += aligned_cover(start + left, start + (1 << exp))
    return kept, released


def _allocate(
    need: int, pools: list[_Pool], whole_first: bool = False, near: set[Key] | None = None
) -> list[Key]:
    """Take `need` values from the pools in order, as few aligned pieces as they allow.

    By default a pool is used up (splitting requests) before the next is touched; with
    `whole_first` (default False) any pool's whole piece is preferred over splitting a request.
    Pieces that are buddies of `near` ones (default None) are preferred, and join `near`.
    """
    got: list[Key] = []
    near = set() if near is None else near
    stack = [exp for exp in range(need.bit_length()) if need >> exp & 1]  # largest popped first
    while stack:
        exp = stack.pop()
        if whole_first:
            piece = next(
                (p for p in (pool.take(exp, near) for pool in pools) if p is not None), None
            )
            if piece is not None:
                got.append(piece)
                near.add(piece)
                continue
        for pool in pools:
            piece = pool.take(exp, near)
            if piece is not None:
                got.append(piece)
                near.add(piece)
                break
            if pool.can_split(exp):
                stack += [exp - 1, exp - 1]
                break
        else:
            raise AssertionError("bucket pools ran dry: demands do not sum to the space")
    return got


def sticky_layout(
    demand: IntArray, old: list[Triple], space_bits: int, rebuild: frozenset[int] = frozenset()
) -> list[Triple]:
    """Blocks (start, exp, owner) reaching `demand` from the `old` blocks with minimal moves.

    `old` are LPM blocks over 2**space_bits values (longest wins); `demand` sums to
    2**space_bits. Members in `rebuild` (default none) are re-laid in popcount(demand) whole
    pieces, preferring their own old pieces: that bounds their entries at the cost of some moves.
    """
    n = len(demand)
    live = np.flatnonzero(demand > 0)
    if len(live) == 0:
        return []
    entries: dict[Key, int] = {(s, e): o for s, e, o in old}
    lo, hi, ids = flatten(key_array(entries, len(entries)), space_bits)
    owner_of = np.fromiter([*entries.values(), -1], dtype=np.int64, count=len(entries) + 1)[ids]
    root = entries.get((0, space_bits))
    if root is not None and 0 <= root < n and demand[root] > 0:
        bg = root
    else:
        bg = int(live[np.argmax(demand[live])])
        entries[(0, space_bits)] = bg  # a departed background's land goes to the new one
    matched = owner_of >= 0
    have = np.bincount(owner_of[matched], (hi - lo)[matched], minlength=n)[:n].astype(np.int64)
    needed = have != demand  # members whose weight stays need no pieces
    needed[[bg, *rebuild]] = True
    owned, released = _pieces(lo, hi, owner_of, demand, space_bits, needed=needed)
    wanted: list[int] = demand.tolist()
    held: list[int] = have.tolist()
    members_live: list[int] = live.tolist()
    growing = {j for j in members_live if held[j] < wanted[j] and j not in rebuild and j != bg}
    # Whole entries carved out of a growing member's block: giving them back deletes an entry.
    owners = np.fromiter(entries.values(), dtype=np.int64, count=len(entries))
    up = parents(key_array(entries, len(entries)), space_bits)
    above = np.where(up >= 0, owners[up], -1)  # owner of the entry around each (-1: none)
    grows = np.zeros(n + 1, dtype=np.bool_)  # index -1 (no parent) reads the spare False
    grows[list(growing)] = True
    carved = grows[np.where(above < n, above, -1)] & (above != owners)
    listed = list(entries)
    home = {listed[i]: int(above[i]) for i in np.flatnonzero(carved).tolist()}
    give_back = frozenset(home)
    for j in members_live:
        if j != bg and held[j] > wanted[j] and j not in rebuild:
            _, freed = _keep(owned[j], wanted[j], give_back)
            released += freed
    homes: dict[int, list[Key]] = defaultdict(list)
    for key in released:
        if key in home:
            homes[home[key]].append(key)
    patches: list[tuple[Key, int]] = []
    got = [0] * n
    leftover: list[Key] = []
    for j, keys in homes.items():
        for key in sorted(keys, key=lambda k: -k[1]):
            if got[j] + (1 << key[1]) <= wanted[j] - held[j]:
                patches.append((key, j))
                got[j] += 1 << key[1]
            else:
                leftover.append(key)
    free = _Pool([key for key in released if key not in home] + leftover)
    spare = max(0, held[bg] - wanted[bg])  # the background's land growers may take
    surplus = _Pool(owned[bg] if spare else [], budget=spare)
    # Shrinking members first: what they leave over feeds the growing ones.
    for j in sorted(rebuild - {bg}, key=lambda j: (wanted[j] - held[j], j)):
        own = _Pool(owned[j])
        mine = _allocate(wanted[j], [own, free, surplus], whole_first=True)
        patches += [(p, j) for p in mine if p not in owned[j]]
        free.add(own.left())
        held[j] = wanted[j]
    growers = [j for j in members_live if j != bg and held[j] < wanted[j]]
    growers.sort(key=lambda j: (-(wanted[j] - held[j]), j))
    for j in growers:
        need = wanted[j] - held[j] - got[j]
        patches += [(p, j) for p in _allocate(need, [free, surplus], near=set(owned[j]))]
    patches += [(p, bg) for p in free.left()]
    for key, member in patches:
        entries[key] = member
    owners = np.fromiter(entries.values(), dtype=np.int64, count=len(entries))
    if ((owners < 0) | (owners >= n)).any() or not demand[owners].all():
        entries = {k: o for k, o in entries.items() if 0 <= o < n and wanted[o] > 0}
    entries = tidy(entries, space_bits)
    arr = key_array(entries, len(entries))
    owners = np.fromiter(entries.values(), dtype=np.int64, count=len(entries))
    order = np.lexsort((arr[:, 0], -arr[:, 1]))  # largest blocks first, by address
    starts, exps = arr[order, 0].tolist(), arr[order, 1].tolist()
    return list(zip(starts, exps, owners[order].tolist(), strict=True))


def _pieces(
    lo: IntArray,
    hi: IntArray,
    owner_of: IntArray,
    demand: IntArray,
    bits: int,
    *,
    needed: BoolArray,
) -> tuple[_Owned, list[Key]]:
    """Maximal aligned pieces of each entry's pure region: (members' pieces, free pieces).

    The space is cut into runs [lo, hi), each matched by one entry of owner `owner_of` (-1 where
    no entry matches). Pieces of members that leave (or of values no entry matches) are free;
    those of members not `needed` are left out. Members' pieces are largest first, then by
    address; free ones smallest first.
    """
    n = len(demand)
    starts, exps, members = run_pieces(lo, hi, owner_of, 1 << bits)
    keeps = (members >= 0) & (members < n)
    keeps[keeps] = demand[members[keeps]] > 0
    free = np.flatnonzero(~keeps)
    released = list(zip(starts[free].tolist(), exps[free].tolist(), strict=True))
    kept = np.flatnonzero(keeps)
    kept = kept[needed[members[kept]]]
    kept = kept[np.lexsort((starts[kept], -exps[kept], members[kept]))]
    bounds = np.flatnonzero(np.diff(members[kept])) + 1
    pairs = list(zip(starts[kept].tolist(), exps[kept].tolist(), strict=True))
    owned: _Owned = defaultdict(list)
    if len(kept):
        edges = [0, *bounds.tolist(), len(kept)]
        heads = members[kept[edges[:-1]]].tolist()
        for member, first, end in zip(heads, edges[:-1], edges[1:], strict=True):
            owned[member] = pairs[first:end]
    return owned, released
