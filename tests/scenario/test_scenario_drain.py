"""Operator drain, forced removal at drain_timeout, and a member whose agent goes silent.

Controller + model + fake agents on a test clock (topo.sim): every packet checks that its
connection keeps the DIP its first packet reached.

What a forced removal (drain_timeout) does to connections still open: their conn_table entries
stay (until teardown or idle expiry), so their packets keep reaching the removed DIP, never
another one; the member's dip_reverse entry is deleted, so the DIP's replies are no longer
translated back to the VIP and those connections fail at the client. That is the documented
meaning of the timeout: "cut off", never "moved".
"""

from __future__ import annotations

import pytest

from agent.wire import LoadReport, encode_report
from controller.config import ControllerSettings, DipConfig
from policy.autoscale import MemberState
from topo.frames import ACK, TCP, FlowKey, build_frame, read_flow
from topo.sim import SWITCH_MAC, VIP_IP, SimOptions, Simulation

DIPS = tuple(f"10.0.{2 + i}.2:8080" for i in range(4))


def settings(**changes: float | str) -> ControllerSettings:
    """Fast controller settings for these runs."""
    base: dict[str, float | str] = {
        "report_interval": 0.5,
        "min_rollout_interval": 0.5,
        "quiet_period": 1.0,
        "min_weight_change": 0.0,
        "teardown_linger": 0.5,
        "tcp_idle_timeout": 10.0,
        "udp_idle_timeout": 5.0,
        "drain_timeout": 60.0,
    }
    base.update(changes)
    return ControllerSettings(**base)  # type: ignore[arg-type]


class Pool(Simulation):
    """topo.sim's run with agents that can go silent, and helpers to watch the web pool."""

    def __init__(self, options: SimOptions) -> None:
        super().__init__(options)
        self.silent: set[str] = set()

    def report(self, now: float) -> None:
        """Every DIP not in `silent` reports a steady, equal load."""
        self._report_seq += 1
        for pool in self.service.core.pools:
            for member in pool:
                if member.ip not in self.silent:
                    report = LoadReport(member.dip, self._report_seq, now, 0.5, 0)
                    self.service.ingest_report(encode_report(report))

    def weight(self, dip: str) -> int:
        """The web member's weight in the active version (0 if absent)."""
        return self.service.core.view().pools[0].active_weight(dip)

    def members(self) -> dict[str, MemberState]:
        """The web pool's members and their states."""
        return {m.dip: m.state for m in self.service.core.pools[0]}

    def on(self, dip: str) -> list[int]:
        """Indices of the web connections pinned to `dip`."""
        return [i for i, c in enumerate(self.conns) if c.dip == dip and c.flow.protocol == TCP]

    def reply_source(self, dip: str) -> str:
        """The source address the client sees on a reply from `dip` (VIP if translated)."""
        ip, port = dip.split(":")
        host = int(ip.split(".")[2])
        flow = FlowKey(ip, "10.0.1.9", int(port), 40000, TCP)
        frame = build_frame(f"00:00:0a:00:{host:02x}:02", SWITCH_MAC, flow, flags=ACK)
        out = self.switch.process(host, frame)
        assert len(out) == 1
        seen = read_flow(out[0][1])
        return f"{seen.src_ip}:{seen.src_port}"


def web_only(conns: list[int], sim: Pool, after: float) -> list[str | None]:
    """DIPs of web connections whose first packet was sent after `after`."""
    return [
        sim.conns[i].dip
        for i in conns
        if sim.conns[i].due[0] > after and sim.conns[i].flow.protocol == TCP
    ]


def test_operator_drain_keeps_connections_to_their_end_then_removes_and_re_adds() -> None:
    sim = Pool(SimOptions(udp_fraction=0.2, long_fraction=0.0, settings=settings(), seed=31))
    sim.start()
    sim.open_connections(1500, 0.5, 34.0)
    sim.advance(6.0)
    drained = DIPS[1]
    reverse = sim.switch.table_num_entries("dip_reverse")
    sim.service.drain_member(drained, remove=True)
    cutoff = sim.advance_until(lambda: sim.weight(drained) == 0, limit=3.0)
    in_flight = [i for i in sim.on(drained) if sim.conns[i].packets < len(sim.conns[i].due)]
    assert in_flight
    removed = sim.advance_until(lambda: drained not in sim.members(), limit=15.0)
    # Removed only after every connection pinned to it sent its last packet.
    assert removed >= max(sim.conns[i].due[-1] for i in sim.on(drained))
    assert all(sim.conns[i].packets == len(sim.conns[i].due) for i in in_flight)
    assert sim.service.core.members_removed == 1
    assert sim.switch.table_num_entries("dip_reverse") == reverse - 1
    assert sim.reply_source(drained) == drained  # its return path is gone
    every = list(range(len(sim.conns)))
    assert drained not in web_only(every, sim, cutoff)
    # The operator adds it back: return path first, then weight, then new connections.
    sim.service.add_member(0, DipConfig(drained.split(":")[0], 8080, 1))
    back = sim.advance_until(lambda: sim.weight(drained) > 0, limit=3.0)
    assert sim.reply_source(drained) == f"{VIP_IP}:80"
    sim.advance(back + 6.0)
    assert drained in web_only(every, sim, back)
    # Drain without removal, then re-activation: standby in between, no connection moved.
    sim.service.drain_member(DIPS[2], remove=False)
    sim.advance_until(lambda: sim.members()[DIPS[2]] is MemberState.STANDBY, limit=15.0)
    assert DIPS[2] in sim.members()
    sim.service.activate_member(DIPS[2])
    again = sim.advance_until(lambda: sim.weight(DIPS[2]) > 0, limit=3.0)
    sim.advance(again + 8.0)
    assert DIPS[2] in web_only(every, sim, again)
    result = sim.finish()
    assert result.broken == 0 and result.dropped == 0
    assert sim.service.unexpected_errors == 0


def test_drain_timeout_removes_the_member_and_leaves_open_connections_pinned_to_it() -> None:
    options = SimOptions(
        udp_fraction=0.0, long_fraction=1.0, settings=settings(drain_timeout=4.0), seed=33
    )
    sim = Pool(options)
    sim.start()
    sim.open_connections(300, 0.5, 4.0)
    sim.advance(5.0)
    drained = DIPS[0]
    started = sim.clock.seconds()
    sim.service.drain_member(drained, remove=True)
    removed = sim.advance_until(lambda: drained not in sim.members(), limit=10.0)
    assert removed - started >= 4.0
    still_open = [i for i in sim.on(drained) if sim.conns[i].packets < len(sim.conns[i].due)]
    assert still_open  # the timeout, not the connections' end, removed it
    assert sim.reply_source(drained) == drained  # replies are no longer translated: they fail
    sim.advance(removed + 35.0)
    # ...but every one of their later packets still reached the removed DIP, none another one.
    assert all(sim.conns[i].packets == len(sim.conns[i].due) for i in still_open)
    assert all(sim.conns[i].dip == drained and not sim.conns[i].broken for i in still_open)
    result = sim.finish()
    assert result.broken == 0 and result.dropped == 0
    assert sim.service.unexpected_errors == 0
    with pytest.raises(KeyError):
        sim.service.drain_member(drained, remove=True)  # not a member any more


def test_silent_member_gets_weight_zero_keeps_its_connections_and_slow_starts_back() -> None:
    sim = Pool(
        SimOptions(
            udp_fraction=0.2, long_fraction=0.5, policy="ratio", settings=settings(), seed=35
        )
    )
    sim.start()
    sim.open_connections(1500, 0.5, 36.0)
    sim.advance(8.0)
    dead = DIPS[3]
    full = sim.weight(dead)
    assert full > 0
    sim.silent.add(dead.split(":")[0])
    silenced = sim.clock.seconds()
    zero = sim.advance_until(lambda: sim.weight(dead) == 0, limit=4.0)
    # Down three report intervals after its last report (sent at most one interval before).
    assert zero - silenced >= 2 * 0.5
    assert sim.members()[dead] is MemberState.ACTIVE  # down is liveness, not a lifecycle change
    pinned = [i for i in sim.on(dead) if sim.conns[i].packets < len(sim.conns[i].due)]
    assert pinned
    sim.advance(zero + 6.0)
    # The switch still sends their packets to the dead DIP (they fail there, not elsewhere).
    assert all(sim.conns[i].packets > 0 and not sim.conns[i].broken for i in pinned)
    assert dead not in web_only(list(range(len(sim.conns))), sim, zero)
    sim.silent.clear()
    resumed = sim.clock.seconds()
    back = sim.advance_until(lambda: sim.weight(dead) > 0, limit=6.0)
    assert back - resumed >= 2 * 0.5  # blackout: two report intervals of reports first
    first = sim.weight(dead)
    assert first < full / 2  # slow start: it comes back with a small share...
    sim.advance(back + 8.0)
    assert sim.weight(dead) > 2 * first  # ...that grows as the ramp ends
    result = sim.finish()
    assert result.broken == 0 and result.dropped == 0
    assert sim.service.unexpected_errors == 0
