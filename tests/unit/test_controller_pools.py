"""Pool membership: drain, remove after connections end or time out, activate, add."""

from __future__ import annotations

import pytest

from controller.config import DipConfig, VipConfig
from controller.core.pools import BackendPool, PoolError
from policy.autoscale import MemberState

VIP = VipConfig(
    "web",
    "10.0.0.100",
    80,
    "tcp",
    (
        DipConfig("10.1.0.1", 80, 2),
        DipConfig("10.1.0.2", 80, 1),
        DipConfig("10.1.0.3", 80, 1, "standby"),
    ),
)


def test_members_follow_the_config() -> None:
    pool = BackendPool(0, VIP)
    assert [m.dip for m in pool] == ["10.1.0.1:80", "10.1.0.2:80", "10.1.0.3:80"]


def test_drained_member_is_removed_only_when_its_connections_end() -> None:
    pool = BackendPool(0, VIP)
    pool.drain(10.0, "10.1.0.1:80", remove=True)
    counts = {"10.1.0.1:80": 2}
    assert pool.tick(11.0, lambda d: counts.get(d, 0), drain_timeout=300.0, settle=2.0) == []
    assert pool.tick(15.0, lambda d: counts.get(d, 0), drain_timeout=300.0, settle=2.0) == []
    counts.clear()
    (done,) = pool.tick(16.0, lambda d: 0, drain_timeout=300.0, settle=2.0)
    assert done.removed and not done.timed_out and done.member.dip == "10.1.0.1:80"
    assert [m.dip for m in pool] == ["10.1.0.2:80", "10.1.0.3:80"]
    assert pool.generation == 1


def test_drain_times_out_and_a_scale_down_drain_returns_to_standby() -> None:
    pool = BackendPool(0, VIP)
    pool.drain(0.0, "10.1.0.2:80", remove=False)
    (done,) = pool.tick(301.0, lambda d: 5, drain_timeout=300.0, settle=2.0)
    assert done.timed_out and not done.removed
    assert pool.member("10.1.0.2:80").state is MemberState.STANDBY


def test_activate_add_and_errors() -> None:
    pool = BackendPool(0, VIP)
    assert pool.activate(1.0, "10.1.0.3:80").state is MemberState.ACTIVE
    pool.add(2.0, DipConfig("10.1.0.4", 80, 1))
    assert len(pool) == 4 and pool.generation == 1
    with pytest.raises(PoolError, match="already a member"):
        pool.add(2.0, DipConfig("10.1.0.4", 80, 1))
    with pytest.raises(PoolError, match="not a member"):
        pool.drain(3.0, "10.9.9.9:80", remove=True)
    pool.add(4.0, DipConfig("10.1.0.5", 80, 1, "standby"))
    with pytest.raises(PoolError, match="nothing to drain"):
        pool.drain(5.0, "10.1.0.5:80", remove=False)
