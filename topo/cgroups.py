"""CPU-quota control groups for the demo's servers (cgroup v1 ``cpu``/``cpuacct`` or v2).

On a 2-core machine worker counts alone do not make server capacities differ, so each
server's process tree runs in its own group capped at a fraction of one core. The quota file
contents are a pure function; :func:`parse_layout` reads the mount table text it is given (and,
for cgroup v2 only, the mount's ``cgroup.controllers``); :class:`CpuGroup` does the rest of the
file system work.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PERIOD_US = 100_000
"""CFS period used for quotas (100 ms)."""
MIN_QUOTA_US = 1000
"""The kernel's smallest CFS quota (1 ms per period)."""


class CgroupError(RuntimeError):
    """No usable CPU controller, or a group could not be set up."""


@dataclass(frozen=True)
class CgroupLayout:
    """Where the CPU controllers are mounted."""

    version: int
    cpu: Path
    cpuacct: Path | None


def parse_layout(mounts: str) -> CgroupLayout:
    """Find the CPU controllers in ``/proc/self/mounts`` text (v1 preferred, as used here)."""
    cpu: Path | None = None
    cpuacct: Path | None = None
    unified: Path | None = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        where, kind, options = Path(fields[1]), fields[2], fields[3].split(",")
        if kind == "cgroup":
            if "cpu" in options:
                cpu = where
            if "cpuacct" in options:
                cpuacct = where
        elif kind == "cgroup2" and unified is None:
            unified = where
    if cpu is not None:
        return CgroupLayout(1, cpu, cpuacct)
    controllers = unified / "cgroup.controllers" if unified is not None else None
    if (
        controllers is not None
        and controllers.exists()
        and "cpu" in controllers.read_text().split()
    ):
        return CgroupLayout(2, controllers.parent, None)
    raise CgroupError("no cgroup cpu controller is mounted")


def quota_files(version: int, fraction: float, period_us: int = PERIOD_US) -> dict[str, str]:
    """File name → content that caps a group at ``fraction`` of one core."""
    if not 0 < fraction <= 64:
        raise CgroupError(f"CPU fraction must be in (0, 64], got {fraction!r}")
    quota = max(MIN_QUOTA_US, round(fraction * period_us))
    if version == 1:
        return {"cpu.cfs_period_us": str(period_us), "cpu.cfs_quota_us": str(quota)}
    return {"cpu.max": f"{quota} {period_us}"}


def current_layout() -> CgroupLayout:
    """The running system's layout."""
    return parse_layout(Path("/proc/self/mounts").read_text())


@dataclass(frozen=True)
class CpuGroup:
    """A group capped at ``fraction`` of a core; ``dirs`` are its directories (one per
    hierarchy), ``accounting`` the directory whose usage the agent reads."""

    name: str
    path: str
    fraction: float
    dirs: tuple[Path, ...]
    accounting: Path

    @property
    def agent_scope(self) -> str:
        """The ``p4lb-agent --cpu-scope`` that measures this group."""
        return f"cgroup:{self.path}"

    @property
    def procs_files(self) -> tuple[Path, ...]:
        """``cgroup.procs`` of each hierarchy (write a pid to each to move a process in)."""
        return tuple(d / "cgroup.procs" for d in self.dirs)

    def add(self, pid: int) -> None:
        """Move process ``pid`` (its later children follow) into the group."""
        for procs in self.procs_files:
            procs.write_text(f"{pid}\n")

    def pids(self) -> list[int]:
        """Processes in the group now."""
        found: set[int] = set()
        for procs in self.procs_files:
            with contextlib.suppress(OSError):
                found.update(int(p) for p in procs.read_text().split())
        return sorted(found)

    def usage_seconds(self) -> float:
        """CPU time used by the group so far."""
        acct = self.accounting
        if (acct / "cpuacct.usage").exists():
            return int((acct / "cpuacct.usage").read_text()) / 1e9
        for line in (acct / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
        raise CgroupError(f"no CPU usage counter in {acct!r}")

    def destroy(self) -> None:
        """Kill what is left in the group (processes we started) and remove it."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for d in self.dirs:
            for _ in range(200):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    # tasks take a moment to leave after SIGKILL
                    os.sched_yield()
                    with contextlib.suppress(OSError):
                        for pid in (int(p) for p in (d / "cgroup.procs").read_text().split()):
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                parent = d.parent
                if parent.name.startswith("p4lb-") and not any(
                    child.is_dir() for child in parent.iterdir()
                ):
                    parent.rmdir()


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CgroupError(f"cannot create cgroup {str(path)!r}: {exc}") from exc


def create_cpu_group(
    parent: str, name: str, fraction: float, layout: CgroupLayout | None = None
) -> CpuGroup:
    """Create ``<parent>/<name>`` capped at ``fraction`` of one core (needs root)."""
    layout = layout or current_layout()
    files = quota_files(layout.version, fraction)
    cpu_dir = layout.cpu / parent / name
    _mkdir(cpu_dir)
    dirs = [cpu_dir]
    if layout.version == 2:
        # v2: enable the cpu controller for the children of our parent group
        with contextlib.suppress(OSError):
            (layout.cpu / "cgroup.subtree_control").write_text("+cpu\n")
        with contextlib.suppress(OSError):
            (layout.cpu / parent / "cgroup.subtree_control").write_text("+cpu\n")
    accounting = cpu_dir
    if layout.cpuacct is not None and layout.cpuacct != layout.cpu:
        accounting = layout.cpuacct / parent / name
        _mkdir(accounting)
        dirs.append(accounting)
    try:
        for file_name, content in files.items():
            (cpu_dir / file_name).write_text(content + "\n")
    except OSError as exc:
        raise CgroupError(f"cannot set the quota of {str(cpu_dir)!r}: {exc}") from exc
    return CpuGroup(
        name=name,
        path=f"/{parent}/{name}",
        fraction=fraction,
        dirs=tuple(dirs),
        accounting=accounting,
    )


@contextlib.contextmanager
def cpu_groups(parent: str, quotas: dict[str, float]) -> Iterator[dict[str, CpuGroup]]:
    """Groups ``parent/<name>`` with the given quotas, destroyed on exit even on failure."""
    made: dict[str, CpuGroup] = {}
    try:
        for name, fraction in quotas.items():
            made[name] = create_cpu_group(parent, name, fraction)
        yield made
    finally:
        for group in made.values():
            group.destroy()
