"""Prefix-compressed buckets: LPM entries over the flow-hash space that realise integer weights.

`prefix_entries` is what the controller writes into `dip_table` (flow_hash lpm): member `index`
owns exactly weights[index] / sum(weights) of the 2**hash_bits hash values under
longest-prefix-wins. Without a previous layout it has the fewest entries any LPM layout can have
(`policy.optimal`, checked against exhaustive searches in the tests); that is at most
sum popcount(w); measured 0.36-0.85 of it on random pools, lower the wider the weights
(`python -m bench policy`).

With a previous layout it trades entries against moved hash values (a moved value sends new
connections of that flow hash to another member). The sticky layout (`policy.sticky`) moves
exactly the minimum, 1/2 * sum |change|, but every change carves new pieces, so its entry count
grows. The entry budget defaults to max(sum popcount(w), len(previous)): the table never grows
past the popcount bound, and a layout that already fits may keep its size when the new weights
happen to be rounder; callers with table room pass a larger `max_entries` and get the minimum.
Over budget, the most fragmented members are re-laid in whole blocks, then the layout is
re-encoded with the fewest entries (ORTC), and only then does a fresh layout replace it
(`policy.layout`: within sum popcount, not minimal, but its blocks placed where their members
already were).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import partial
from typing import NamedTuple, cast

import numpy as np
from numpy.typing import ArrayLike

from policy.base import IntArray, PolicyError
from policy.blocks import Triple
from policy.layout import fresh_layout
from policy.optimal import optimal_layout
from policy.ortc import ortc
from policy.sticky import sticky_layout
from policy.tidy import match_array


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
    no entries). With `previous` (default None: fresh layout, fewest entries possible) the layout
    moves as few hash values as the entry budget allows: `max_entries`, default None meaning
    max(sum popcount(weights), len(previous)). Without `previous` (or with max_entries set to
    sum popcount) the result never has more than sum popcount(weights) entries.
    """
    w, k = _weights(weights, hash_bits)
    if not w.any():
        return []
    bits = k
    held = np.fromiter(itertools.chain.from_iterable(previous or ()), np.int64).reshape(-1, 3)
    if previous:
        bits = max(k, int(held[:, 1].max()))
        if bits > hash_bits:
            raise PolicyError(f"previous entries are longer than hash_bits={hash_bits!r}")
    demand = w << (bits - k)
    budget = popcount_bound(w) if max_entries is None else max_entries
    if previous and max_entries is None:
        budget = max(budget, len(previous))
    triples = None
    if previous:
        shift = hash_bits - bits
        starts, exps = (held[:, 0] >> shift).tolist(), (bits - held[:, 1]).tolist()
        old = list(zip(starts, exps, held[:, 2].tolist(), strict=True))
        triples = _sticky_within(demand, old, bits, budget)
        if triples is None:
            # Over budget even after re-laying fragmented members: the fewest-entries layout,
            # its blocks placed where their members already were.
            old_owner = bucket_owner(previous, hash_bits)[:: 1 << shift]
            roots = [e.index for e in previous if e.prefix_len == 0]
            triples = fresh_layout(demand, bits, old_owner, roots[0] if roots else None)
    if triples is None:
        triples = optimal_layout(demand, bits)
    blocks = np.fromiter(itertools.chain.from_iterable(triples), np.int64).reshape(-1, 3)
    values = (blocks[:, 0] << (hash_bits - bits)).tolist()
    lengths = (bits - blocks[:, 1]).tolist()
    # tuple.__new__ is what PrefixEntry._make does, without a Python call per entry.
    make = partial(tuple.__new__, PrefixEntry)
    rows = zip(values, lengths, blocks[:, 2].tolist(), strict=True)
    return cast(list[PrefixEntry], list(map(make, rows)))


def _owner_of(triples: list[Triple], bits: int) -> IntArray:
    """Owner of each value of a 2**bits space under blocks (start, exp, owner), longest wins."""
    if not triples:
        return np.full(1 << bits, -1, dtype=np.int64)
    blocks = np.asarray(triples, dtype=np.int64)
    ids = match_array(blocks[:, :2], bits)
    return np.where(ids >= 0, blocks[np.maximum(ids, 0), 2], -1)


def _sticky_within(
    demand: IntArray, old: list[Triple], bits: int, budget: int
) -> list[Triple] | None:
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
