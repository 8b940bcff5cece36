"""Rollouts at scale with a client-IP affinity VIP: controller + model + fake agents on a test
clock. Every packet checks its connection keeps its DIP; every TCP connection that starts while
its client's affinity lives checks it reaches the client's DIP (topo.sim)."""

from __future__ import annotations

from topo.sim import SimOptions, Simulation


def affinity_run(affinity: str, connections: int, rollouts: int) -> SimOptions:
    """A TCP VIP with `affinity` (60 clients, 5 s timeout) beside a plain UDP VIP."""
    return SimOptions(
        connections=connections,
        rollouts=rollouts,
        write_latency=(0.01, 0.2),
        clients=60,
        affinity=affinity,
        affinity_timeout=5.0,
        seed=17,
    )


def test_10000_connections_through_100_rollouts_keep_their_dip_and_clients_their_pin() -> None:
    sim = Simulation(affinity_run("client_ip", 10_000, 100))
    result = sim.run()
    assert result.connections == 10_000 and result.rollouts >= 100
    assert result.broken == 0 and result.dropped == 0
    assert result.affinity_checked > 3000  # most TCP connections start while a pin lives
    assert result.affinity_broken == 0
    counters = result.counters
    assert counters["affinity_pinned_total"] > 0
    assert counters["affinity_table_full_total"] == counters["affinity_add_failures_total"] == 0
    # 60 clients drawing random source ports reuse a few 5-tuples: those are one connection.
    assert result.connections - 10 <= counters["learn_installed_total"] <= result.connections


def test_the_affinity_check_fires_on_a_plain_vip() -> None:
    result = Simulation(affinity_run("none", 1500, 10)).run()
    assert result.broken == 0
    assert result.affinity_broken > 0  # without pins a client's connections spread
    assert result.counters["affinity_pinned_total"] == 0
