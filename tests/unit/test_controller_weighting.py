"""From loads to integer weights and buckets, per pool."""

from __future__ import annotations

import numpy as np
import pytest

import policy
from controller.config import DipConfig, VipConfig
from controller.core.layout import entry_budget, held_entries, pool_buckets
from controller.core.loadbook import DipLoad, DipState
from controller.core.pools import BackendPool
from controller.core.shadow import DipTarget
from controller.core.weighting import PoolWeighting
from policy.base import FloatArray, Observations
from policy.buckets import bucket_owner, prefix_entries

VIP = VipConfig(
    "web",
    "10.0.0.100",
    80,
    "tcp",
    (
        DipConfig("10.1.0.1", 80, 3),
        DipConfig("10.1.0.2", 80, 1),
        DipConfig("10.1.0.3", 80, 1, "standby"),
    ),
)


def load(cpu: float, state: DipState = "up", dip: str = "10.1.0.1:80") -> DipLoad:
    reported = state != "unknown"
    return DipLoad(dip, state, cpu, 0, None, 0.0 if reported else None, 0.0, 1, "up")


@pytest.mark.parametrize(
    ("view", "up"),
    [
        (load(0.5, "unknown"), True),
        (load(0.5), True),
        (load(0.5, "down"), False),
        (load(0.5, "blackout"), False),
        (load(0.5, "drain"), False),
    ],
)
def test_only_up_and_agentless_members_are_live(view: DipLoad, up: bool) -> None:
    assert view.live is up


class Recorder:
    """A policy that keeps what it is shown and asks for equal shares."""

    def __init__(self) -> None:
        self.seen: list[Observations] = []

    def update(self, now: float, obs: Observations) -> FloatArray:
        self.seen.append(obs)
        return np.where(obs.live, 1.0, 0.0) / max(1, int(obs.live.sum()))


def counted(
    dip: str, at: float, latest: tuple[float, float], counts: tuple[float, float]
) -> DipLoad:
    """A report of (cpu, rate) `latest` from an agent run that started at controller time 0 and
    has counted `counts` (arrived, busy) since."""
    cpu, rate = latest
    arrived, busy = counts
    return DipLoad(dip, "up", cpu, 10, rate, at, 0.0, 1, "up", arrived, 0.0, busy)


def test_the_policy_sees_rate_and_cpu_as_means_since_its_previous_look(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = Recorder()
    monkeypatch.setattr(policy, "make_policy", lambda *args: recorder)
    weighting = PoolWeighting(BackendPool(0, VIP), "ratio", {}, 8)
    a, b = "10.1.0.1:80", "10.1.0.2:80"
    weighting.update(
        1.0, {a: counted(a, 1.0, (0.9, 40), (100, 2.0)), b: counted(b, 1.0, (0.5, 5), (10, 1.0))}
    )
    # Two reports later: a finished the second at 10/s and 0.5 CPU, its first half at 30/s and
    # 0.7 CPU; b's counts went back, so its latest report's figures stand.
    weighting.update(
        2.0, {a: counted(a, 2.0, (0.5, 10), (120, 2.6)), b: counted(b, 2.0, (0.4, 6), (4, 0.1))}
    )
    first, second = recorder.seen
    assert first.conn_rate[:2].tolist() == [40.0, 5.0]
    assert first.cpu_mean is not None and first.cpu_mean[:2].tolist() == [0.9, 0.5]
    assert second.conn_rate[:2].tolist() == [20.0, 6.0]
    assert second.cpu_mean is not None and second.cpu_mean[:2] == pytest.approx([0.6, 0.4])
    assert second.cpu[:2].tolist() == [0.5, 0.4]


def test_initial_weights_follow_the_config_and_skip_standby() -> None:
    weighting = PoolWeighting(BackendPool(0, VIP), "static", {}, 8)
    assert weighting.initial() == (192, 64, 0)


def test_a_new_or_reweighed_member_is_seeded_with_its_configured_weight() -> None:
    pool = BackendPool(0, VIP)
    weighting = PoolWeighting(pool, "static", {}, 8)
    pool.add(1.0, DipConfig("10.1.0.4", 80, 2))
    assert weighting.update(20.0, {}) == (128, 43, 0, 85)  # 3 : 1 : 2 over the active members
    pool.set_weight("10.1.0.2:80", 4)
    assert weighting.update(21.0, {}) == (85, 114, 0, 57)  # 3 : 4 : 2


def test_a_member_turned_active_ramps_up_over_slow_start() -> None:
    pool = BackendPool(0, VIP)
    weighting = PoolWeighting(pool, "equal", {}, 8, slow_start=10.0)
    assert weighting.update(100.0, {}) == (128, 128, 0)
    pool.activate(100.0, "10.1.0.3:80")
    shares = [weighting.update(t, {})[2] for t in (100.0, 102.5, 105.0, 110.0, 120.0)]
    assert shares == sorted(shares) and shares[0] == 0 and shares[-1] == 85
    assert shares[2] == pytest.approx(256 * 0.5 / 2.5, abs=2)  # half way: 1/2 of a full share


def test_a_member_change_during_a_ramp_does_not_freeze_the_ramped_weight() -> None:
    pool = BackendPool(0, VIP)
    weighting = PoolWeighting(pool, "static", {}, 8, slow_start=10.0)
    pool.add(100.0, DipConfig("10.1.0.4", 80, 1))
    assert weighting.update(101.0, {})[3] < 20  # ramping
    pool.drain(101.0, "10.1.0.2:80", remove=True)
    pool.tick(110.0, lambda dip: 0, 60.0, 1.0)  # the drained member leaves: a rebuild
    # Members now 10.1.0.1 (3), 10.1.0.3 (standby), 10.1.0.4 (1): 3 : 1 once ramped.
    assert weighting.update(111.0, {}) == (192, 0, 64)


def test_policy_weights_sum_to_the_total_and_exclude_down_members() -> None:
    weighting = PoolWeighting(BackendPool(0, VIP), "cpu", {}, 8)
    desired = weighting.update(
        1.0, {"10.1.0.1:80": load(0.2), "10.1.0.2:80": load(0.8), "10.1.0.3:80": load(0.1)}
    )
    assert sum(desired) == 256 and desired[0] > desired[1] > 0 and desired[2] == 0
    desired = weighting.update(2.0, {"10.1.0.1:80": load(0.2, "down"), "10.1.0.2:80": load(0.8)})
    assert desired == (0, 256, 0)


def test_all_members_silent_keeps_the_weights_of_active_members() -> None:
    pool = BackendPool(0, VIP)
    weighting = PoolWeighting(pool, "cpu", {}, 8)
    before = weighting.update(1.0, {"10.1.0.1:80": load(0.5), "10.1.0.2:80": load(0.5)})
    silent = {"10.1.0.1:80": load(0.5, "down"), "10.1.0.2:80": load(0.5, "down")}
    assert weighting.update(2.0, silent) == before and weighting.no_live_member
    pool.drain(3.0, "10.1.0.2:80", remove=False)
    assert weighting.update(3.0, silent) == (256, 0, 0)


def test_the_policy_sees_the_arrival_rate_since_its_previous_round() -> None:
    # Two equal members, 100 connections a second each; the first one's latest report covers a
    # quiet half-second (20/s). Read alone, that rate makes it look five times weaker.
    vip = VipConfig(
        "web", "10.0.0.100", 80, "tcp", (DipConfig("10.1.0.1", 80), DipConfig("10.1.0.2", 80))
    )
    weighting = PoolWeighting(BackendPool(0, vip), "ratio", {}, 8)
    for t in range(12):
        now = float(t)
        loads = {
            f"10.1.0.{i}:80": DipLoad(
                f"10.1.0.{i}:80", "up", 0.5, 50, rate, now, 0.0, t, "up", 100.0 * now, 0.0
            )
            for i, rate in ((1, 20.0), (2, 100.0))
        }
        weights = weighting.update(now, loads)
    assert weights == (128, 128)


def test_member_list_change_rebuilds_the_policy_keeping_known_weights() -> None:
    pool = BackendPool(0, VIP)
    weighting = PoolWeighting(pool, "static", {}, 8)
    weighting.update(1.0, {})
    pool.add(2.0, DipConfig("10.1.0.4", 80, 1))
    desired = weighting.update(2.0, {})
    assert len(desired) == 4 and sum(desired) == 256


def test_pool_buckets_give_each_member_its_weight_of_the_hash_space() -> None:
    members = [DipTarget("10.1.0.1", 80), DipTarget("10.1.0.2", 80), DipTarget("10.1.0.3", 80)]
    content, entries = pool_buckets(2, members, [128, 96, 32], 16)
    assert all(key.pool == 2 for key in content)
    owners = bucket_owner(prefix_entries([128, 96, 32], 16), 16)
    assert np.bincount(owners, minlength=3).tolist() == [32768, 24576, 8192]
    assert {members[e.index] for e in entries} == set(content.values())


def test_held_entries_map_a_slots_content_back_to_member_indices() -> None:
    members = [DipTarget("10.1.0.1", 80), DipTarget("10.1.0.2", 80), DipTarget("10.1.0.3", 80)]
    held, entries = pool_buckets(1, members, [128, 96, 32], 16)
    other, _ = pool_buckets(0, members, [256, 0, 0], 16)
    assert sorted(held_entries(1, members, {**held, **other})) == sorted(entries)
    # A DIP that left the pool: its entries are dropped, the others keep their indices.
    remaining = [members[0], members[2]]
    kept = held_entries(1, remaining, held)
    assert {remaining[e.index] for e in kept} == {members[0], members[2]}
    assert len(kept) == sum(1 for e in entries if e.index != 1)


@pytest.mark.parametrize(
    ("weights", "pools", "budget"),
    [
        ([128, 96, 32], 1, 8),  # popcount 4: twice that fits the table share
        ([255, 3], 64, 20),  # popcount 10: twice that fits 16384 // (4 * 64) = 64
        ([255, 3], 1024, 10),  # a share of 4 is below popcount: popcount wins
        ([255, 1], 1024, 9),
    ],
)
def test_entry_budget_is_twice_popcount_within_a_table_share_never_below_popcount(
    weights: list[int], pools: int, budget: int
) -> None:
    assert entry_budget(weights, 16384, 4, pools) == budget


def test_pool_buckets_from_the_held_entries_move_the_fewest_hash_values() -> None:
    members = [DipTarget(f"10.1.0.{i}", 80) for i in range(1, 9)]
    before = [40, 30, 30, 40, 26, 30, 30, 30]
    after = [38, 33, 29, 41, 25, 30, 31, 29]
    held, old = pool_buckets(0, members, before, 16)
    _, new = pool_buckets(0, members, after, 16, held_entries(0, members, held), max_entries=4096)
    moved = int(np.count_nonzero(bucket_owner(old, 16) != bucket_owner(new, 16)))
    half_l1 = sum(abs(a - b) for a, b in zip(after, before, strict=True)) // 2
    assert moved == half_l1 << 8
