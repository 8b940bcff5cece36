"""``p4lb-demo``: unequal servers behind one VIP, equal weights first, then a load-aware policy.

As root with Mininet it runs the real network (``p4lb-switch``, cgroup CPU quotas, agents, the
controller, two load generators); otherwise, or with ``--simulate``, the same scenario runs in
one process against the in-process model with simulated servers on a simulated clock. Either
way it writes ``demo-out/`` (or ``--out``): ``timeseries.jsonl`` (controller record with phase
markers), ``loads.png`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import FrameType
from typing import Any

from topo.demo_plan import DemoPlan, PlanError, make_demo_plan
from topo.mininet_net import BIN, NetworkError, unavailable_reason
from topo.summary import RunData, build_summary

SHARE_BIN = 5.0
"""Seconds per point of the new-connection share series added from the clients' logs."""


def _say(message: str) -> None:
    print(f"p4lb-demo: {message}", flush=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def real_mode_problem() -> str | None:
    """Why the real network cannot run here (None when it can)."""
    reason = unavailable_reason()
    if reason is not None:
        return reason
    for script in ("p4lb-switch", "p4lb-controller", "p4lb-agent"):
        if not (BIN / script).exists():
            return f"{BIN / script} is missing (run `make setup`)"
    return None


def enrich_events(data: RunData) -> list[dict[str, Any]]:
    """The run's events, plus utilisation and share series when the controller gave none."""
    events = list(data.events)
    kinds = {e.get("kind") for e in events}
    if "load" not in kinds:
        events += [
            {"t": s.t, "kind": "load", "dip": s.dip, "cpu": s.utilisation, "state": "up"}
            for s in data.samples
        ]
    if "share" not in kinds and data.records:
        bins: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for record in data.records:
            if record.outcome == "ok" and record.server is not None:
                bins[int(record.start // SHARE_BIN)][record.server] += 1
        for index in sorted(bins):
            total = sum(bins[index].values())
            shares = {d: n / total for d, n in sorted(bins[index].items())}
            events.append({"t": index * SHARE_BIN, "kind": "share", "pool": 0, "shares": shares})
    if not any(e.get("kind") == "phase" and e.get("demo") for e in events):
        events += [
            {"t": p.start, "kind": "phase", "name": p.policy, "demo": True} for p in data.phases
        ]
    events.sort(key=lambda e: float(e.get("t", 0.0)))
    return events


def write_outputs(out: Path, plan: DemoPlan, data: RunData, mode: str) -> dict[str, Any]:
    """Write timeseries.jsonl, loads.png and summary.json; return the summary."""
    from controller.shell.plot import render, series_from_events  # noqa: PLC0415 (matplotlib)

    out.mkdir(parents=True, exist_ok=True)
    events = enrich_events(data)
    with (out / "timeseries.jsonl").open("w") as series:
        for event in events:
            series.write(json.dumps(event) + "\n")
    capacities = dict(zip(data.dips, plan.capacities, strict=True))
    summary = build_summary(
        mode=mode,
        policy=plan.policy,
        phases=data.phases,
        records=data.records,
        samples=data.samples,
        capacities=capacities,
        settle_before=plan.settle_before,
        settle_after=plan.settle_after,
        events=events,
    )
    summary["offered_rate"] = plan.rate
    summary["work_ms"] = plan.work_ms
    # the plot marks only the demo's policy switch, not the controller's own start-up phases
    plotted = [e for e in events if e.get("kind") != "phase" or e.get("demo")]
    render(
        series_from_events(plotted),
        out / "loads.png",
        title=f"p4lb demo ({mode}): equal, then {plan.policy}",
        labels={dip: f"{dip} ({cap:.0%} of a core)" for dip, cap in capacities.items()},
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of p4lb-demo."""
    parser = argparse.ArgumentParser(prog="p4lb-demo", description=__doc__)
    parser.add_argument("--policy", default="ratio", help="policy after the equal phase")
    parser.add_argument("--servers", type=int, default=4, help="number of servers (2..16)")
    parser.add_argument("--duration", type=float, default=150.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=None, help="new conn/s (default: derived)")
    parser.add_argument("--work-ms", type=float, default=5.0, help="server CPU ms per request")
    parser.add_argument("--requests", type=int, default=4, help="requests per connection")
    parser.add_argument("--lifetime", type=float, default=2.0, help="seconds a connection lives")
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output directory")
    parser.add_argument(
        "--simulate", action="store_true", help="in-process simulation (automatic without root)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the demo; exit 0 when it ran (the summary says how well), 1 when it could not."""
    args = build_parser().parse_args(argv)
    try:
        plan = make_demo_plan(
            args.policy,
            args.servers,
            args.duration,
            work_ms=args.work_ms,
            rate=args.rate,
            requests=args.requests,
            lifetime=args.lifetime,
        )
    except PlanError as exc:
        print(f"p4lb-demo: {exc}", file=sys.stderr)
        return 2
    out = args.out.resolve()
    problem = None if args.simulate else real_mode_problem()
    mode = "simulate" if args.simulate or problem else "mininet"
    if problem:
        _say(f"real network unavailable ({problem}): running the simulation instead")
    started = time.monotonic()
    # SIGTERM unwinds like Ctrl-C, so every namespace, interface, cgroup and process goes
    signal.signal(signal.SIGTERM, _terminate)
    _say(
        f"{mode}: {len(plan.capacities)} servers with CPU "
        f"{', '.join(f'{c:.0%}' for c in plan.capacities)}; {plan.rate:g} conn/s; "
        f"equal for {plan.equal_duration:g}s then {plan.policy!r}; {plan.duration:g}s in all"
    )
    workdir = out / "run"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    try:
        if mode == "simulate":
            from topo.demo_sim import run_simulated  # noqa: PLC0415

            data = run_simulated(plan, workdir, _say)
        else:
            from topo.demo_real import run_real  # noqa: PLC0415

            data = run_real(plan, workdir, _say)
    except NetworkError as exc:
        print(f"p4lb-demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("p4lb-demo: interrupted; cleaned up", file=sys.stderr)
        return 130
    summary = write_outputs(out, plan, data, mode)
    _say(f"done in {time.monotonic() - started:.0f}s; wrote {out}/summary.json and loads.png")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
