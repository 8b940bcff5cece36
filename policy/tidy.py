"""Shrinking a set of LPM entries without changing any hash value's owner."""

from __future__ import annotations

import numpy as np

from policy.base import IntArray

Key = tuple[int, int]  # (start, exp) of an aligned block in a 2**space_bits space


def match_ids(keys: list[Key], space_bits: int) -> IntArray:
    """Index into `keys` of the longest prefix matching each value (-1 if none)."""
    ids = np.full(1 << space_bits, -1, dtype=np.int64)
    for i in sorted(range(len(keys)), key=lambda i: -keys[i][1]):
        start, exp = keys[i]
        ids[start : start + (1 << exp)] = i
    return ids


def parent_owner(entries: dict[Key, int], key: Key, space_bits: int) -> int:
    """Owner of the nearest entry strictly containing `key` (-1 if none)."""
    start, exp = key
    for up in range(exp + 1, space_bits + 1):
        owner = entries.get((start >> up << up, up))
        if owner is not None:
            return owner
    return -1


def _drop_redundant(entries: dict[Key, int], space_bits: int) -> bool:
    """Drop entries that give their block to the owner it would have anyway; True if any."""
    changed = False
    for key in sorted(entries, key=lambda k: -k[1]):
        if parent_owner(entries, key, space_bits) == entries[key]:
            del entries[key]
            changed = True
    return changed


def _drop_shadowed(entries: dict[Key, int], space_bits: int) -> bool:
    """Drop entries that match no value (fully covered by longer ones); True if any."""
    keys = list(entries)
    used = np.zeros(len(keys), dtype=np.bool_)
    ids = match_ids(keys, space_bits)
    used[ids[ids >= 0]] = True
    for i in np.flatnonzero(~used).tolist():
        del entries[keys[i]]
    return not used.all()


def _merge_buddies(entries: dict[Key, int]) -> bool:
    """Replace two same-owner buddy entries by one on their parent block; True if any."""
    changed = False
    for key in sorted(entries, key=lambda k: k[1]):
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
    while True:
        changed = _merge_buddies(out)
        changed |= _drop_shadowed(out, space_bits)
        changed |= _drop_redundant(out, space_bits)
        if not changed:
            return out
