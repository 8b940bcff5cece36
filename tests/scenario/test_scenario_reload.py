"""Declarative reload under traffic: the file changes, the balancer follows, no connection breaks.

Controller + model + fake agents on a test clock (topo.sim). One run carries thousands of
connections through reloads that add a member (slow start), remove one (it drains, then
leaves), change a weight, add a VIP (its entry goes in once a version serves it) and remove one
(drained, then its entry is deleted); between them, an invalid file and a file changing what
needs a restart are refused whole with nothing applied.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import ConfigError, load_config
from controller.core.controller_core import ControllerCore
from topo.frames import UDP
from topo.sim import VIP_IP, SimOptions, Simulation

WEB = ["10.0.2.2", "10.0.3.2", "10.0.4.2", "10.0.5.2"]
ADDED = "10.0.6.2:8080"
REMOVED = "10.0.3.2:8080"
REWEIGHED = "10.0.4.2:8080"


def config_text(
    web: dict[str, int],
    *,
    api: bool = False,
    dns: bool = True,
    weight_bits: int = 8,
    order: tuple[str, ...] = ("web", "dns", "api"),
) -> str:
    """A controller file: the web VIP with `web` (DIP -> weight), optionally api and dns, the
    VIPs in `order`."""
    lines = [
        "[controller]",
        'policy = "static"',
        f"weight_bits = {weight_bits}",
        "report_interval = 0.5",
        "min_rollout_interval = 0.5",
        "quiet_period = 1.0",
        "min_weight_change = 0.0",
        "teardown_linger = 0.5",
        "tcp_idle_timeout = 10.0",
        "udp_idle_timeout = 5.0",
        "drain_timeout = 60.0",
        "slow_start = 4.0",
        "restart_hold = 2.0",
    ]
    members: dict[str, list[tuple[str, str, int]]] = {
        "web": [(dip.split(":")[0], dip.split(":")[1], weight) for dip, weight in web.items()],
        "dns": [(ip, "5353", 1) for ip in WEB] if dns else [],
        "api": [(ip, "9443", 1) for ip in WEB] if api else [],
    }
    services = {"web": (80, "tcp"), "dns": (53, "udp"), "api": (8443, "tcp")}
    for name in order:
        if not members[name]:
            continue
        port, protocol = services[name]
        lines += ["[[vip]]", f'name = "{name}"', f'ip = "{VIP_IP}"', f"port = {port}"]
        lines.append(f'protocol = "{protocol}"')
        for ip, dport, weight in members[name]:
            lines += ["[[vip.dip]]", f'ip = "{ip}"', f"port = {dport}", f"weight = {weight}"]
    return "\n".join(lines) + "\n"


class Reloading(Simulation):
    """topo.sim's run started from a TOML file that the test rewrites and reloads."""

    def __init__(self, path: Path, text: str, faults: bool = False) -> None:
        latency, failures = ((0.0, 0.05), 0.05) if faults else ((0.0, 0.0), 0.0)
        super().__init__(
            SimOptions(
                dips=5,
                udp_fraction=0.25,
                policy="static",
                seed=7,
                write_latency=latency,
                write_failure_rate=failures,
            )
        )
        self.path = path
        path.write_text(text, encoding="utf-8")
        self.config = load_config(path)
        self.service = self.make_service()
        self.service.config_source = lambda: load_config(path)

    def reload_text(self, text: str) -> list[str]:
        """Write the file and reload it; the changes applied."""
        self.path.write_text(text, encoding="utf-8")
        return self.service.reload().summary()

    @property
    def core(self) -> ControllerCore:
        """The running controller's core."""
        return self.service.core

    def weight(self, vip: str, dip: str) -> int:
        """A member's weight in the active version."""
        pool = next((p for p in self.core.view().pools if p.name == vip), None)
        return 0 if pool is None else pool.active_weight(dip)

    def members(self, vip: str) -> set[str]:
        """The members a VIP has now (empty if it has gone)."""
        return {m.dip for p in self.core.pools if p.vip.name == vip for m in p}

    def first_dips(self, port: int, after: float) -> list[str]:
        """DIPs reached by connections to `port` that started after `after`."""
        return [
            c.dip
            for c in self.conns
            if c.flow.dst_port == port and c.due[0] > after and c.dip is not None
        ]


@pytest.mark.parametrize("faults", [False, True], ids=["clean", "slow-and-failing-writes"])
def test_reloads_follow_the_file_without_breaking_a_connection(
    tmp_path: Path, faults: bool
) -> None:
    """With faults, every switch write takes up to 50 ms and 5 % of them fail: reloads land
    while rollouts, VIP writes and return paths are in flight or being retried."""
    web = {f"{ip}:8080": 1 for ip in WEB}
    sim = Reloading(tmp_path / "p4lb.toml", config_text(web), faults)
    sim.start()
    sim.open_connections(3000, 0.5, 30.0)
    sim.advance(6.0)
    vips_before = sim.switch.table_num_entries("vip_table")

    # Reload 1: a member in, one out, one weight up, a new VIP.
    changed = {**{d: w for d, w in web.items() if d != REMOVED}, REWEIGHED: 3, ADDED: 1}
    summary = sim.reload_text(config_text(changed, api=True))
    assert summary == [
        "vip api added (4 DIPs)",
        f"vip web: {ADDED} added",
        f"vip web: {REMOVED} removed (drains first)",
        f"vip web: {REWEIGHED} weight 1 -> 3",
    ]
    reloaded = sim.clock.seconds()
    cutoff = sim.advance_until(lambda: sim.weight("web", REMOVED) == 0, limit=3.0)
    # The new member ramps up over slow_start (4 s) rather than taking its share at once.
    early = sim.advance_until(lambda: sim.weight("web", ADDED) > 0, limit=3.0)
    first = sim.weight("web", ADDED)
    sim.advance(early + 5.0)
    full = sim.weight("web", ADDED)
    assert 0 < first < full
    # Static weights 1:3:1:1 over 256.
    assert full == pytest.approx(256 / 6, abs=2)
    assert sim.weight("web", REWEIGHED) == pytest.approx(3 * 256 / 6, abs=2)
    # The api VIP is in the switch (after a version served it) and takes connections.
    assert sim.switch.table_num_entries("vip_table") == vips_before + 1
    assert all(sim.weight("api", f"{ip}:9443") > 0 for ip in WEB)
    opened = sim.clock.seconds()
    sim.open_connections(400, opened + 0.1, opened + 8.0, tcp_port=8443)
    # The removed member leaves once its last connection ended, never before.
    left = sim.advance_until(lambda: REMOVED not in sim.members("web"), limit=45.0)
    on_removed = [c for c in sim.conns if c.dip == REMOVED]
    assert on_removed and left >= max(c.due[-1] for c in on_removed)
    # Once no version but older ones holds it, a new connection reaches the removed member
    # only through a Bloom false positive of an older slot (rare, and never a broken one).
    after = sim.first_dips(80, cutoff)
    assert after.count(REMOVED) <= len(after) // 200
    assert ADDED in sim.first_dips(80, reloaded)
    assert set(sim.first_dips(8443, opened)) == {f"{ip}:9443" for ip in WEB}

    # An invalid file and a restart-only change are refused whole: nothing changes.
    view = sim.core.view()
    with pytest.raises(ConfigError) as invalid:
        sim.reload_text(config_text({**changed, ADDED: -1}, api=True))
    assert any("weight" in p and "vip[0].dip" in p for p in invalid.value.problems)
    with pytest.raises(ConfigError) as restart:
        sim.reload_text(config_text({**changed, "10.0.3.2:8080": 1}, api=True, weight_bits=9))
    assert restart.value.problems == (
        "controller.weight_bits: cannot change while the controller runs (8 -> 9; restart it)",
    )
    assert sim.core.view() == view

    # Reload 2: the UDP VIP goes; it drains, then its entry leaves the switch.
    sim.advance(max(sim.clock.seconds(), 31.0))  # the last UDP connection started at 30 s
    removed_at = sim.clock.seconds()
    assert sim.reload_text(config_text(changed, api=True, dns=False)) == [
        "vip dns removed (drains first)"
    ]
    vips = sim.switch.table_num_entries("vip_table")
    sim.advance_until(lambda: not sim.members("dns"), limit=50.0)
    gone = sim.advance_until(lambda: sim.switch.table_num_entries("vip_table") == vips - 1, 2.0)
    udp = [c for c in sim.conns if c.flow.protocol == UDP]
    assert gone >= max(c.due[-1] for c in udp if c.due[0] < removed_at)
    assert all(c.due[0] < removed_at for c in udp)  # none was opened after: none was refused
    sim.advance(sim.clock.seconds() + 3.0)
    result = sim.finish()
    assert result.connections == 3400
    assert result.broken == 0 and result.dropped == 0
    assert sim.service.unexpected_errors == 0
    assert sim.core.pools[-1].vip.name == "api" and len(sim.core.pools) == 2


def test_a_restart_after_reloads_keeps_the_pool_ids_the_switch_holds(tmp_path: Path) -> None:
    web = {f"{ip}:8080": 1 for ip in WEB}
    sim = Reloading(tmp_path / "p4lb.toml", config_text(web))
    sim.start()
    sim.open_connections(1500, 0.5, 20.0)
    sim.advance(3.0)
    sim.reload_text(config_text(web, api=True))
    sim.advance_until(lambda: sim.switch.table_num_entries("vip_table") == 3, limit=5.0)
    # The restarted controller reads a file listing api first: by the file's order it would be
    # pool 0, which the switch's vip_table gives to web.
    sim.path.write_text(config_text(web, api=True, order=("api", "web", "dns")), encoding="utf-8")
    sim.config = load_config(sim.path)
    assert [v.name for v in sim.config.vips] == ["api", "web", "dns"]
    restarted = sim.clock.seconds()
    sim.restart(1.0, tmp_path / "journal.json")
    assert {p.vip.name: p.pool_id for p in sim.core.pools} == {"web": 0, "dns": 1, "api": 2}
    sim.open_connections(300, restarted + 2.0, restarted + 6.0, tcp_port=8443)
    sim.advance(restarted + 25.0)
    assert all(dip.endswith(":8080") for dip in sim.first_dips(80, restarted))
    assert all(dip.endswith(":9443") for dip in sim.first_dips(8443, restarted))
    result = sim.finish()
    assert result.broken == 0 and result.dropped == 0
