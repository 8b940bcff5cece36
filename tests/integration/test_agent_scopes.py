"""The agent's CPU scopes against real processes: system, pid: (process tree), cgroup: (quota)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from agent.parsing import SamplerError, utilisation
from agent.samplers import CgroupScope, CpuScope, ProcessTreeScope, SystemScope, make_scope

BUSY = "while True: pass"
# A parent that starts a busy child and waits for it: the busy work is not in the root process.
PARENT_OF_BUSY = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BUSY!r}])"
IDLE = "import sys; sys.stdin.read()"


def _wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.02)


def _spawn(code: str, **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, **kwargs)  # type: ignore[call-overload, no-any-return]


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        for child in (
            psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
        ):
            child.kill()
        proc.kill()
        proc.wait()


def _measure(scope: CpuScope, enough: Callable[[], bool]) -> float:
    """Utilisation of `scope` over a window that lasts until `enough()` holds."""
    first = scope.sample()
    _wait_until(enough)
    return utilisation(first, scope.sample())


def _measure_against_truth(
    scope: CpuScope, pid: int, cpus: float, cpu_seconds: float
) -> tuple[float, float]:
    """The scope's utilisation over a window in which the tree of `pid` uses `cpu_seconds`, and
    the truth over the same window: the tree's CPU-seconds (psutil) / (wall x `cpus`), at most 1
    as a utilisation is (a quota's period edges let a loop a few % over). On a busy machine both
    fall below 1 together, so the comparison holds however loaded it is."""
    started, start = time.monotonic(), _cpu_seconds(pid)
    reading = _measure(scope, lambda: _cpu_seconds(pid) > start + cpu_seconds)
    truth = (_cpu_seconds(pid) - start) / ((time.monotonic() - started) * cpus)
    return reading, min(1.0, truth)


def _cpu_seconds(pid: int) -> float:
    total = 0.0
    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


def test_pid_scope_follows_a_busy_child_process(processes: list[subprocess.Popen[bytes]]) -> None:
    # One allowed CPU, inherited by the child: the busy grandchild can use all of it.
    parent = _spawn(PARENT_OF_BUSY, preexec_fn=lambda: os.sched_setaffinity(0, {0}))
    processes.append(parent)
    _wait_until(lambda: bool(psutil.Process(parent.pid).children()))
    reading, truth = _measure_against_truth(ProcessTreeScope(parent.pid), parent.pid, 1, 0.4)
    assert reading == pytest.approx(truth, rel=0.2)  # ≈ 1.0 on an idle machine; the root: 0


def test_pid_scope_reads_near_zero_for_an_idle_tree(
    processes: list[subprocess.Popen[bytes]],
) -> None:
    idle = _spawn(IDLE)
    processes.append(idle)
    scope = ProcessTreeScope(idle.pid)
    deadline = time.monotonic() + 0.3
    assert _measure(scope, lambda: time.monotonic() > deadline) < 0.1


def test_pid_scope_of_a_missing_process_is_a_sampler_error() -> None:
    proc = _spawn("pass")
    proc.wait()
    with pytest.raises(SamplerError):
        ProcessTreeScope(proc.pid).sample()


def test_system_scope_reads_the_whole_machine(processes: list[subprocess.Popen[bytes]]) -> None:
    cpus = psutil.cpu_count() or 1
    for cpu in range(cpus):
        processes.append(_spawn(BUSY, preexec_fn=lambda c=cpu: os.sched_setaffinity(0, {c})))
    starts = [_cpu_seconds(p.pid) for p in processes]

    def all_busy() -> bool:
        return all(_cpu_seconds(p.pid) > s + 0.3 for p, s in zip(processes, starts, strict=True))

    assert _measure(SystemScope(), all_busy) > 0.6  # every CPU busy: near 1.0


@pytest.mark.parametrize("spec", ["bogus", "pid:x", "cgroup:", "cgroup:/no-such-group-p4lb"])
def test_bad_scope_specs_are_rejected(spec: str) -> None:
    with pytest.raises(SamplerError):
        make_scope(spec)


CPU_V1 = Path("/sys/fs/cgroup/cpu")
CPUACCT_V1 = Path("/sys/fs/cgroup/cpuacct")


def _cgroup_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a cgroup"
    if not (CPU_V1 / "cpu.cfs_quota_us").exists():
        return "no cgroup v1 cpu controller at /sys/fs/cgroup/cpu"
    if not (CPUACCT_V1 / "cpuacct.usage").exists() and not (CPU_V1 / "cpuacct.usage").exists():
        return "no cgroup v1 cpuacct controller"
    return None


@pytest.fixture
def quota_group() -> Iterator[Path]:
    """A temporary v1 cgroup limited to 20 % of one CPU (in cpu and, if apart, cpuacct)."""
    reason = _cgroup_skip_reason()
    if reason:
        pytest.skip(reason)
    name = f"p4lb-test-{uuid.uuid4().hex[:8]}"
    dirs = [CPU_V1 / name]
    if not (CPU_V1 / "cpuacct.usage").exists():
        dirs.append(CPUACCT_V1 / name)
    try:
        for directory in dirs:
            directory.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot create a cgroup: {exc}")
    try:
        (dirs[0] / "cpu.cfs_period_us").write_text("100000")
        (dirs[0] / "cpu.cfs_quota_us").write_text("20000")
        yield dirs[0]
    finally:
        for directory in dirs:
            for pid in (directory / "cgroup.procs").read_text().split():
                with open(directory.parent / "cgroup.procs", "w") as parent:
                    parent.write(pid)
            directory.rmdir()


def _join(group: Path, pid: int) -> None:
    for root in {CPU_V1, CPUACCT_V1}:
        procs = root / group.name / "cgroup.procs"
        if procs.exists():
            procs.write_text(str(pid))


@pytest.mark.parametrize("by_name", [False, True], ids=["directory", "cgroup-path"])
def test_cgroup_scope_reads_one_for_a_busy_loop_held_to_its_quota(
    quota_group: Path, processes: list[subprocess.Popen[bytes]], by_name: bool
) -> None:
    busy = _spawn(BUSY)
    processes.append(busy)
    _join(quota_group, busy.pid)
    scope = CgroupScope("/" + quota_group.name if by_name else str(quota_group))
    assert scope.quota() == pytest.approx(0.2)
    # ≥ 0.25 CPU-s at 20 % is over a second of quota periods. Held to its quota the loop reads
    # ≈ 1.0; on a machine too busy to give it all of its quota, what it did get.
    reading, truth = _measure_against_truth(scope, busy.pid, 0.2, 0.25)
    assert reading == pytest.approx(truth, rel=0.2)


class StepClock:
    """A monotonic clock the test advances."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_cgroup_v2_scope_reads_cpu_stat_against_cpu_max(tmp_path: Path) -> None:
    group = tmp_path / "web"
    group.mkdir()
    (group / "cgroup.procs").write_text("")
    (group / "cpu.max").write_text("50000 100000\n")
    (group / "cpu.stat").write_text("usage_usec 1000000\nuser_usec 1000000\n")
    clock = StepClock()
    mountinfo = f"36 30 0:32 / {tmp_path} rw - cgroup2 cgroup2 rw\n"
    scope = CgroupScope("/web", clock=clock, mountinfo=mountinfo)
    assert scope.directory == group and scope.version == 2 and scope.quota() == 0.5
    first = scope.sample()
    clock.now += 2.0
    (group / "cpu.stat").write_text("usage_usec 1750000\nuser_usec 1750000\n")
    assert utilisation(first, scope.sample()) == pytest.approx(0.75)  # 0.75 s of 2 s x 0.5 CPU
    (group / "cpu.max").write_text("max 100000\n")
    assert scope.quota() == float(os.cpu_count() or 1)


def test_cgroup_v1_scope_finds_usage_in_a_separate_cpuacct_hierarchy(tmp_path: Path) -> None:
    cpu, acct = tmp_path / "cpu" / "web", tmp_path / "cpuacct" / "web"
    for directory in (cpu, acct):
        directory.mkdir(parents=True)
        (directory / "cgroup.procs").write_text("")
    (cpu / "cpu.cfs_quota_us").write_text("20000\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    (acct / "cpuacct.usage").write_text("0\n")
    mountinfo = (
        f"33 30 0:29 / {tmp_path / 'cpu'} rw - cgroup cgroup rw,cpu\n"
        f"34 30 0:30 / {tmp_path / 'cpuacct'} rw - cgroup cgroup rw,cpuacct\n"
    )
    clock = StepClock()
    scope = CgroupScope(str(cpu), clock=clock, mountinfo=mountinfo)
    first = scope.sample()
    clock.now += 1.0
    (acct / "cpuacct.usage").write_text("100000000\n")  # 0.1 CPU-s of a 0.2-CPU quota
    assert utilisation(first, scope.sample()) == pytest.approx(0.5)
