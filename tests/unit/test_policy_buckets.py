"""Prefix-compressed buckets: exact ownership, entry bounds, minimal moves, and the helpers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy import PolicyError
from policy.buckets import (
    PrefixEntry,
    bucket_owner,
    moved_values,
    naive_entries,
    popcount_bound,
    prefix_entries,
)
from policy.ortc import ortc
from policy.sticky import sticky_layout
from policy.tidy import tidy

HASH_BITS = 12


@st.composite
def weight_vectors(draw: st.DrawFn, n: int | None = None) -> list[int]:
    """Non-negative integers summing to a power of two (cut points of [0, 2**k])."""
    k = draw(st.integers(0, 10))
    size = draw(st.integers(1, 12)) if n is None else n
    cuts = sorted(draw(st.lists(st.integers(0, 1 << k), min_size=size - 1, max_size=size - 1)))
    edges = [0, *cuts, 1 << k]
    return [b - a for a, b in itertools.pairwise(edges)]


def scaled(weights: list[int], hash_bits: int = HASH_BITS) -> np.ndarray:
    """Hash values each member should own."""
    w = np.asarray(weights, dtype=np.int64)
    return w * ((1 << hash_bits) // int(w.sum()))


def assert_exact(entries: list[PrefixEntry], weights: list[int]) -> None:
    """Every value is owned, and each member owns exactly its share."""
    owner = bucket_owner(entries, HASH_BITS)
    assert (owner >= 0).all()
    counts = np.bincount(owner, minlength=len(weights))[: len(weights)]
    assert counts.tolist() == scaled(weights).tolist()


@settings(max_examples=300, deadline=None)
@given(weight_vectors())
def test_fresh_entries_partition_the_space_exactly_within_popcount(weights: list[int]) -> None:
    entries = prefix_entries(weights, HASH_BITS)
    assert_exact(entries, weights)
    assert len(entries) <= popcount_bound(weights)
    for e in entries:
        assert e.value % (1 << (HASH_BITS - e.prefix_len)) == 0


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10).flatmap(lambda n: st.tuples(weight_vectors(n), weight_vectors(n))))
def test_sticky_entries_are_exact_and_within_budget(pair: tuple[list[int], list[int]]) -> None:
    before, after = pair
    old = prefix_entries(before, HASH_BITS)
    new = prefix_entries(after, HASH_BITS, previous=old)
    assert_exact(new, after)
    assert len(new) <= max(popcount_bound(after), len(old))
    strict = prefix_entries(after, HASH_BITS, previous=old, max_entries=popcount_bound(after))
    assert_exact(strict, after)
    assert len(strict) <= popcount_bound(after)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10).flatmap(lambda n: st.tuples(weight_vectors(n), weight_vectors(n))))
def test_with_table_room_moves_are_exactly_half_the_l1_change(
    pair: tuple[list[int], list[int]],
) -> None:
    before, after = pair
    old = prefix_entries(before, HASH_BITS)
    new = prefix_entries(after, HASH_BITS, previous=old, max_entries=1 << 20)
    assert_exact(new, after)
    half_l1 = int(np.abs(scaled(after) - scaled(before)).sum()) // 2
    assert moved_values(old, new, HASH_BITS) == half_l1


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10).flatmap(lambda n: st.tuples(weight_vectors(n), weight_vectors(n))))
def test_sticky_layout_moves_exactly_half_the_l1_change(pair: tuple[list[int], list[int]]) -> None:
    before, after = pair
    old = [(e.value, HASH_BITS - e.prefix_len, e.index) for e in prefix_entries(before, HASH_BITS)]
    blocks = sticky_layout(scaled(after), old, HASH_BITS)
    new = [PrefixEntry(s, HASH_BITS - e, o) for s, e, o in blocks]
    assert_exact(new, after)
    old_entries = [PrefixEntry(s, HASH_BITS - e, o) for s, e, o in old]
    half_l1 = int(np.abs(scaled(after) - scaled(before)).sum()) // 2
    assert moved_values(old_entries, new, HASH_BITS) == half_l1


def test_sticky_chain_of_small_changes_stays_exact_and_moves_little() -> None:
    rng = np.random.default_rng(3)
    weights = np.array([26, 51, 77, 102])
    entries = prefix_entries(weights, HASH_BITS)
    moved = minimum = 0
    for _ in range(60):
        new = weights.copy()
        i, j = rng.choice(4, size=2, replace=False)
        step = int(rng.integers(1, 4))
        if new[i] > step:
            new[i] -= step
            new[j] += step
        next_entries = prefix_entries(new, HASH_BITS, previous=entries)
        assert_exact(next_entries, new.tolist())
        assert len(next_entries) <= max(popcount_bound(new), len(entries))
        moved += moved_values(entries, next_entries, HASH_BITS)
        minimum += int(np.abs(scaled(new.tolist()) - scaled(weights.tolist())).sum()) // 2
        weights, entries = new, next_entries
    assert moved <= 2 * minimum


@pytest.mark.parametrize(
    ("weights", "count"),
    [
        ([1], 1),
        ([0, 4, 0], 1),
        ([3, 1], 2),
        ([2, 2], 2),
        ([7, 7, 1, 1], 4),
        ([5, 3], 3),
        ([1, 1, 1, 1, 1, 1, 1, 1], 8),
    ],
)
def test_nested_prefixes_beat_popcount_where_possible(weights: list[int], count: int) -> None:
    entries = prefix_entries(weights, HASH_BITS)
    assert_exact(entries, weights)
    assert len(entries) == count


def test_all_zero_weights_give_no_entries() -> None:
    assert prefix_entries([0, 0, 0], HASH_BITS) == []
    assert (bucket_owner([], HASH_BITS) == -1).all()


@pytest.mark.parametrize("weights", [[1, 2], [3], [-1, 3], [0.5, 0.5], [1 << 13]])
def test_bad_weights_are_rejected(weights: list[float]) -> None:
    with pytest.raises(PolicyError, match=r"weights must"):
        prefix_entries(weights, HASH_BITS)


def test_member_leaving_hands_its_values_to_the_others() -> None:
    old = prefix_entries([4, 2, 2], HASH_BITS)
    new = prefix_entries([6, 0, 2], HASH_BITS, previous=old)
    assert_exact(new, [6, 0, 2])
    assert moved_values(old, new, HASH_BITS) == (1 << HASH_BITS) * 2 // 8


def test_background_leaving_is_replaced() -> None:
    old = prefix_entries([6, 1, 1], HASH_BITS)
    new = prefix_entries([0, 4, 4], HASH_BITS, previous=old)
    assert_exact(new, [0, 4, 4])


@pytest.mark.parametrize(
    "entry",
    [PrefixEntry(1, 1, 0), PrefixEntry(0, HASH_BITS + 1, 0), PrefixEntry(1 << HASH_BITS, 0, 0)],
)
def test_bucket_owner_rejects_malformed_entries(entry: PrefixEntry) -> None:
    with pytest.raises(PolicyError, match="prefix"):
        bucket_owner([entry], HASH_BITS)


def test_bucket_owner_rejects_repeated_prefixes() -> None:
    with pytest.raises(PolicyError, match="repeats"):
        bucket_owner([PrefixEntry(0, 1, 0), PrefixEntry(0, 1, 1)], HASH_BITS)


def test_longest_prefix_wins() -> None:
    owner = bucket_owner([PrefixEntry(0, 0, 0), PrefixEntry(0x800, 1, 1)], HASH_BITS)
    assert owner[0] == 0 and owner[0x800] == 1 and owner[-1] == 1


def test_entry_key_is_the_runtime_api_lpm_format() -> None:
    assert PrefixEntry(0x8000, 1, 2).key() == "0x8000/1"


@pytest.mark.parametrize(("weights", "hash_bits"), [([1, 3], None), ([2, 2, 4], 12)])
def test_naive_entries_are_one_per_bucket(weights: list[int], hash_bits: int | None) -> None:
    entries = naive_entries(weights, hash_bits)
    assert len(entries) == sum(weights)
    bits = hash_bits if hash_bits is not None else 2
    counts = np.bincount(bucket_owner(entries, bits), minlength=len(weights))
    assert counts.tolist() == scaled(weights, bits).tolist()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=16, max_size=16))
def test_ortc_reproduces_any_owner_array(owners: list[int]) -> None:
    owner = np.asarray(owners, dtype=np.int64)
    blocks = ortc(owner)
    assert blocks is not None
    entries = [PrefixEntry(s, 4 - e, o) for s, e, o in blocks]
    assert bucket_owner(entries, 4).tolist() == owners
    runs = 1 + int(np.count_nonzero(owner[1:] != owner[:-1]))
    assert len(blocks) <= runs * 4


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 15), st.integers(0, 4), st.integers(0, 2)), max_size=12))
def test_tidy_never_changes_an_owner(raw: list[tuple[int, int, int]]) -> None:
    entries = {(s >> e << e, e): o for s, e, o in raw}
    entries[(0, 4)] = 0

    def owners(blocks: dict[tuple[int, int], int]) -> list[int]:
        entries = [PrefixEntry(s, 4 - e, o) for (s, e), o in blocks.items()]
        return [int(x) for x in bucket_owner(entries, 4)]

    tidied = tidy(entries, 4)
    assert owners(tidied) == owners(entries)
    assert len(tidied) <= len(entries)


def test_previous_entries_of_members_no_longer_in_the_pool_are_replaced() -> None:
    old = prefix_entries([2, 2, 2, 2], HASH_BITS)
    new = prefix_entries([4, 2, 2], HASH_BITS, previous=old)
    assert_exact(new, [4, 2, 2])
    assert moved_values(old, new, HASH_BITS) == (1 << HASH_BITS) // 4


def test_previous_entries_finer_than_the_new_weights_are_understood() -> None:
    old = prefix_entries([1, 3] + [0] * 2, HASH_BITS)
    fine = prefix_entries([100, 100, 28, 28], HASH_BITS, previous=old)
    assert_exact(fine, [100, 100, 28, 28])
    coarse = prefix_entries([1, 1, 0, 0], HASH_BITS, previous=fine)
    assert_exact(coarse, [1, 1, 0, 0])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 15), st.integers(0, 4), st.integers(0, 1)), max_size=16))
def test_tidy_leaves_no_same_owner_buddies_nor_redundant_entries(
    raw: list[tuple[int, int, int]],
) -> None:
    entries = {(s >> e << e, e): o for s, e, o in raw}
    entries[(0, 4)] = 0
    tidied = tidy(entries, 4)
    for (start, exp), owner in tidied.items():
        assert tidied.get((start ^ (1 << exp), exp)) != owner or exp == 4
        parent = next(
            (
                tidied[(start >> up << up, up)]
                for up in range(exp + 1, 5)
                if (start >> up << up, up) in tidied
            ),
            None,
        )
        assert parent != owner
