"""The demo on a real network: Mininet hosts, ``p4lb-switch``, real agents and controller.

Servers run in CPU-quota cgroups (their capacities), agents report those cgroups' load over a
Unix socket, the controller starts with the ``equal`` policy and is switched to the chosen policy
part-way through its admin API (``PUT /v1/policy`` on a private Unix socket, as ``p4lb-ctl
policy`` does: no restart, no slot reset); two clients offer a steady load
through the VIP the whole time. Utilisation for the summary is measured from the cgroups' own
CPU counters (ground truth, independent of the agents).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from topo.apps.outcome import ConnectionRecord
from topo.demo_plan import DemoPlan
from topo.lab import Lab, LabOptions, read_jsonl
from topo.mininet_net import NetworkError
from topo.services import ControllerKnobs
from topo.summary import Phase, RunData, UtilSample


def read_records(paths: list[Path], *, strict: bool = True) -> list[ConnectionRecord]:
    """Connection records from the clients' ``--log`` files.

    A line still being written is never read (``read_jsonl``); a complete line that is not a
    record means a client bug and, when ``strict``, fails the run rather than shrinking the
    connection and broken counts unseen. Progress reports read with ``strict=False``.
    """
    records: list[ConnectionRecord] = []
    for path in paths:
        for line in read_jsonl(path):
            try:
                records.append(ConnectionRecord.from_json(line))
            except (ValueError, KeyError) as exc:
                if strict:
                    raise NetworkError(
                        f"{path}: not a connection record: {line!r} ({exc})"
                    ) from exc
    return records


class _Sampler:
    """Utilisation of each server's cgroup since the previous sample."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.last = {s.dip: self._read(s.host.name) for s in lab.servers}

    def _read(self, host: str) -> tuple[float, float]:
        return time.time(), self.lab.groups[host].usage_seconds()

    def sample(self) -> list[UtilSample]:
        out = []
        for server in self.lab.servers:
            now, used = self._read(server.host.name)
            then, before = self.last[server.dip]
            self.last[server.dip] = (now, used)
            if now > then:
                busy = (used - before) / (server.cpu * (now - then))
                out.append(UtilSample(now, server.dip, busy))
        return out


def switch_policy(admin: Path, plan: DemoPlan) -> None:
    """`PUT /v1/policy` on the controller's private admin socket (NetworkError if refused)."""
    from controller.shell.ctl import AdminClient, CtlError  # noqa: PLC0415

    body = {"name": plan.policy, "params": dict(plan.policy_params)}
    try:
        AdminClient(f"unix:{admin}").call("PUT", "/v1/policy", body)
    except CtlError as exc:
        raise NetworkError(f"cannot switch the controller's policy: {exc}") from None


def run_real(plan: DemoPlan, workdir: Path, say: Callable[[str], None]) -> RunData:
    """Run the demo on Mininet; returns what it observed (clean-up is complete on return)."""
    # A short path (AF_UNIX paths are limited to ~100 bytes), private to this run.
    admin = Path(tempfile.gettempdir()) / f"p4lb-demo-admin-{os.getpid()}.sock"
    options = LabOptions(
        capacities=plan.capacities,
        work_ms=plan.work_ms,
        knobs=dataclasses.replace(ControllerKnobs(), policy="equal", admin_listen=str(admin)),
    )
    samples: list[UtilSample] = []
    phases: list[Phase] = []
    say("starting the network, servers, agents and the controller (policy 'equal')")
    try:
        with Lab(workdir, options) as lab:
            sampler = _Sampler(lab)
            rate = plan.rate / len(lab.plan.clients)
            clients = [
                lab.client(
                    client.name,
                    rate,
                    plan.duration,
                    name=client.name,
                    extra=[
                        *("--requests", str(plan.requests), "--lifetime", str(plan.lifetime)),
                        *("--timeout", "60", "--seed", str(i + 1)),
                    ],
                )
                for i, client in enumerate(lab.plan.clients)
            ]
            start = time.time()
            switch_at, end = start + plan.equal_duration, start + plan.duration
            phases.append(Phase("equal", "equal", start, switch_at))
            say(f"offering {plan.rate:g} conn/s for {plan.duration:g}s; equal weights first")
            next_report = start + plan.progress_every
            while any(c.proc.poll() is None for c in clients):
                time.sleep(1.0)
                now = time.time()
                samples += sampler.sample()
                lab.check_controller()
                if len(phases) == 1 and now >= switch_at:
                    switch_policy(admin, plan)
                    phases.append(Phase("policy", plan.policy, now, end))
                    say(f"[{now - start:5.0f}s] policy {plan.policy!r} set live (PUT /v1/policy)")
                if now >= next_report:
                    next_report += plan.progress_every
                    records = read_records([c.log for c in clients], strict=False)
                    say(_progress(now - start, phases[-1].policy, records, samples))
                if now > end + 120:
                    raise NetworkError("clients did not finish 120 s after the load ended")
            events: list[dict[str, Any]] = [
                {"t": phase.start, "kind": "phase", "name": phase.policy, "demo": True}
                for phase in phases
            ]
            for path in lab.records:
                events += read_jsonl(path)
            records = read_records([c.log for c in clients])
            dips = tuple(lab.dips)
    finally:
        for leftover in (admin, admin.with_name(admin.name + ".lock")):
            leftover.unlink(missing_ok=True)
    events.sort(key=lambda e: float(e.get("t", 0.0)))
    return RunData(
        dips=dips,
        phases=tuple(phases),
        records=tuple(records),
        samples=tuple(samples),
        events=tuple(events),
    )


def _progress(
    elapsed: float, policy: str, records: list[ConnectionRecord], samples: list[UtilSample]
) -> str:
    broken = sum(1 for r in records if r.outcome != "ok")
    latest: dict[str, float] = {}
    for s in samples[-40:]:
        latest[s.dip] = s.utilisation
    util = " ".join(f"{dip.split(':')[0]}={u:.2f}" for dip, u in sorted(latest.items()))
    return f"[{elapsed:5.0f}s] {policy:<8} conns {len(records):6d} broken {broken} util {util}"
