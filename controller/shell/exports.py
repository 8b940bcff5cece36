"""What the controller exports to Prometheus: the help text of every series, and the per-DIP
and per-VIP gauges built from the core's view and the load book.

Every counter is declared (at 0) when the service starts, so a dashboard sees each series from
the first scrape rather than from the first event of its kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller.core.loadbook import DipLoad
from controller.core.view import CoreView
from controller.shell.metrics import Metrics

HELP: Mapping[str, str] = {
    "learn_learned_total": "Connections learned from new_conn digests.",
    "learn_installed_total": "conn_table entries written and acknowledged.",
    "learn_duplicate_digests_total": "new_conn digests for a connection already known.",
    "learn_conflicting_digests_total": "Digests naming another slot or DIP for a known connection "
    "(the first one wins; the entry never changes).",
    "learn_add_failures_total": "conn_table adds the switch refused (retried).",
    "learn_table_full_total": "Times conn_table was full: new connections wait, rollouts hold.",
    "learn_expired_idle_total": "conn_table entries removed after their idle timeout.",
    "learn_expired_teardown_total": "conn_table entries removed after FIN/RST and the linger.",
    "learn_forgotten_pending_total": "Connections forgotten before their entry was written "
    "(silent for an idle timeout).",
    "learn_foreign_adopted_total": "Entries found already on the switch (a previous controller's).",
    "learn_foreign_deleted_total": "Idle entries of a previous controller deleted.",
    "learn_unknown_teardown_total": "Teardown digests for connections this controller never knew.",
    "learn_delete_failures_total": "conn_table deletes given up after retries.",
    "learn_timeout_failures_total": "Idle timeouts the switch refused (then only a teardown "
    "removes the entry).",
    "learn_reinstalled_total": "conn_table entries written again after the switch lost its state.",
    "rollouts_total": "Rollouts committed (the active version changed).",
    "rollouts_aborted_total": "Rollouts aborted by a failed write (the active version kept).",
    "rollout_backpressure_total": "Ticks a due rollout waited (pending installs, quiet period, "
    "full tables): the reason is in rollout_held and the record.",
    "switch_write_failures_total": "Rollout writes the switch refused.",
    "rollout_reclaims_total": "Rounds that freed idle version slots of a full dip_table.",
    "dip_entries_reclaimed_total": "dip_table entries deleted by reclaims.",
    "rollout_reclaim_failures_total": "Reclaims that did not complete.",
    "slots_retired_total": "Idle version slots given a fresh epoch once free to reuse.",
    "dip_table_too_small_total": "Rollouts not tried: the version cannot fit next to the "
    "active one.",
    "dip_table_resyncs_total": "dip_table read back because a write contradicted the shadow.",
    "members_removed_total": "Pool members removed after their drain.",
    "switch_state_lost_total": "Times the switch was found empty and reprogrammed.",
    "unexpected_errors_total": "Bugs caught and logged by the shell (should stay 0).",
    "record_write_failures_total": "Time-series records that could not be written.",
    "dip_cpu": "CPU utilisation (0-1) the DIP's agent reported last.",
    "dip_connections": "Established connections the DIP's agent reported last.",
    "dip_weight": "Weight the policy asks for (of 2^weight_bits).",
    "dip_active_weight_share": "Share of new connections the active version sends to the DIP.",
    "dip_up": "1 if the DIP may take new connections (reported up, or no agent), else 0.",
    "dip_report_age_seconds": "Seconds since the DIP's last accepted report (+Inf: never).",
    "vip_new_connections_total": "Connections learned per VIP.",
    "dip_new_connections_total": "Connections learned per DIP.",
    "primary": "1 while this controller is the switch's primary (it writes), 0 as a backup "
    "(P4Runtime: another controller holds a higher election ID).",
    "active_slot": "Version slot the switch uses for new connections.",
    "rollout_version": "Number of the last committed rollout (changes with every rollout).",
    "conn_entries": "conn_table entries held or being written.",
    "conn_table_full": "1 while conn_table is full.",
    "affinity_entries": "affinity_table pins held.",
    "rollout_held": "1 while a due rollout waits (backpressure).",
}

_FAMILIES: Mapping[str, str] = {
    "load_reports_": "Load reports by outcome (accepted, or why dropped): ",
    "digests_": "Digests dropped or pinned despite a problem: ",
    "affinity_": "Client-IP affinity pins: ",
}


def help_text(name: str) -> str:
    """The help of a series: its own, or its family's."""
    if name in HELP:
        return HELP[name]
    for prefix, text in _FAMILIES.items():
        if name.startswith(prefix):
            return text + name.removeprefix(prefix).removesuffix("_total").replace("_", " ")
    return name.replace("_", " ")


def declare(metrics: Metrics, counters: Iterable[str]) -> None:
    """Declare every counter and gauge with its help; counters start at 0."""
    for name in counters:
        metrics.declare(name, "counter", help_text(name))
        metrics.inc(name, 0.0)
    for name, text in HELP.items():  # the labelled ones too: their series come per DIP and VIP
        metrics.declare(name, "counter" if name.endswith("_total") else "gauge", text)


@dataclass(frozen=True)
class Sample:
    """One labelled series value."""

    name: str
    value: float
    labels: Mapping[str, str]


def member_samples(view: CoreView, loads: Mapping[str, DipLoad]) -> list[Sample]:
    """Per-DIP gauges (labels `vip`, `dip`) and per-VIP and per-DIP learned connections."""
    out: list[Sample] = []
    for pool in view.pools:
        total = sum(m.active_weight for m in pool.members)
        learned = 0
        for member in pool.members:
            labels = {"vip": pool.name, "dip": member.dip}
            load = loads.get(member.dip)
            if load is not None:
                out.append(Sample("dip_cpu", load.cpu, labels))
                out.append(Sample("dip_connections", float(load.conns), labels))
                out.append(Sample("dip_report_age_seconds", load.report_age, labels))
                out.append(Sample("dip_up", float(load.live), labels))
            out.append(Sample("dip_weight", float(member.weight), labels))
            share = member.active_weight / total if total else 0.0
            out.append(Sample("dip_active_weight_share", share, labels))
            count = view.learning.by_dip.get(member.dip, 0)
            learned += count
            out.append(Sample("dip_new_connections_total", float(count), labels))
        out.append(Sample("vip_new_connections_total", float(learned), {"vip": pool.name}))
    return out
