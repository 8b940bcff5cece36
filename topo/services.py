"""Command lines and the controller config for the processes a topology runs (no I/O).

One place builds the argv of the server app, the agent, the controller and the load
generator, and renders the controller's TOML for a plan, so the p4-utils topology, the
Mininet demo and the e2e tests start things the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from topo.addressing import DIP_PORT, IPERF_PORT, VIP_IP, VIP_TCP_PORT, VIP_UDP_PORT, HostAddress


@dataclass(frozen=True)
class ServerSpec:
    """One server: its host, CPU share (fraction of one core) and app parameters."""

    host: HostAddress
    cpu: float
    workers: int = 2
    work_ms: float = 4.0

    @property
    def dip(self) -> str:
        """The server's DIP name ``ip:port``."""
        return f"{self.host.ip}:{DIP_PORT}"


@dataclass(frozen=True)
class ControllerKnobs:
    """Controller settings the topologies choose (rendered into ``[controller]``)."""

    policy: str = "ratio"
    weight_bits: int = 8
    report_interval: float = 0.5
    min_rollout_interval: float = 1.0
    quiet_period: float = 2.0
    tcp_idle_timeout: float = 300.0
    udp_idle_timeout: float = 15.0
    teardown_linger: float = 2.0
    restart_hold: float = 3.0
    min_weight_change: float = 0.02
    metrics_listen: str = ""
    admin_listen: str = ""
    """The admin API's address or Unix socket (empty: none, so labs never collide on a port)."""
    policy_params: tuple[tuple[str, float], ...] = ()
    """``[policy_params]`` for ``policy`` (names from ``policy.policy_params``)."""


def _toml(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def controller_toml(
    servers: Sequence[ServerSpec],
    load_listen: str,
    knobs: ControllerKnobs | None = None,
    udp_vip: bool = False,
    vip_ip: str = VIP_IP,
    *,
    iperf_vip: bool = False,
) -> str:
    """The controller config: a TCP VIP (and optionally a UDP VIP, and an iperf3 VIP with
    client-IP affinity on IPERF_PORT) over every server."""
    knobs = knobs or ControllerKnobs()
    lines = ["[controller]"]
    settings: dict[str, object] = {
        f.name: getattr(knobs, f.name) for f in fields(knobs) if f.name != "policy_params"
    }
    settings["load_listen"] = load_listen
    lines += [f"{key} = {_toml(value)}" for key, value in settings.items()]
    if knobs.policy_params:
        lines += ["", "[policy_params]"]
        lines += [f"{key} = {_toml(float(value))}" for key, value in knobs.policy_params]
    # (name, VIP port, protocol, DIP port, affinity)
    vips = [("web", VIP_TCP_PORT, "tcp", DIP_PORT, "none")]
    if udp_vip:
        vips.append(("dns", VIP_UDP_PORT, "udp", DIP_PORT, "none"))
    if iperf_vip:
        vips.append(("iperf", IPERF_PORT, "tcp", IPERF_PORT, "client_ip"))
    for name, port, protocol, dip_port, affinity in vips:
        lines += ["", "[[vip]]", f"name = {_toml(name)}", f"ip = {_toml(vip_ip)}"]
        lines += [f"port = {port}", f"protocol = {_toml(protocol)}"]
        lines += [f"affinity = {_toml(affinity)}"]
        for server in servers:
            lines += ["  [[vip.dip]]", f"  ip = {_toml(server.host.ip)}", f"  port = {dip_port}"]
            lines += ["  weight = 1", '  state = "active"']
    return "\n".join(lines) + "\n"


def server_argv(python: Path, server: ServerSpec, udp: bool = False) -> list[str]:
    """The server app on ``server``'s host."""
    argv = [str(python), "-m", "topo.apps.server", "--id", server.dip, "--port", str(DIP_PORT)]
    argv += ["--workers", str(server.workers), "--work-ms", str(server.work_ms)]
    return [*argv, "--udp"] if udp else argv


def agent_argv(
    bin_dir: Path, server: ServerSpec, controller: str, scope: str, interval: float = 0.5
) -> list[str]:
    """``p4lb-agent`` for ``server`` with CPU scope ``scope`` (e.g. ``cgroup:/p4lb-1/h3``)."""
    return [
        str(bin_dir / "p4lb-agent"),
        "--controller",
        controller,
        "--dip",
        server.dip,
        "--interval",
        str(interval),
        "--cpu-scope",
        scope,
    ]


def controller_argv(
    bin_dir: Path,
    config: Path,
    switch: str,
    topology: Path,
    *,
    record: Path | None = None,
    policy: str | None = None,
) -> list[str]:
    """``p4lb-controller`` against ``switch`` (``p4rt://…`` p4lb-switch or ``thrift://…`` BMv2)."""
    argv = [str(bin_dir / "p4lb-controller"), "--config", str(config), "--switch", switch]
    argv += ["--topology", str(topology)]
    if policy is not None:
        argv += ["--policy", policy]
    if record is not None:
        argv += ["--record", str(record)]
    return argv


def client_argv(
    python: Path,
    rate: float,
    duration: float,
    *,
    log: Path | None = None,
    expected: Sequence[str] = (),
    extra: Sequence[str] = (),
    target: str = f"{VIP_IP}:{VIP_TCP_PORT}",
) -> list[str]:
    """The load generator against the VIP."""
    argv = [str(python), "-m", "topo.apps.client", "--target", target]
    argv += ["--rate", str(rate), "--duration", str(duration)]
    if log is not None:
        argv += ["--log", str(log)]
    if expected:
        argv += ["--expect", ",".join(expected)]
    return [*argv, *extra]
