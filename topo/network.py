"""p4-utils topology for machines with BMv2: s1 runs ``p4src/loadbalancer.p4`` in simple_switch
(Thrift), or with ``--p4runtime`` in simple_switch_grpc (P4Runtime on loopback).

Two clients (h1, h2) and four servers (h3..h6) with p4-utils ``l3`` addressing (host hN:
``10.1.N.2/24`` behind gateway ``10.1.N.1`` on switch port N). Each server runs the demo server
app in its own CPU-quota cgroup and a ``p4lb-agent`` reporting that cgroup's load; the
controller runs in the root namespace against the switch's Thrift or P4Runtime port (with
``--p4runtime`` it loads p4c's P4Info and BMv2 JSON into the switch itself) and reads the routes
from the ``topology.json`` p4-utils saves. Agents reach the controller over a Unix socket
(``ipc://``), which works across network namespaces without a management network.

``sudo .venv/bin/python -m topo.network [--policy ratio] [--p4runtime] [--cli]``; needs p4c,
simple_switch (simple_switch_grpc for ``--p4runtime``) and p4-utils (``pip install --no-deps`` of
its source into the venv). Without them it says so.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from topo.addressing import AddressingError, NetworkPlan, make_plan, switch_interface
from topo.cgroups import CgroupError, cpu_groups
from topo.mininet_net import BIN, NetworkError, host_popen, stop_process
from topo.services import (
    ControllerKnobs,
    ServerSpec,
    agent_argv,
    controller_argv,
    controller_toml,
    server_argv,
)

P4_SOURCE = Path(__file__).resolve().parent.parent / "p4src" / "loadbalancer.p4"
"""The data-plane program s1 runs."""
DEFAULT_CAPACITIES = (0.1, 0.2, 0.3, 0.4)
"""CPU share (of one core) of each server by default."""
THRIFT_PORT = 9090
"""simple_switch's Thrift port for device 1 (p4-utils' default)."""
GRPC_PORT = 9559
"""simple_switch_grpc's P4Runtime port (its default)."""

MISSING = (
    "p4-utils is not importable: this topology needs BMv2 (simple_switch), p4c and p4-utils "
    "(install p4-utils from its source with `pip install --no-deps` into this venv, which sees "
    "Debian's mininet). Without BMv2, run `p4lb-demo` or `python -m topo.mininet_net`, which use "
    "the reference model `p4lb-switch` instead."
)


def check_interfaces_free(plan: NetworkPlan) -> None:
    """Raise `NetworkError` if a switch-side interface of `plan` exists already."""
    for host in plan.hosts:
        iface = switch_interface(plan.switch, host.switch_port)
        if Path("/sys/class/net", iface).exists():
            raise NetworkError(
                f"interface {iface!r} exists: another network is running (or a crashed run "
                f"left it: `ip link del {iface}`)"
            )


def build_network(
    workdir: Path,
    n_servers: int = 4,
    p4_source: Path = P4_SOURCE,
    *,
    plan: NetworkPlan | None = None,
    thrift_port: int = THRIFT_PORT,
    grpc_port: int | None = None,
) -> Any:
    """A configured (not started) NetworkAPI network; raises ImportError without p4-utils.

    p4-utils' `startNetwork` first runs Mininet's machine-wide cleanup (it kills every Mininet
    host and deletes every `*-ethN` link and /tmp/*.log of the machine); this network checks
    only that its own interfaces are free instead.
    """
    from p4utils.mininetlib.network_API import NetworkAPI  # noqa: PLC0415 (optional)

    plan = plan or make_plan(n_servers=n_servers)
    net = NetworkAPI()
    net.cleanup = functools.partial(check_interfaces_free, plan)
    net.setLogLevel("info")
    if grpc_port is None:
        net.addP4Switch(plan.switch, device_id=plan.device_id)
    else:
        net.addP4RuntimeSwitch(plan.switch, device_id=plan.device_id, cls=_loopback_grpc())
        net.setGrpcPort(plan.switch, grpc_port)
    net.setP4Source(plan.switch, str(p4_source))
    # p4c output beside the logs, not in p4src/ (with the P4Info for P4Runtime)
    net.setCompiler(outdir=str(workdir), p4rt=grpc_port is not None)
    net.setThriftPort(plan.switch, thrift_port)
    for host in plan.hosts:
        net.addHost(host.name)
        net.addLink(host.name, plan.switch, port2=host.switch_port)
    net.l3()
    net.setTopologyFile(str(workdir / "topology.json"))
    net.disableCli()
    return net


def _loopback_grpc() -> type:
    """p4-utils' P4RuntimeSwitch serving P4Runtime on loopback only (it binds 0.0.0.0)."""
    from p4utils.mininetlib.node import P4RuntimeSwitch  # noqa: PLC0415 (optional)

    class LoopbackP4RuntimeSwitch(P4RuntimeSwitch):  # type: ignore[misc]
        def add_target_arguments(self) -> list[str]:
            return [
                arg.replace("--grpc-server-addr 0.0.0.0:", "--grpc-server-addr 127.0.0.1:")
                for arg in super().add_target_arguments()
            ]

    return LoopbackP4RuntimeSwitch


def main(argv: list[str] | None = None) -> int:
    """Start the BMv2 network with servers, agents and the controller; stop on Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m topo.network", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path("p4lb-bmv2"))
    parser.add_argument("--policy", default="ratio", help="controller policy")
    parser.add_argument("--capacities", default=",".join(map(str, DEFAULT_CAPACITIES)))
    parser.add_argument("--work-ms", type=float, default=4.0, help="CPU ms per request")
    parser.add_argument("--cli", action="store_true", help="open the Mininet CLI")
    parser.add_argument(
        "--device-id", type=int, default=1, help="BMv2 device id N (switch sN, hosts 10.N.x.2)"
    )
    parser.add_argument("--thrift-port", type=int, default=THRIFT_PORT)
    parser.add_argument(
        "--p4runtime",
        nargs="?",
        type=int,
        const=GRPC_PORT,
        metavar="PORT",
        help=f"run simple_switch_grpc and drive it over P4Runtime on this port ({GRPC_PORT})",
    )
    args = parser.parse_args(argv)
    capacities = [float(c) for c in args.capacities.split(",") if c]
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        plan = make_plan(
            n_servers=len(capacities), switch=f"s{args.device_id}", device_id=args.device_id
        )
    except AddressingError as exc:
        parser.error(str(exc))
    try:
        net = build_network(
            workdir, plan=plan, thrift_port=args.thrift_port, grpc_port=args.p4runtime
        )
    except ImportError:
        print(MISSING, file=sys.stderr)
        return 2
    servers = [
        ServerSpec(host, cpu, work_ms=args.work_ms)
        for host, cpu in zip(plan.servers, capacities, strict=True)
    ]
    load_listen = f"ipc://{workdir}/load.sock"
    config = workdir / "controller.toml"
    config.write_text(controller_toml(servers, load_listen, ControllerKnobs(policy=args.policy)))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        net.startNetwork()
        parent = f"p4lb-bmv2-{workdir.name}"
        with cpu_groups(parent, {s.host.name: s.cpu for s in servers}) as groups:
            for host in plan.hosts:
                node = net.net.get(host.name)
                for off in ("tso", "gso", "gro"):
                    node.cmd(f"ethtool -K {host.name}-eth0 {off} off")
            with (workdir / "controller.log").open("wb") as log:
                switch = f"thrift://127.0.0.1:{args.thrift_port}"
                extra = ["--switch-name", plan.switch]
                if args.p4runtime is not None:
                    switch = f"p4rt://127.0.0.1:{args.p4runtime}?device_id={plan.device_id}"
                    program = workdir / P4_SOURCE.stem
                    extra += ["--p4info", f"{program}_p4rt.txt", "--device-config"]
                    extra.append(f"{program}.json")
                argv = controller_argv(
                    BIN, config, switch, workdir / "topology.json", record=workdir / "record.jsonl"
                )
                procs.append(
                    subprocess.Popen(
                        [*argv, *extra],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            for server in servers:
                pid = net.net.get(server.host.name).pid
                group = groups[server.host.name]
                procs.append(
                    host_popen(
                        pid,
                        server_argv(Path(sys.executable), server),
                        workdir / f"server-{server.host.name}.log",
                        group,
                    )
                )
                procs.append(
                    host_popen(
                        pid,
                        agent_argv(BIN, server, load_listen, group.agent_scope),
                        workdir / f"agent-{server.host.name}.log",
                    )
                )
            print(f"running: VIP 10.0.0.100:80, logs and record in {workdir}", flush=True)
            if args.cli:
                net.start_net_cli()
            else:
                print("Ctrl-C stops and cleans up", flush=True)
                with contextlib.suppress(KeyboardInterrupt):
                    signal.pause()
            # stop our processes before their cgroups go
            for proc in reversed(procs):
                stop_process(proc)
    except CgroupError as exc:
        print(f"cannot set CPU quotas: {exc}", file=sys.stderr)
        return 1
    except NetworkError as exc:
        print(f"cannot start the network: {exc}", file=sys.stderr)
        return 1
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        net.stopNetwork()
    return 0


if __name__ == "__main__":
    sys.exit(main())
