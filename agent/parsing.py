"""Pure parsing and arithmetic behind the agent's samplers (no I/O: text in, numbers out).

Every CPU scope is reduced to a `CpuSample`: a monotonically growing busy time (CPU-seconds), a
clock, and how many CPUs the scope may use per second of that clock. Utilisation between two
samples is Δbusy ÷ (Δclock x cpus of the later sample), clamped to [0, 1]:

* system — busy and total CPU-seconds of all CPUs (/proc/stat through psutil);
* pid:N — CPU time of the process tree ÷ (wall time x CPUs in the root's affinity mask);
* cgroup:PATH — the group's CPU usage ÷ (wall time x quota ÷ period), or x the CPUs available when
  the group has no quota; so a busy loop held to a 20 % quota reads ≈ 1.0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath


class SamplerError(Exception):
    """A scope cannot be sampled (process gone, cgroup missing, unreadable counter)."""


@dataclass(frozen=True, slots=True)
class CpuSample:
    """Cumulative busy CPU-seconds at a clock reading, and the CPUs the scope may use now."""

    busy: float
    clock: float
    cpus: float = 1.0


def utilisation(previous: CpuSample, current: CpuSample) -> float:
    """Fraction 0-1 of the available CPU the scope used between two samples (0 if no time)."""
    span = (current.clock - previous.clock) * current.cpus
    if not span > 0:
        return 0.0
    value = (current.busy - previous.busy) / span
    if not math.isfinite(value):
        return 0.0
    return min(1.0, max(0.0, value))


# Linux /proc/stat fields; guest time is already counted in user/nice, so it is left out.
_IDLE_FIELDS = ("idle", "iowait", "steal")
_TOTAL_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def system_sample(times: Mapping[str, float]) -> CpuSample:
    """Busy CPU-seconds against total CPU-seconds (the clock) from psutil.cpu_times() fields."""
    total = sum(times.get(name, 0.0) for name in _TOTAL_FIELDS)
    idle = sum(times.get(name, 0.0) for name in _IDLE_FIELDS)
    return CpuSample(busy=total - idle, clock=total, cpus=1.0)


def parse_cfs_quota(quota_us: str, period_us: str) -> float | None:
    """CPUs allowed by cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us; None when unlimited."""
    try:
        quota, period = int(quota_us.strip()), int(period_us.strip())
    except ValueError:
        raise SamplerError(f"bad CFS quota/period {quota_us!r}/{period_us!r}") from None
    if quota < 0:
        return None
    if period <= 0 or quota == 0:
        raise SamplerError(f"bad CFS quota/period {quota_us!r}/{period_us!r}")
    return quota / period


def parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 cpu.max line ("20000 100000"); None for "max" (unlimited)."""
    parts = text.split()
    if not parts or len(parts) > 2:
        raise SamplerError(f"bad cpu.max {text!r}")
    if parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) == 2 else 100_000
    except ValueError:
        raise SamplerError(f"bad cpu.max {text!r}") from None
    if quota <= 0 or period <= 0:
        raise SamplerError(f"bad cpu.max {text!r}")
    return quota / period


def parse_cpuacct_usage(text: str) -> float:
    """CPU-seconds from cgroup v1 cpuacct.usage (nanoseconds)."""
    try:
        value = int(text.strip())
    except ValueError:
        raise SamplerError(f"bad cpuacct.usage {text!r}") from None
    return value / 1e9


def parse_cpu_stat_usage(text: str) -> float:
    """CPU-seconds from the usage_usec line of a cgroup v2 cpu.stat."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            try:
                return int(value) / 1e6
            except ValueError:
                break
    raise SamplerError(f"no usage_usec in cpu.stat {text[:80]!r}")


def parse_cpu_list(text: str) -> int:
    """Number of CPUs in a list such as "0-3,8,10-11" (cpuset.cpus.effective)."""
    count = 0
    for part in text.strip().split(","):
        if not part:
            continue
        low, dash, high = part.partition("-")
        try:
            count += int(high) - int(low) + 1 if dash else 1
        except ValueError:
            raise SamplerError(f"bad CPU list {text!r}") from None
    if count <= 0:
        raise SamplerError(f"empty CPU list {text!r}")
    return count


@dataclass(frozen=True, slots=True)
class CgroupMount:
    """One cgroup hierarchy mount: its mount point and controllers (v2: version 2, no names)."""

    mount_point: PurePosixPath
    version: int
    controllers: frozenset[str]


def parse_cgroup_mounts(mountinfo: str) -> list[CgroupMount]:
    """Cgroup v1 and v2 hierarchies from /proc/self/mountinfo text."""
    mounts: list[CgroupMount] = []
    for line in mountinfo.splitlines():
        head, sep, tail = line.partition(" - ")
        fields, tail_fields = head.split(), tail.split()
        if not sep or len(fields) < 5 or len(tail_fields) < 3:
            continue
        fstype, options = tail_fields[0], tail_fields[2]
        point = PurePosixPath(fields[4].replace("\\040", " "))
        if fstype == "cgroup2":
            mounts.append(CgroupMount(point, 2, frozenset()))
        elif fstype == "cgroup":
            names = frozenset(o for o in options.split(",") if o in ("cpu", "cpuacct", "cpuset"))
            mounts.append(CgroupMount(point, 1, names))
    return mounts


def locate_in_hierarchy(
    mounts: Iterable[CgroupMount], path: PurePosixPath, controller: str
) -> PurePosixPath | None:
    """Where cgroup `path` (a directory under any v1 mount) lives in `controller`'s hierarchy."""
    mounts = list(mounts)
    relative: PurePosixPath | None = None
    best = -1
    for mount in mounts:
        if mount.version == 1 and path.is_relative_to(mount.mount_point):
            depth = len(mount.mount_point.parts)
            if depth > best:
                best, relative = depth, path.relative_to(mount.mount_point)
    if relative is None:
        return None
    for mount in mounts:
        if mount.version == 1 and controller in mount.controllers:
            return mount.mount_point / relative
    return None


def count_established(
    connections: Iterable[tuple[int, str]], port: int, established: str = "ESTABLISHED"
) -> int:
    """Established connections whose local port is `port`, from (local port, status) pairs."""
    return sum(
        1 for local_port, status in connections if local_port == port and status == established
    )


def parse_passive_opens(snmp: str) -> int:
    """The Tcp PassiveOpens counter from /proc/net/snmp text (accepted connections, this netns)."""
    header: list[str] | None = None
    for line in snmp.splitlines():
        if not line.startswith("Tcp:"):
            continue
        words = line.split()[1:]
        if header is None:
            header = words
            continue
        if "PassiveOpens" in header and len(words) == len(header):
            try:
                return int(words[header.index("PassiveOpens")])
            except ValueError:
                break
    raise SamplerError("no Tcp PassiveOpens in /proc/net/snmp")


def rate(previous: tuple[float, int] | None, current: tuple[float, int]) -> float | None:
    """Events per second between two (time, counter) samples; None without a usable interval."""
    if previous is None:
        return None
    elapsed, delta = current[0] - previous[0], current[1] - previous[1]
    if not elapsed > 0 or delta < 0:
        return None
    return delta / elapsed
