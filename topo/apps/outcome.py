"""Outcomes of the load generator's connections and their JSON summary (no I/O).

Every connection ends in exactly one outcome: ``ok``; ``failed`` (could not connect, or an
answer did not come in time); ``reset`` (the peer reset or closed it mid-request);
``misrouted`` (answers came from two servers, or from one not expected); ``corrupt`` (an
answer did not match the request byte for byte). All but ``ok`` count as broken.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

OUTCOMES = ("ok", "failed", "reset", "misrouted", "corrupt")
"""Every outcome a connection can have."""
BROKEN = frozenset(OUTCOMES[1:])
"""Outcomes that count as a broken connection."""


@dataclass(frozen=True)
class ConnectionRecord:
    """What happened to one connection (or one UDP flow)."""

    start: float
    outcome: str
    server: str | None
    latency: float
    requests: int
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        """This record as a JSON-able dict (one line of the client's ``--log``)."""
        return {
            "t": round(self.start, 6),
            "outcome": self.outcome,
            "server": self.server,
            "latency": round(self.latency, 6),
            "requests": self.requests,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConnectionRecord:
        """Inverse of :meth:`to_json`."""
        outcome = str(data["outcome"])
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        server = data.get("server")
        return cls(
            start=float(data["t"]),
            outcome=outcome,
            server=None if server is None else str(server),
            latency=float(data["latency"]),
            requests=int(data["requests"]),
            error=str(data.get("error", "")),
        )


def route_outcome(servers: Sequence[str], expected: frozenset[str] | None) -> str:
    """``ok`` or ``misrouted`` for a connection whose answers came from ``servers``."""
    if len(set(servers)) > 1:
        return "misrouted"
    if expected is not None and any(s not in expected for s in servers):
        return "misrouted"
    return "ok"


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(q * (len(sorted_values) - 1) + 0.5))
    return sorted_values[index]


def shares(records: Iterable[ConnectionRecord]) -> dict[str, float]:
    """Fraction of successful connections answered by each server (sorted by name)."""
    counts = Counter(r.server for r in records if r.outcome == "ok" and r.server is not None)
    total = sum(counts.values())
    return {name: counts[name] / total for name in sorted(counts)} if total else {}


def summarise(records: Sequence[ConnectionRecord], duration: float) -> dict[str, Any]:
    """The load generator's JSON report over ``records``."""
    counts = Counter(r.outcome for r in records)
    by_server = Counter(r.server for r in records if r.outcome == "ok" and r.server is not None)
    latencies = sorted(r.latency for r in records if r.outcome == "ok")
    report: dict[str, Any] = {"started": len(records), "made": counts["ok"]}
    for outcome in OUTCOMES[1:]:
        report[outcome] = counts[outcome]
    report["broken"] = sum(counts[o] for o in BROKEN)
    report["by_server"] = {name: by_server[name] for name in sorted(by_server)}
    report["share"] = shares(records)
    report["latency_ms"] = {
        "p50": round(1000 * _percentile(latencies, 0.5), 3),
        "p99": round(1000 * _percentile(latencies, 0.99), 3),
        "max": round(1000 * (latencies[-1] if latencies else 0.0), 3),
    }
    report["duration_s"] = round(duration, 3)
    return report
