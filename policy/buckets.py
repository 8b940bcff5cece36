"""Prefix-compressed buckets: LPM entries over the flow-hash space that realise integer weights.

`prefix_entries` is what the controller writes into `dip_table` (flow_hash lpm): member `index`
owns exactly weights[index] / sum(weights) of the 2**hash_bits hash values under
longest-prefix-wins. Without a previous layout it minimises entries (`policy.layout`: at most
sum popcount(w), typically a third to a half fewer).

With a previous layout it trades entries against moved hash values (a moved value sends new
connections of that flow hash to another member). The sticky layout (`policy.sticky`) moves
exactly the minimum, 1/2 * sum |change|, but every change carves new pieces, so its entry count
grows. The entry budget defaults to max(sum popcount(w), len(previous)): the table never grows
past the popcount bound, and a layout that already fits may keep its size when the new weights
happen to be rounder. Over budget, the most fragmented members are re-laid in whole blocks, then
the layout is re-encoded with the fewest entries (ORTC), and only then does the fresh layout
replace it, placed where members already were. The fresh layout is also taken whenever it has
fewer entries and moves at most PACKED_SLACK (5 %) more than the minimum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from policy.base import IntArray, PolicyError
from policy.layout import fresh_layout
from policy.ortc import ortc
from policy.sticky import sticky_layout


class PrefixEntry(NamedTuple):
    """LPM entry: hash values whose top `prefix_len` bits equal `value`'s go to member `index`.

    `value` is `hash_bits` wide with its low `hash_bits - prefix_len` bits zero. An immutable
    value like a frozen dataclass, but a NamedTuple: thousands are built per rollout and a
    frozen dataclass costs several times more to construct.
    """

    value: int
    prefix_len: int
    index: int  # type: ignore[assignment]  # the contract name; shadows tuple.index

    def key(self) -> str:
        """The entry as a runtime-API lpm key string, e.g. "0x8000/1"."""
        return f"{self.value:#x}/{self.prefix_len}"


PACKED_SLACK = 1.05
"""A fresh layout replaces the sticky one if it moves at most this multiple of the minimum."""


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
    moves as few hash values as the entry budget allows: `max_entries`, default None meaning
    max(sum popcount(weights), len(previous)). Without `previous` (or with max_entries set to
    sum popcount) the result never has more than sum popcount(weights) entries.
    """
    w, k = _weights(weights, hash_bits)
    if not w.any():
        return []
    bits = k
    if previous:
        bits = max(k, *(e.prefix_len for e in previous))
        if bits > hash_bits:
            raise PolicyError(f"previous entries are longer than hash_bits={hash_bits!r}")
    demand = w << (bits - k)
    budget = popcount_bound(w) if max_entries is None else max_entries
    if previous and max_entries is None:
        budget = max(budget, len(previous))
    triples = None
    if previous:
        shift = hash_bits - bits
        old = [(e.value >> shift, bits - e.prefix_len, e.index) for e in previous]
        triples = _sticky_within(demand, old, bits, budget)
        fewest = len(fresh_layout(demand, bits))
        if triples is None or len(triples) > fewest:
            # The fresh layout has fewer entries: place it where members were, and take it if
            # that moves hardly more (or if the sticky one is over budget).
            old_owner = bucket_owner(previous, hash_bits)[:: 1 << shift]
            roots = [e.index for e in previous if e.prefix_len == 0]
            packed = fresh_layout(demand, bits, old_owner, roots[0] if roots else None)
            if triples is None or _prefer_packed(triples, packed, old_owner, demand, bits):
                triples = packed
    if triples is None:
        triples = fresh_layout(demand, bits)
    shift = hash_bits - bits
    return [PrefixEntry(start << shift, bits - exp, owner) for start, exp, owner in triples]


def _prefer_packed(
    sticky: list[tuple[int, int, int]],
    packed: list[tuple[int, int, int]],
    old_owner: IntArray,
    demand: IntArray,
    bits: int,
) -> bool:
    """Take the fresh (fewest-entry) layout when it has fewer entries and moves at most 5 % more."""
    if len(packed) >= len(sticky):
        return False
    minimum = np.bincount(old_owner[old_owner >= 0], minlength=len(demand))[: len(demand)]
    least = float(np.abs(demand - minimum).sum()) / 2 + np.count_nonzero(old_owner < 0) / 2
    moved = int(np.count_nonzero(_owner_of(packed, bits) != old_owner))
    return moved <= PACKED_SLACK * max(least, 1.0)


def _owner_of(triples: list[tuple[int, int, int]], bits: int) -> IntArray:
    """Owner of each value of a 2**bits space under blocks (start, exp, owner), longest wins."""
    owner = np.full(1 << bits, -1, dtype=np.int64)
    for start, exp, member in sorted(triples, key=lambda t: -t[1]):
        owner[start : start + (1 << exp)] = member
    return owner


def _sticky_within(
    demand: IntArray, old: list[tuple[int, int, int]], bits: int, budget: int
) -> list[tuple[int, int, int]] | None:
    """Sticky layout, re-laying the most fragmented members until within `budget`; else None."""
    rebuild: frozenset[int] = frozenset()
    for _ in range(8):
        triples = sticky_layout(demand, old, bits, rebuild)
        if len(triples) > budget:
            minimal = ortc(_owner_of(triples, bits))
            if minimal is not None and len(minimal) < len(triples):
                triples = minimal
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
        if not 0 <= entry.prefix_len <= hash_bits:
            raise PolicyError(f"entry {entry!r} is not a {hash_bits}-bit prefix")
        span = 1 << (hash_bits - entry.prefix_len)
        if entry.value % span or not 0 <= entry.value < 1 << hash_bits:
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


def moved_values(
    before: Sequence[PrefixEntry], after: Sequence[PrefixEntry], hash_bits: int
) -> int:
    """Number of hash values whose owner differs between two layouts."""
    return int(np.count_nonzero(bucket_owner(before, hash_bits) != bucket_owner(after, hash_bits)))
