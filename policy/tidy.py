"""Shrinking a set of LPM entries without changing any hash value's owner."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import numpy as np

from policy.base import IntArray

Key = tuple[int, int]  # (start, exp) of an aligned block in a 2**space_bits space


def key_array(keys: Iterable[Key], count: int) -> IntArray:
    """The `count` keys as an int64 array of shape (count, 2): start, exp."""
    flat = np.fromiter(itertools.chain.from_iterable(keys), dtype=np.int64, count=2 * count)
    return flat.reshape(count, 2)


def match_array(arr: IntArray, space_bits: int) -> IntArray:
    """Index of the longest key matching each value (-1 if none); keys are (n, 2): start, exp."""
    ids = np.full(1 << space_bits, -1, dtype=np.int64)
    exps = arr[:, 1]
    # Shortest prefixes (largest blocks) first, so longer ones overwrite them: one write a level.
    for exp in range(space_bits, -1, -1):
        at = np.flatnonzero(exps == exp)
        if len(at):
            ids.reshape(-1, 1 << exp)[arr[at, 0] >> exp] = at[:, None]
    return ids


def _lookup(arr: IntArray, space_bits: int) -> tuple[IntArray, IntArray, int]:
    """Keys as sorted codes start * width + exp: (sorted codes, key index of each, width)."""
    width = space_bits + 1
    code = arr[:, 0] * width + arr[:, 1]
    order = np.argsort(code)
    return code[order], order, width


def parents(arr: IntArray, space_bits: int) -> IntArray:
    """Index into `arr` of the nearest key strictly containing each key (-1 if none)."""
    found = np.full(len(arr), -1, dtype=np.int64)
    if len(arr) == 0:
        return found
    sorted_code, order, width = _lookup(arr, space_bits)
    starts, exps = arr[:, 0], arr[:, 1]
    levels = np.unique(exps)
    for up in levels[1:].tolist():  # a parent is a key, so only levels that keys use
        todo = np.flatnonzero((found < 0) & (exps < up))
        want = (starts[todo] >> up << up) * width + up
        pos = np.minimum(np.searchsorted(sorted_code, want), len(arr) - 1)
        hit = sorted_code[pos] == want
        found[todo[hit]] = order[pos[hit]]
    return found


def flatten(arr: IntArray, space_bits: int) -> tuple[IntArray, IntArray, IntArray]:
    """Runs [lo, hi) of values matched by one key, and that key (-1 where none matches).

    Keys are an (n, 2) array of start, exp; the match is the longest prefix, as an index into it.
    """
    ids = match_array(arr, space_bits)
    cut = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    lo = np.concatenate(([0], cut))
    hi = np.concatenate((cut, [len(ids)]))
    return lo, hi, ids[lo]


def _drop_covered(entries: dict[Key, int], space_bits: int) -> bool:
    """Drop entries that match no value or repeat the owner above them; True if any.

    An entry matches no value when longer ones cover its block (shadowed); it is redundant when
    its nearest enclosing entry has the same owner. Dropping a redundant entry leaves the owner
    above every other entry as it was (the entries below it now see its parent, which has the
    same owner), so one pass finds them all.
    """
    keys = list(entries)
    arr = key_array(keys, len(keys))
    owners = np.fromiter(entries.values(), dtype=np.int64, count=len(keys))
    used = np.zeros(len(keys), dtype=np.bool_)
    ids = flatten(arr, space_bits)[2]
    used[ids[ids >= 0]] = True
    kept = np.flatnonzero(used)
    up = parents(arr[kept], space_bits)
    above = np.where(up >= 0, owners[kept][np.maximum(up, 0)], -1)
    drop = np.concatenate((np.flatnonzero(~used), kept[above == owners[kept]]))
    for i in drop.tolist():
        del entries[keys[i]]
    return len(drop) > 0


def _merge_candidates(entries: dict[Key, int], keys: list[Key]) -> list[int]:
    """Indices into `keys` (those of `entries`) that may have a buddy when visited, by size.

    A same-owner buddy is either one from the start or the parent block of two buddies merged
    below it (new, or an entry given a new owner); following such possible merges up the levels
    over-approximates who can merge, and the others are skipped without changing the result.
    """
    if not keys:
        return []
    arr = key_array(keys, len(keys))
    owners = np.fromiter(entries.values(), dtype=np.int64, count=len(keys))
    code = arr[:, 0] << 6 | arr[:, 1]  # exp < 64
    order = np.argsort(code)
    buddy = (arr[:, 0] ^ (np.int64(1) << arr[:, 1])) << 6 | arr[:, 1]
    pos = order[np.minimum(np.searchsorted(code[order], buddy), len(keys) - 1)]
    # Same-owner buddies now; an owner changes only where a merge below writes the parent block.
    paired = np.flatnonzero((code[pos] == buddy) & (owners[pos] == owners)).tolist()
    picked = {keys[i] for i in paired}
    frontier = {(start >> (exp + 1) << (exp + 1), exp + 1) for start, exp in picked}
    while frontier:
        grown: set[Key] = set()
        for start, exp in frontier:
            mate = (start ^ (1 << exp), exp)
            if mate in entries:
                picked.add(mate)
                grown.add((start >> (exp + 1) << (exp + 1), exp + 1))
        frontier = grown
    index = {key: i for i, key in enumerate(keys)} if len(picked) > len(paired) else None
    chosen = paired if index is None else sorted(index[key] for key in picked)
    return sorted(chosen, key=lambda i: keys[i][1])


def _merge_buddies(entries: dict[Key, int]) -> bool:
    """Replace two same-owner buddy entries by one on their parent block; True if any."""
    keys = list(entries)
    changed = False
    for i in _merge_candidates(entries, keys):
        key = keys[i]
        if key not in entries:
            continue
        start, exp = key
        buddy = (start ^ (1 << exp), exp)
        if entries.get(buddy) == entries[key]:
            owner = entries.pop(key)
            del entries[buddy]
            # An entry already on the parent block is fully covered by the buddies: replace it.
            entries[(start >> (exp + 1) << (exp + 1), exp + 1)] = owner
            changed = True
    return changed


def tidy(entries: dict[Key, int], space_bits: int) -> dict[Key, int]:
    """Equivalent entries (same owner for every value), with redundant ones removed."""
    out = dict(entries)
    settled = False  # one drop pass reaches its fixpoint; only new merges need another
    while True:
        merged = _merge_buddies(out)
        if settled and not merged:
            return out
        if not _drop_covered(out, space_bits) and not merged:
            return out
        settled = True
