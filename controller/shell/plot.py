"""`p4lb-plot FILE.jsonl -o out.png`: per-DIP utilisation, weight and new-connection share over
time from a controller record, with "phase" events as vertical markers."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.shell.record import read_events

Series = dict[str, tuple[list[float], list[float]]]


@dataclass(frozen=True)
class PlotData:
    """Per-DIP series (times relative to the first event) and phase markers."""

    utilisation: Series = field(default_factory=dict)
    weight_share: Series = field(default_factory=dict)
    conn_share: Series = field(default_factory=dict)
    phases: tuple[tuple[float, str], ...] = ()

    @property
    def empty(self) -> bool:
        """True when there is nothing to draw."""
        return not (self.utilisation or self.weight_share or self.conn_share)


def _append(series: Series, dip: str, t: float, value: float) -> None:
    times, values = series.setdefault(dip, ([], []))
    times.append(t)
    values.append(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def series_from_events(events: Iterable[Mapping[str, Any]]) -> PlotData:
    """Collect the plotted series from record events (unknown kinds and bad values are skipped)."""
    data = PlotData()
    phases: list[tuple[float, str]] = []
    start: float | None = None
    for event in events:
        t = _number(event.get("t"))
        if t is None:
            continue
        start = t if start is None else start
        t -= start
        kind = event.get("kind")
        if kind == "load":
            cpu = _number(event.get("cpu"))
            if cpu is not None and isinstance(event.get("dip"), str):
                _append(data.utilisation, event["dip"], t, cpu)
        elif kind in ("weights", "share"):
            key = "weights" if kind == "weights" else "shares"
            values = event.get(key)
            if not isinstance(values, Mapping):
                continue
            numbers = {str(d): v for d, raw in values.items() if (v := _number(raw)) is not None}
            total = sum(numbers.values())
            target = data.weight_share if kind == "weights" else data.conn_share
            for dip, value in sorted(numbers.items()):
                # weights are integers summing to 2**bits; shares already sum to 1
                _append(target, dip, t, value / total if kind == "weights" and total else value)
        elif kind == "phase":
            phases.append((t, str(event.get("name", ""))))
    return PlotData(data.utilisation, data.weight_share, data.conn_share, tuple(phases))


SMOOTHING_WINDOW = 5.0
"""Seconds of utilisation averaged into the drawn line (the raw samples are drawn faintly)."""


def smoothed(times: list[float], values: list[float], window: float) -> list[float]:
    """The mean of each sample and those of the `window` seconds before it."""
    out: list[float] = []
    first = 0
    total = 0.0
    for k, (t, v) in enumerate(zip(times, values, strict=True)):
        total += v
        while times[first] < t - window:
            total -= values[first]
            first += 1
        out.append(total / (k - first + 1))
    return out


def phase_spans(
    phases: tuple[tuple[float, str], ...], end: float
) -> list[tuple[float, float, str]]:
    """(start, end, name) of each phase: it lasts until the next one, the last until `end`."""
    spans = []
    for n, (t, name) in enumerate(phases):
        stop = phases[n + 1][0] if n + 1 < len(phases) else end
        spans.append((t, max(t, stop), name))
    return spans


def render(
    data: PlotData,
    out: str | Path,
    title: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> None:
    """Draw the three panels to a PNG file; `labels` names DIPs in the legend (e.g. with their
    capacity)."""
    import matplotlib  # noqa: PLC0415 - heavy; only the plot command needs it

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # noqa: PLC0415

    panels = (
        (data.utilisation, "utilisation (CPU 0-1)"),
        (data.weight_share, "weight share"),
        (data.conn_share, "new-connection share"),
    )
    every = [t for series, _ in panels for times, _ in series.values() for t in times]
    end = max(every, default=0.0)
    figure, axes = plt.subplots(len(panels), 1, sharex=True, figsize=(11, 8))
    colours: dict[str, Any] = {}
    palette = plt.get_cmap("tab10")
    shades = ("#e8eef7", "#f5ede0")
    for axis, (series, label) in zip(axes, panels, strict=True):
        for n, (start, stop, name) in enumerate(phase_spans(data.phases, end)):
            axis.axvspan(start, stop, color=shades[n % len(shades)], zorder=0)
            if axis is axes[0]:
                axis.text(
                    (start + stop) / 2,
                    1.02,
                    name,
                    transform=axis.get_xaxis_transform(),
                    ha="center",
                    va="bottom",
                    fontsize=9,
                )
        for dip in sorted(series):
            colour = colours.setdefault(dip, palette(len(colours) % 10))
            times, values = series[dip]
            name = (labels or {}).get(dip, dip)
            if series is data.utilisation:
                axis.step(times, values, where="post", color=colour, alpha=0.2, linewidth=0.8)
                axis.plot(
                    times, smoothed(times, values, SMOOTHING_WINDOW), color=colour, label=name
                )
                continue
            if series is data.weight_share and times and times[-1] < end:
                times, values = [*times, end], [*values, values[-1]]  # it holds until the end
            axis.step(times, values, where="post", label=name, color=colour)
        axis.set_ylabel(label)
        axis.grid(True, alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    if not handles:
        handles, names = axes[1].get_legend_handles_labels()
    if handles:
        figure.legend(handles, names, loc="center right", fontsize=9, frameon=False)
    axes[-1].set_xlabel("time (s)")
    if title:
        figure.suptitle(title)
    figure.tight_layout(rect=(0.0, 0.0, 0.8, 1.0))
    figure.savefig(str(out), dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point of `p4lb-plot`."""
    parser = argparse.ArgumentParser(prog="p4lb-plot", description=__doc__)
    parser.add_argument("record", type=Path, help="JSON-lines record written by --record")
    parser.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--title", help="figure title")
    args = parser.parse_args(argv)
    skipped: list[int] = []
    try:
        data = series_from_events(read_events(args.record, lambda n, _: skipped.append(n)))
    except OSError as exc:
        print(f"p4lb-plot: cannot read {str(args.record)!r}: {exc}", file=sys.stderr)
        return 2
    if skipped:
        first = ", ".join(str(n) for n in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        print(
            f"p4lb-plot: skipped {len(skipped)} malformed line(s) in {str(args.record)!r}"
            f" (line {first})",
            file=sys.stderr,
        )
    if data.empty:
        print(
            f"p4lb-plot: no load, weights or share events in {str(args.record)!r}", file=sys.stderr
        )
        return 1
    try:
        render(data, args.output, args.title)
    except OSError as exc:
        print(f"p4lb-plot: cannot write {str(args.output)!r}: {exc}", file=sys.stderr)
        return 2
    print(f"p4lb-plot: wrote {args.output}")
    return 0
