"""Prefix-compressed buckets: LPM entries over the flow-hash space that realise integer weights.

`prefix_entries` is what the controller writes into `dip_table` (flow_hash lpm): member `index`
owns exactly weights[index] / sum(weights) of the 2**hash_bits hash values under
longest-prefix-wins. Without a previous layout it minimises entries (`policy.layout`: at most
sum popcount(w), usually about a third fewer); with one it moves the fewest hash values
(`policy.sticky`: exactly 1/2 * sum |change|) as long as the entry count stays within the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from policy.base import IntArray, PolicyError
from policy.layout import fresh_layout
from policy.sticky import sticky_layout


@dataclass(frozen=True, order=True)
class PrefixEntry:
    """LPM entry: hash values whose top `prefix_len` bits equal `value`'s go to member `index`.

    `value` is `hash_bits` wide with its low `hash_bits - prefix_len` bits zero.
    """

    value: int
    prefix_len: int
    index: int

    def key(self) -> str:
        """The entry as a runtime-API lpm key string, e.g. "0x8000/1"."""
        return f"{self.value:#x}/{self.prefix_len}"


def _weights(weights: ArrayLike, hash_bits: int) -> tuple[IntArray, int]:
    """Validated integer weights and log2 of their sum (a power of two <= 2**hash_bits)."""
    w = np.asarray(weights)
    if w.ndim != 1 or (w.size and not np.all(np.equal(np.mod(w, 1), 0))) or np.any(w < 0):
        raise PolicyError(f"weights must be non-negative integers, got {w.tolist()!r}")
    w = w.astype(np.int64)
    total = int(w.sum())
    if total == 0:
        return w, 0
    if total & (total - 1) or total > 1 << hash_bits:
        raise PolicyError(f"weights must sum to a power of two <= 2**{hash_bits}, got {total!r}")
    return w, total.bit_length() - 1


def popcount_bound(weights: ArrayLike) -> int:
    """Sum of popcount(w): the entry count of the plain binary layout, our upper bound."""
    return sum(int(x).bit_count() for x in np.asarray(weights, dtype=np.int64).tolist())


def prefix_entries(
    weights: ArrayLike,
    hash_bits: int,
    previous: Sequence[PrefixEntry] | None = None,
    max_entries: int | None = None,
) -> list[PrefixEntry]:
    """LPM entries giving member i exactly weights[i] * 2**hash_bits // sum(weights) hash values.

    `weights` are non-negative integers summing to a power of two <= 2**hash_bits (or all zero:
    no entries). With `previous` (default None: fresh layout with the fewest entries) the layout
    moves exactly 1/2 * sum |change| hash values, unless that needs more than `max_entries`
    (default None: sum popcount(weights)); then the fresh layout is used. The result never has
    more than sum popcount(weights) entries unless `max_entries` allows it.
    """
    w, k = _weights(weights, hash_bits)
    if not w.any():
        return []
    bits = k
    if previous:
        bits = max(k, max(e.prefix_len for e in previous))
        if bits > hash_bits:
            raise PolicyError(f"previous entries are longer than hash_bits={hash_bits!r}")
    demand = w << (bits - k)
    budget = popcount_bound(w) if max_entries is None else max_entries
    triples = None
    if previous:
        shift = hash_bits - bits
        old = [(e.value >> shift, bits - e.prefix_len, e.index) for e in previous]
        triples = _sticky_within(demand, old, bits, budget)
    if triples is None:
        triples = fresh_layout(demand, bits)
    shift = hash_bits - bits
    return [PrefixEntry(start << shift, bits - exp, owner) for start, exp, owner in triples]


def _sticky_within(
    demand: IntArray, old: list[tuple[int, int, int]], bits: int, budget: int
) -> list[tuple[int, int, int]] | None:
    """Sticky layout, re-laying the most fragmented members until within `budget`; else None."""
    rebuild: frozenset[int] = frozenset()
    for _ in range(8):
        triples = sticky_layout(demand, old, bits, rebuild)
        over = len(triples) - budget
        if over <= 0:
            return triples
        count = np.bincount([o for _, _, o in triples], minlength=len(demand))
        excess = count - np.array([int(d).bit_count() for d in demand.tolist()])
        excess[list(rebuild)] = -1
        worst = np.argsort(-excess, kind="stable")
        picked = worst[np.cumsum(np.maximum(excess[worst], 0)) - excess[worst] < over]
        picked = picked[excess[picked] > 0]
        if len(picked) == 0:
            return None
        rebuild |= frozenset(picked.tolist())
    return None


def bucket_owner(entries: Sequence[PrefixEntry], hash_bits: int) -> IntArray:
    """Owner index of every hash value under longest-prefix-wins (-1 where nothing matches)."""
    owner = np.full(1 << hash_bits, -1, dtype=np.int64)
    seen: set[tuple[int, int]] = set()
    for entry in sorted(entries, key=lambda e: e.prefix_len):
        span = 1 << (hash_bits - entry.prefix_len)
        if not 0 <= entry.prefix_len <= hash_bits or entry.value % span or entry.value >> hash_bits:
            raise PolicyError(f"entry {entry!r} is not a {hash_bits}-bit prefix")
        if (entry.value, entry.prefix_len) in seen:
            raise PolicyError(f"entry {entry!r} repeats a prefix")
        seen.add((entry.value, entry.prefix_len))
        owner[entry.value : entry.value + span] = entry.index
    return owner


def naive_entries(weights: ArrayLike, hash_bits: int | None = None) -> list[PrefixEntry]:
    """One full-length entry per bucket (sum(weights) buckets), members in turn: the baseline.

    `hash_bits` defaults to None: log2(sum(weights)), i.e. the entries index the buckets.
    """
    w, k = _weights(weights, 64 if hash_bits is None else hash_bits)
    bits = k if hash_bits is None else hash_bits
    owners = np.repeat(np.arange(len(w)), w)
    shift = bits - k
    return [PrefixEntry(b << shift, k, int(i)) for b, i in enumerate(owners.tolist())]


def moved_values(before: Sequence[PrefixEntry], after: Sequence[PrefixEntry], hash_bits: int) -> int:
    """Number of hash values whose owner differs between two layouts."""
    return int(np.count_nonzero(bucket_owner(before, hash_bits) != bucket_owner(after, hash_bits)))
