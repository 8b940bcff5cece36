"""The fresh bucket layout has the fewest LPM entries: checked against independent exact searches.

Two searches that share nothing with `policy.optimal`:
- exhaustive: every owner array of a tiny space, each encoded with its fewest entries (ORTC, a
  classical exact algorithm), minimised per weight vector;
- a memoised search over LPM rule sets themselves (at each trie node: no rule, or a rule for any
  member; then every split of the counts between the two halves), for small spaces.
A third search, over every sequence of "high" sets in the level model of `policy.optimal`, is
checked against the rule-set search and then reaches larger pools (it tests the greedy choice,
given the model).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.blocks import Triple
from policy.buckets import bucket_owner, popcount_bound, prefix_entries
from policy.optimal import minimal_entry_count, optimal_layout
from policy.ortc import ortc
from policy.tidy import match_array


def compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    """Every tuple of `parts` non-negative integers summing to `total`."""
    if parts == 1:
        yield (total,)
        return
    for first in range(total + 1):
        for rest in compositions(total - first, parts - 1):
            yield (first, *rest)


def owners_of(triples: list[Triple], bits: int) -> np.ndarray:
    """Owner of each value under longest-prefix-wins."""
    arr = np.asarray([(s, e) for s, e, _ in triples], dtype=np.int64).reshape(-1, 2)
    owner = np.asarray([o for _, _, o in triples], dtype=np.int64)
    return owner[match_array(arr, bits)]


@functools.cache
def exhaustive_minimum(bits: int, members: int) -> dict[tuple[int, ...], int]:
    """Fewest entries of every weight vector, over every owner array of 2**bits values."""
    best: dict[tuple[int, ...], int] = {}
    for owner in itertools.product(range(members), repeat=1 << bits):
        arr = np.asarray(owner, dtype=np.int64)
        counts = tuple(np.bincount(arr, minlength=members).tolist())
        size = len(ortc(arr) or [])
        if size < best.get(counts, 1 << 30):
            best[counts] = size
    return best


@functools.cache
def rule_search(exp: int, counts: tuple[int, ...], above: int) -> int:
    """Fewest rules inside a 2**exp block holding `counts`, under a rule of member `above`."""
    if above >= 0 and counts[above] == 1 << exp:
        return 0
    if exp == 0:
        return 0 if counts.index(1) == above else 1
    half = 1 << (exp - 1)

    def best_split(inherited: int) -> int:
        return min(
            rule_search(exp - 1, left, inherited)
            + rule_search(
                exp - 1, tuple(c - x for c, x in zip(counts, left, strict=True)), inherited
            )
            for left in compositions(half, len(counts))
            if all(x <= c for x, c in zip(left, counts, strict=True))
        )

    best = best_split(above) if above >= 0 else 1 << 30
    for member, count in enumerate(counts):
        if count and member != above:
            best = min(best, 1 + best_split(member))
    return best


def level_search(weights: list[int], bits: int) -> int:
    """Fewest entries by trying every sequence of high sets (see `policy.optimal`)."""
    n = len(weights)
    bit = [[(w >> e) & 1 for e in range(bits + 1)] for w in weights]
    carry = [sum(w % (1 << e) for w in weights) >> e for e in range(bits + 1)]
    reach = {frozenset[int](): 0}
    for e in range(bits + 1):
        nxt: dict[frozenset[int], int] = {}
        for high, cost in reach.items():
            paid = cost + sum((i in high) != bool(bit[i][e]) for i in range(n))
            if e == bits:
                nxt[high] = min(nxt.get(high, 1 << 30), paid)
                continue
            kept = {i for i in high if bit[i][e]}
            free = [i for i in range(n) if (i in high) != bool(bit[i][e])]
            for chosen in itertools.combinations(free, carry[e + 1] - len(kept)):
                key = frozenset(kept | set(chosen))
                nxt[key] = min(nxt.get(key, 1 << 30), paid)
        reach = nxt
    return (min(reach.values()) + 1) // 2


@pytest.mark.parametrize(("bits", "members"), [(1, 2), (2, 2), (2, 3), (2, 4), (3, 2), (3, 3)])
def test_fewest_entries_equal_the_exhaustive_minimum(bits: int, members: int) -> None:
    for counts, size in exhaustive_minimum(bits, members).items():
        assert minimal_entry_count(np.asarray(counts), bits) == size, counts
        assert len(optimal_layout(np.asarray(counts), bits)) == size, counts


@st.composite
def small_pools(draw: st.DrawFn, max_bits: int, max_members: int) -> tuple[list[int], int]:
    """A weight vector summing to 2**bits (zeros allowed) and its bits."""
    bits = draw(st.integers(1, max_bits))
    n = draw(st.integers(1, max_members))
    cuts = sorted(draw(st.lists(st.integers(0, 1 << bits), min_size=n - 1, max_size=n - 1)))
    edges = [0, *cuts, 1 << bits]
    return [b - a for a, b in itertools.pairwise(edges)], bits


@settings(max_examples=150, deadline=None)
@given(small_pools(max_bits=4, max_members=4))
def test_fewest_entries_equal_the_rule_set_search(pool: tuple[list[int], int]) -> None:
    weights, bits = pool
    assert minimal_entry_count(np.asarray(weights), bits) == rule_search(bits, tuple(weights), -1)


@settings(max_examples=60, deadline=None)
@given(small_pools(max_bits=3, max_members=4))
def test_level_search_agrees_with_the_rule_set_search(pool: tuple[list[int], int]) -> None:
    weights, bits = pool
    assert level_search(weights, bits) == rule_search(bits, tuple(weights), -1)


@settings(max_examples=150, deadline=None)
@given(small_pools(max_bits=7, max_members=7))
def test_fewest_entries_equal_the_level_search_on_larger_pools(
    pool: tuple[list[int], int],
) -> None:
    weights, bits = pool
    assert minimal_entry_count(np.asarray(weights), bits) == level_search(weights, bits)


@settings(max_examples=200, deadline=None)
@given(small_pools(max_bits=16, max_members=200))
def test_layout_gives_each_member_exactly_its_weight(pool: tuple[list[int], int]) -> None:
    weights, bits = pool
    triples = optimal_layout(np.asarray(weights), bits)
    if not any(weights):
        assert triples == []
        return
    owner = owners_of(triples, bits)
    assert np.bincount(owner, minlength=len(weights)).tolist() == weights
    assert len(triples) == minimal_entry_count(np.asarray(weights), bits)
    assert len(triples) <= popcount_bound(weights)
    assert len({(s, e) for s, e, _ in triples}) == len(triples)
    assert all(s % (1 << e) == 0 for s, e, _ in triples)


@settings(max_examples=100, deadline=None)
@given(small_pools(max_bits=10, max_members=40))
def test_fresh_prefix_entries_are_the_optimal_layout(pool: tuple[list[int], int]) -> None:
    weights, bits = pool
    entries = prefix_entries(weights, 12)
    assert len(entries) == minimal_entry_count(np.asarray(weights), bits)
    owner = bucket_owner(entries, 12)
    assert np.bincount(owner, minlength=len(weights)).tolist() == [
        w << (12 - bits) for w in weights
    ]


@pytest.mark.parametrize(
    ("weights", "count"),
    [
        ([3, 3, 1, 1], 4),  # popcount 6: two carved pairs
        ([15, 1], 2),  # a whole-space entry and one carve
        ([1, 1, 1, 1], 4),  # every member needs an entry
        ([16], 1),
        ([7, 9, 8, 8], 5),
    ],
)
def test_known_minimums(weights: list[int], count: int) -> None:
    bits = sum(weights).bit_length() - 1
    assert minimal_entry_count(np.asarray(weights), bits) == count
