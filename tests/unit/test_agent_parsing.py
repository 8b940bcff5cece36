"""Pure parsing behind the agent's samplers: cgroup files, /proc text and utilisation arithmetic."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.parsing import (
    CgroupMount,
    CpuSample,
    SamplerError,
    count_established,
    locate_in_hierarchy,
    parse_cfs_quota,
    parse_cgroup_mounts,
    parse_cpu_list,
    parse_cpu_max,
    parse_cpu_stat_usage,
    parse_cpuacct_usage,
    parse_passive_opens,
    rate,
    system_sample,
    utilisation,
)


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        (CpuSample(0, 0, 1), CpuSample(0.5, 1, 1), 0.5),
        (CpuSample(10, 100, 4), CpuSample(12, 101, 4), 0.5),  # 2 CPU-s of 4 CPUs x 1 s
        (CpuSample(0, 0, 0.2), CpuSample(0.2, 1, 0.2), 1.0),  # 20 % quota fully used
        (CpuSample(0, 0, 1), CpuSample(3, 1, 1), 1.0),  # clamped above
        (CpuSample(5, 0, 1), CpuSample(4, 1, 1), 0.0),  # counter went back: clamped
        (CpuSample(0, 1, 1), CpuSample(1, 1, 1), 0.0),  # no time passed
        (CpuSample(0, 2, 1), CpuSample(1, 1, 1), 0.0),  # clock went back
    ],
)
def test_utilisation_is_busy_over_available(
    previous: CpuSample, current: CpuSample, expected: float
) -> None:
    assert utilisation(previous, current) == pytest.approx(expected)


@given(
    st.floats(0, 1e6), st.floats(0, 1e6), st.floats(-1e6, 1e6), st.floats(0, 1e3), st.floats(0, 64)
)
def test_utilisation_stays_within_zero_and_one(
    busy: float, clock: float, dbusy: float, dclock: float, cpus: float
) -> None:
    value = utilisation(CpuSample(busy, clock, cpus), CpuSample(busy + dbusy, clock + dclock, cpus))
    assert 0.0 <= value <= 1.0


def test_system_sample_counts_idle_iowait_and_steal_as_not_busy() -> None:
    times = {
        "user": 6.0,
        "nice": 1.0,
        "system": 2.0,
        "idle": 8.0,
        "iowait": 1.0,
        "irq": 0.5,
        "softirq": 0.5,
        "steal": 1.0,
        "guest": 3.0,
        "guest_nice": 0.0,
    }
    assert system_sample(times) == CpuSample(busy=10.0, clock=20.0, cpus=1.0)


@pytest.mark.parametrize(
    ("quota", "period", "cpus"),
    [("20000\n", "100000\n", 0.2), ("-1\n", "100000\n", None), ("150000", "50000", 3.0)],
)
def test_cfs_quota_gives_allowed_cpus(quota: str, period: str, cpus: float | None) -> None:
    assert parse_cfs_quota(quota, period) == cpus


@pytest.mark.parametrize(("quota", "period"), [("x", "100000"), ("1000", "0"), ("0", "100000")])
def test_bad_cfs_quota_is_a_sampler_error(quota: str, period: str) -> None:
    with pytest.raises(SamplerError):
        parse_cfs_quota(quota, period)


@pytest.mark.parametrize(
    ("text", "cpus"), [("20000 100000\n", 0.2), ("max 100000\n", None), ("50000", 0.5)]
)
def test_cpu_max_gives_allowed_cpus(text: str, cpus: float | None) -> None:
    assert parse_cpu_max(text) == cpus


@pytest.mark.parametrize("text", ["", "a b", "1 2 3", "0 100000", "-5 100000"])
def test_bad_cpu_max_is_a_sampler_error(text: str) -> None:
    with pytest.raises(SamplerError):
        parse_cpu_max(text)


def test_usage_counters_are_converted_to_seconds() -> None:
    assert parse_cpuacct_usage("2500000000\n") == 2.5
    stat = "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n"
    assert parse_cpu_stat_usage(stat) == 1.5


@pytest.mark.parametrize("bad", ["", "nr_periods 0\n", "usage_usec x\n"])
def test_cpu_stat_without_usage_is_a_sampler_error(bad: str) -> None:
    with pytest.raises(SamplerError):
        parse_cpu_stat_usage(bad)


@pytest.mark.parametrize(("text", "count"), [("0-3\n", 4), ("0,2,4-5", 4), ("7", 1)])
def test_cpu_lists_are_counted(text: str, count: int) -> None:
    assert parse_cpu_list(text) == count


MOUNTINFO = """\
30 24 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
33 30 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 30 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
37 30 0:33 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
"""


def test_cgroup_mounts_are_found_with_their_controllers() -> None:
    mounts = parse_cgroup_mounts(MOUNTINFO)
    assert CgroupMount(PurePosixPath("/sys/fs/cgroup/cpu"), 1, frozenset({"cpu"})) in mounts
    assert CgroupMount(PurePosixPath("/sys/fs/cgroup/unified"), 2, frozenset()) in mounts
    assert len(mounts) == 5


@pytest.mark.parametrize(
    ("path", "controller", "expected"),
    [
        ("/sys/fs/cgroup/cpu/web/a", "cpuacct", "/sys/fs/cgroup/cpuacct/web/a"),
        ("/sys/fs/cgroup/cpuacct/web", "cpu", "/sys/fs/cgroup/cpu/web"),
        ("/sys/fs/cgroup/cpu", "cpuacct", "/sys/fs/cgroup/cpuacct"),
        ("/tmp/web", "cpuacct", None),
    ],
)
def test_a_v1_group_is_located_in_another_controllers_hierarchy(
    path: str, controller: str, expected: str | None
) -> None:
    found = locate_in_hierarchy(parse_cgroup_mounts(MOUNTINFO), PurePosixPath(path), controller)
    assert found == (None if expected is None else PurePosixPath(expected))


def test_only_established_connections_on_the_port_count() -> None:
    pairs = [
        (80, "ESTABLISHED"),
        (80, "TIME_WAIT"),
        (80, "LISTEN"),
        (8080, "ESTABLISHED"),
        (80, "ESTABLISHED"),
    ]
    assert count_established(pairs, 80) == 2


SNMP = """\
Ip: Forwarding DefaultTTL
Ip: 1 64
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails
Tcp: 1 200 120000 -1 57 1234 3
Udp: InDatagrams NoPorts
Udp: 5 0
"""


def test_passive_opens_is_read_from_snmp() -> None:
    assert parse_passive_opens(SNMP) == 1234
    with pytest.raises(SamplerError):
        parse_passive_opens("Ip: a\nIp: 1\n")


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        (None, (1.0, 5), None),
        ((0.0, 5), (2.0, 15), 5.0),
        ((1.0, 5), (1.0, 9), None),
        ((0.0, 9), (1.0, 5), None),
    ],
)
def test_rate_between_counter_samples(
    previous: tuple[float, int] | None, current: tuple[float, int], expected: float | None
) -> None:
    assert rate(previous, current) == expected
