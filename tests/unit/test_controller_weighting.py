"""From loads to integer weights and buckets, per pool."""

from __future__ import annotations

import numpy as np
import pytest

from controller.config import DipConfig, VipConfig
from controller.pools import BackendPool
from controller.shadow import DipTarget
from controller.weighting import MemberLoad, PoolWeighting, member_up, pool_buckets
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


def load(cpu: float, state: str = "up", reported: bool = True) -> MemberLoad:
    return MemberLoad(state, cpu, 0, None, 0.0, reported)


@pytest.mark.parametrize(
    ("view", "up"),
    [
        (None, True),
        (load(0.5, "down", reported=False), True),
        (load(0.5), True),
        (load(0.5, "down"), False),
        (load(0.5, "blackout"), False),
        (load(0.5, "drain"), False),
    ],
)
def test_member_up(view: MemberLoad | None, up: bool) -> None:
    assert member_up(view) is up


def test_initial_weights_follow_the_config_and_skip_standby() -> None:
    weighting = PoolWeighting(BackendPool(0, VIP), "static", {}, 8)
    assert weighting.initial() == (192, 64, 0)


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
