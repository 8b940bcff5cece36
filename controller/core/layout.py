"""From integer weights to dip_table content, pure: the prefix entries of every pool in a slot.

`version_content` lays out each pool with `policy.buckets.prefix_entries`, starting from what
the active version holds so that few flow hashes change member (fewer connections depend on
conn_table entries still being learned), within one slot's share of the table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from controller.core.journal import SlotWeights
from controller.core.pools import BackendPool
from controller.core.shadow import BucketKey, DipTarget
from policy.buckets import PrefixEntry, popcount_bound, prefix_entries

Content = dict[BucketKey, DipTarget]


def version_content(
    pools: Sequence[BackendPool],
    desired: Mapping[int, Sequence[int]],
    held: Mapping[BucketKey, DipTarget],
    *,
    hash_bits: int,
    table_size: int,
    slots: int,
) -> tuple[Content, SlotWeights]:
    """The dip_table content of a new version (all pools) and the weights behind it.

    `held` is what the active slot holds now; each pool may use `entry_budget` entries.
    """
    content: Content = {}
    staged: dict[int, dict[str, int]] = {}
    for pool in pools:
        p = pool.pool_id
        members = [DipTarget(m.ip, m.port) for m in pool]
        weights = list(desired[p])
        staged[p] = {m.dip: w for m, w in zip(pool, weights, strict=True)}
        if not any(weights):  # drained (or emptied) pool: no entry, its VIP takes nothing new
            continue
        budget = entry_budget(weights, table_size, slots, len(pools))
        previous = held_entries(p, members, held)
        pool_content, _ = pool_buckets(p, members, weights, hash_bits, previous, max_entries=budget)
        content.update(pool_content)
    return content, staged


def pool_buckets(
    pool_id: int,
    members: Sequence[DipTarget],
    weights: Sequence[int],
    hash_bits: int,
    previous: Sequence[PrefixEntry] | None = None,
    *,
    max_entries: int | None = None,
) -> tuple[dict[BucketKey, DipTarget], list[PrefixEntry]]:
    """dip_table content of one pool for `weights`, and the prefix entries behind it.

    `previous` (default None: the fresh, fewest-entries layout) and `max_entries` (default None:
    prefix_entries' default budget) are passed to `policy.buckets.prefix_entries`.
    """
    w = np.asarray(weights, dtype=np.int64)
    entries = prefix_entries(w, hash_bits, previous or None, max_entries)
    content = {BucketKey(pool_id, e.value, e.prefix_len): members[e.index] for e in entries}
    return content, entries


def held_entries(
    pool_id: int, members: Sequence[DipTarget], held: Mapping[BucketKey, DipTarget]
) -> list[PrefixEntry]:
    """One pool's prefix entries in a slot's content (`held`), as indices into `members`.

    Entries of DIPs no longer in the pool are left out: their hash values count as free.
    """
    index = {m: i for i, m in enumerate(members)}
    return [
        PrefixEntry(key.value, key.prefix_len, index[target])
        for key, target in held.items()
        if key.pool == pool_id and target in index
    ]


def entry_budget(weights: Sequence[int], table_size: int, slots: int, pools: int) -> int:
    """Entries one pool may use in one slot: twice the popcount bound, within an even share
    of the table, never below popcount.

    Twice popcount lets the layout move exactly the minimum of hash values; more room only
    lets fragments accumulate, which costs writes at every rollout.
    """
    bound = popcount_bound(weights)
    return max(min(2 * bound, table_size // (slots * max(pools, 1))), bound)
