"""The agent's I/O side of sampling: CPU scopes and connections (psutil, /proc), service probe.

The arithmetic lives in `agent.parsing`; these classes only read counters. Each CPU scope's
`sample()` returns a cumulative `CpuSample`; `agent.parsing.utilisation` turns two into 0-1.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Protocol

import psutil

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
    system_sample,
)
from agent.wire import parse_decimal


class CpuScope(Protocol):
    """Something whose CPU use can be sampled cumulatively."""

    name: str

    def sample(self) -> CpuSample:
        """Cumulative CPU use of the scope now; raises SamplerError."""
        ...


class SystemScope:
    """All CPUs of the machine (in Mininet every host sees the same machine-wide counters)."""

    name = "system"

    def sample(self) -> CpuSample:
        """Busy and total CPU-seconds of all CPUs."""
        return system_sample(psutil.cpu_times()._asdict())


class ProcessTreeScope:
    """A process and all its descendants, against the CPUs its affinity mask allows."""

    def __init__(self, pid: int, clock: Callable[[], float] = time.monotonic) -> None:
        try:
            self._root = psutil.Process(pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied) as exc:
            raise SamplerError(f"cannot watch pid {pid!r}: {exc}") from None
        self.name = f"pid:{pid}"
        self._clock = clock

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self._root, *self._root.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied) as exc:
            raise SamplerError(f"{self.name} is gone: {exc}") from None

    def sample(self) -> CpuSample:
        """CPU-seconds of the tree (reaped children included) and wall x affinity CPUs."""
        now = self._clock()
        tree = self._tree()
        try:
            cpus = len(self._root.cpu_affinity() or []) or (psutil.cpu_count() or 1)
        except (psutil.NoSuchProcess, psutil.AccessDenied) as exc:
            raise SamplerError(f"{self.name} is gone: {exc}") from None
        busy = 0.0
        for process in tree:
            try:
                t = process.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue  # exited between listing and reading; its parent reaps it into children_*
            busy += t.user + t.system + t.children_user + t.children_system
        return CpuSample(busy=busy, clock=now, cpus=float(cpus))


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise SamplerError(f"cannot read {str(path)!r}: {exc.strerror}") from None


class CgroupScope:
    """A cgroup (v1 cpu+cpuacct or v2), against its CPU quota (or its CPUs when unlimited).

    `path` is a directory under a cgroup mount, or a cgroup path such as "/web" that is looked up
    under the v2 mount or the v1 cpu hierarchy. On v1 the usage comes from the cpuacct hierarchy,
    which may be mounted apart from cpu (as on this project's CI machine).
    """

    def __init__(
        self,
        path: str,
        clock: Callable[[], float] = time.monotonic,
        mountinfo: str | None = None,
    ) -> None:
        self.name = f"cgroup:{path}"
        self._clock = clock
        if mountinfo is None:
            mountinfo = _read(Path("/proc/self/mountinfo"))
        mounts = parse_cgroup_mounts(mountinfo)
        directory = Path(path)
        if not (directory.is_absolute() and (directory / "cgroup.procs").exists()):
            directory = self._resolve(mounts, PurePosixPath("/") / path)
        self.directory = directory
        self.version = (
            2
            if (directory / "cpu.max").exists() or (directory / "cgroup.controllers").exists()
            else 1
        )
        if self.version == 2:
            self._usage_file = directory / "cpu.stat"
            self._quota_dir = directory
        else:
            acct = locate_in_hierarchy(mounts, PurePosixPath(directory), "cpuacct")
            cpu = locate_in_hierarchy(mounts, PurePosixPath(directory), "cpu")
            self._usage_file = Path(acct or directory) / "cpuacct.usage"
            self._quota_dir = Path(cpu or directory)
        self.sample()  # fail now, not at the first report

    @staticmethod
    def _resolve(mounts: list[CgroupMount], relative: PurePosixPath) -> Path:
        """Find a cgroup path: v2 with a cpu controller, else v1 cpu, else v2 (usage only)."""
        v2 = [Path(m.mount_point) / relative.relative_to("/") for m in mounts if m.version == 2]
        v1 = [
            Path(m.mount_point) / relative.relative_to("/")
            for m in mounts
            if m.version == 1 and "cpu" in m.controllers
        ]
        ranked = [d for d in v2 if (d / "cpu.max").exists()]
        ranked += [d for d in v1 if (d / "cpu.cfs_quota_us").exists()]
        ranked += [d for d in v2 if (d / "cpu.stat").exists()]
        for directory in ranked:
            if (directory / "cgroup.procs").exists():
                return directory
        raise SamplerError(f"no cgroup with CPU accounting at {str(relative)!r}")

    def quota(self) -> float:
        """CPUs the group may use: its quota, else the CPUs of its cpuset, else all CPUs."""
        if self.version == 2:
            max_file = self._quota_dir / "cpu.max"  # absent without the cpu controller (or at root)
            limit = parse_cpu_max(_read(max_file)) if max_file.exists() else None
            cpus_file = self._quota_dir / "cpuset.cpus.effective"
        else:
            limit = parse_cfs_quota(
                _read(self._quota_dir / "cpu.cfs_quota_us"),
                _read(self._quota_dir / "cpu.cfs_period_us"),
            )
            cpus_file = self._quota_dir / "cpuset.effective_cpus"
        cpus = float(
            parse_cpu_list(_read(cpus_file)) if cpus_file.exists() else os.cpu_count() or 1
        )
        return cpus if limit is None else min(limit, cpus)

    def sample(self) -> CpuSample:
        """The group's CPU-seconds and wall x quota (re-read each time: the quota may change)."""
        now = self._clock()
        text = _read(self._usage_file)
        usage = parse_cpu_stat_usage(text) if self.version == 2 else parse_cpuacct_usage(text)
        return CpuSample(busy=usage, clock=now, cpus=self.quota())


def make_scope(spec: str) -> CpuScope:
    """Build a scope from "system", "pid:N" or "cgroup:PATH"; raises SamplerError."""
    kind, _, argument = spec.partition(":")
    if spec == "system":
        return SystemScope()
    if kind == "pid":
        try:
            return ProcessTreeScope(parse_decimal(argument, 1, 2**31 - 1))
        except ValueError:
            pass
    if kind == "cgroup" and argument:
        return CgroupScope(argument)
    raise SamplerError(f"cpu scope must be system, pid:N or cgroup:PATH, got {spec!r}")


def established_connections(port: int) -> int:
    """Established TCP connections (v4 and v6) on local port `port` in this network namespace."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError) as exc:
        raise SamplerError(f"cannot list TCP connections: {exc}") from None
    pairs = ((c.laddr.port, c.status) for c in connections if c.laddr)
    return count_established(pairs, port, psutil.CONN_ESTABLISHED)


def passive_opens() -> int:
    """Connections accepted so far in this network namespace (Tcp PassiveOpens, all ports)."""
    return parse_passive_opens(_read(Path("/proc/net/snmp")))


def probe_service(ip: str, port: int, timeout: float) -> bool:
    """Whether the service accepts a TCP connection at ip:port within `timeout` seconds."""
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False
