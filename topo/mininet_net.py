"""Mininet network with the reference-model switch: hosts in namespaces, ``p4lb-switch`` on s1.

Same shape and addressing as ``topo/network.py`` (p4-utils ``l3``), but no BMv2 and no Open
vSwitch: Mininet makes the hosts and veth links; the switch node lives in the root namespace
and runs ``p4lb-switch -i N@s1-ethN ...`` on its ends of the links. Offloads are disabled on
every veth end (otherwise TCP frames carry partial checksums or exceed the MTU), IPv6 is off,
and hosts get a static ARP entry for their gateway as p4-utils ``l3`` gives them. The topology
is saved as ``topology.json`` (p4-utils shape) for the controller's ``--topology``; its switch
node records where p4lb-switch serves P4Runtime (``p4runtime``, ``device_id``), which the
controller reaches with ``--switch p4rt://HOST:PORT``.

``python -m topo.mininet_net [--cli]`` starts the bare network (switch empty: run the
controller and agents by hand), see the README.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from topo.addressing import NetworkPlan, make_plan, switch_interface, topology_json
from topo.cgroups import CpuGroup
from topo.services import ControllerKnobs, ServerSpec, controller_toml

OFFLOADS = ("rx", "tx", "sg", "tso", "gso", "gro")
"""Offloads turned off on every veth end."""
BIN = Path(sys.executable).parent
"""Where the virtualenv's console scripts live (used by absolute path inside hosts)."""


DEFAULT_P4RUNTIME = "127.0.0.1:9559"
"""Where the by-hand network's switch serves P4Runtime (p4lb-switch's own default)."""
DEVICE_ID = 1
"""p4lb-switch's P4Runtime device id (its default)."""


def switch_command(p4runtime: str) -> list[str]:
    """p4lb-switch serving P4Runtime on ``p4runtime`` (HOST:PORT); the ports are added later."""
    return [str(BIN / "p4lb-switch"), "--p4runtime", p4runtime, "--device-id", str(DEVICE_ID)]


class NetworkError(RuntimeError):
    """The network could not be built or a process in it did not start."""


def unavailable_reason() -> str | None:
    """Why a Mininet network cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("mnexec", "nsenter", "ethtool", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH"
    try:
        import mininet.net  # noqa: F401, PLC0415 (optional dependency)
    except ImportError:
        return "mininet is not importable (apt-get install mininet)"
    return None


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``predicate`` until it holds; raise NetworkError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise NetworkError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _offloads_off(run: Callable[[str], object], iface: str) -> None:
    run(f"ethtool -K {iface} {' '.join(f'{o} off' for o in OFFLOADS)}")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM the process group of ``proc`` (one we started), SIGKILL it after ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)
    # stragglers of the group (workers of a server killed by SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def host_popen(
    namespace_pid: int, argv: Sequence[str], log_path: Path, group: CpuGroup | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in the network namespace of ``namespace_pid`` (a Mininet host's shell),
    in its own session, inside ``group`` from its first instruction; output to ``log_path``.

    Only the network namespace is entered (``nsenter --net``), not the host's mount namespace:
    Mininet remounts /sys there, which hides /sys/fs/cgroup from agents measuring a cgroup.
    """
    procs_files = group.procs_files if group is not None else ()

    def enter_group() -> None:
        for procs in procs_files:
            procs.write_text(f"{os.getpid()}\n")

    with log_path.open("wb") as log:
        return subprocess.Popen(
            ["nsenter", f"--net=/proc/{namespace_pid}/ns/net", "--", *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            # no threads run in the processes that start hosts' programs
            preexec_fn=enter_group if procs_files else None,  # noqa: PLW1509
        )


def _make_switch_class() -> type[Any]:
    from mininet.node import Switch  # noqa: PLC0415 (optional dependency)

    class ModelSwitch(Switch):  # type: ignore[misc]
        """Mininet switch node (root namespace) that runs ``p4lb-switch`` on its ports."""

        def __init__(self, name: str, argv: Sequence[str], log_path: Path, **params: Any):
            params["inNamespace"] = False
            super().__init__(name, dpid="1", **params)
            self.argv = list(argv)
            self.log_path = log_path
            self.process: subprocess.Popen[bytes] | None = None

        def start(self, controllers: object) -> None:
            """Start p4lb-switch on every data port."""
            specs: list[str] = []
            for intf in self.intfList():
                if intf.name == "lo":
                    continue
                _offloads_off(_root_run, intf.name)
                _root_run(f"sysctl -qw net.ipv6.conf.{intf.name}.disable_ipv6=1")
                specs += ["-i", f"{self.ports[intf]}@{intf.name}"]
            with self.log_path.open("wb") as log:
                self.process = subprocess.Popen(
                    [*self.argv, *specs],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

        def stop(self, deleteIntfs: bool = True) -> None:  # noqa: N803 (Mininet's name)
            """Stop p4lb-switch, then remove the interfaces."""
            if self.process is not None:
                stop_process(self.process)
            super().stop(deleteIntfs)

    return ModelSwitch


def _root_run(command: str) -> None:
    subprocess.run(command.split(), check=False, capture_output=True)


class ModelNetwork:
    """The demo network, built on Mininet with ``p4lb-switch`` as s1; use as a context manager."""

    def __init__(
        self,
        workdir: Path,
        plan: NetworkPlan | None = None,
        switch_argv: Sequence[str] | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        """A network whose switch runs `switch_argv` (default: p4lb-switch serving P4Runtime on
        a free loopback port, which its ready line names)."""
        self.workdir = workdir
        self.plan = plan or make_plan()
        self.switch_argv = list(switch_argv or switch_command("127.0.0.1:0"))
        self.ready_timeout = ready_timeout
        self.net: Any = None
        self.p4runtime_address = ""
        """HOST:PORT where p4lb-switch serves P4Runtime, from its ready line."""
        self.device_id = DEVICE_ID
        self.topology_path = workdir / "topology.json"
        self._procs: list[subprocess.Popen[bytes]] = []
        self._owns_interfaces = False
        """Set once the interface names were found free: only then may stop() delete them."""

    def __enter__(self) -> ModelNetwork:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Build the network, start p4lb-switch and wait for its ready line."""
        from mininet.link import Link  # noqa: PLC0415 (optional dependency)
        from mininet.log import setLogLevel  # noqa: PLC0415
        from mininet.net import Mininet  # noqa: PLC0415
        from mininet.node import Host  # noqa: PLC0415

        reason = unavailable_reason()
        if reason is not None:
            raise NetworkError(f"cannot build a Mininet network: {reason}")
        setLogLevel("warning")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for host in self.plan.hosts:
            iface = switch_interface(self.plan.switch, host.switch_port)
            if Path("/sys/class/net", iface).exists():
                raise NetworkError(f"interface {iface!r} exists: another network is running")
        self._owns_interfaces = True
        switch_log = self.workdir / "switch.log"
        net = Mininet(
            topo=None, build=False, controller=None, link=Link, host=Host, autoSetMacs=False
        )
        self.net = net
        switch = net.addSwitch(
            self.plan.switch, cls=_make_switch_class(), argv=self.switch_argv, log_path=switch_log
        )
        for host in self.plan.hosts:
            node = net.addHost(
                host.name, ip=host.cidr, mac=host.mac, defaultRoute=f"via {host.gateway}"
            )
            net.addLink(
                node,
                switch,
                port1=0,
                port2=host.switch_port,
                intfName1=f"{host.name}-eth0",
                intfName2=switch_interface(self.plan.switch, host.switch_port),
                addr1=host.mac,
                addr2=host.switch_mac,
            )
        net.build()
        for host in self.plan.hosts:
            node = net.get(host.name)
            for key in ("all", "default", "lo"):
                node.cmd(f"sysctl -qw net.ipv6.conf.{key}.disable_ipv6=1")
            _offloads_off(node.cmd, f"{host.name}-eth0")
            node.cmd(
                f"ip neigh replace {host.gateway} lladdr {host.switch_mac} "
                f"dev {host.name}-eth0 nud permanent"
            )
        net.start()

        def ready() -> bool:
            proc = switch.process
            if proc is not None and proc.poll() is not None:
                raise NetworkError(f"p4lb-switch exited; see {switch_log}")
            for line in switch_log.read_text(errors="replace").splitlines():
                if line.startswith("p4lb-switch ready"):
                    fields = dict(f.split("=", 1) for f in line.split()[2:] if "=" in f)
                    self.p4runtime_address = fields.get("p4runtime", "")
                    self.device_id = int(fields.get("device_id", DEVICE_ID))
                    return bool(self.p4runtime_address)
            return False

        wait_for(ready, self.ready_timeout, "p4lb-switch to start")
        document = topology_json(self.plan)
        document["nodes"][-1]["p4runtime"] = self.p4runtime_address
        document["nodes"][-1]["device_id"] = self.device_id
        self.topology_path.write_text(json.dumps(document, indent=1) + "\n")

    @property
    def switch_spec(self) -> str:
        """The controller's ``--switch`` for this network's switch."""
        return f"p4rt://{self.p4runtime_address}?device_id={self.device_id}"

    def popen(
        self,
        host: str,
        argv: Sequence[str],
        log_name: str,
        group: CpuGroup | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in ``host``'s namespace (in ``group`` if given), output to a log."""
        proc = host_popen(self.net.get(host).pid, argv, self.workdir / log_name, group)
        self._procs.append(proc)
        return proc

    def cmd(self, host: str, command: str) -> str:
        """Run a short shell command in ``host`` and return its output."""
        return str(self.net.get(host).cmd(command))

    def root_popen(self, argv: Sequence[str], log_name: str) -> subprocess.Popen[bytes]:
        """Start ``argv`` in the root namespace (the controller), output to a log."""
        with (self.workdir / log_name).open("wb") as log:
            proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._procs.append(proc)
        return proc

    def stop(self) -> None:
        """Stop every process we started, the switch, and remove hosts and interfaces."""
        for proc in reversed(self._procs):
            stop_process(proc)
        self._procs.clear()
        if self.net is not None:
            net, self.net = self.net, None
            # the switch goes first: Mininet deletes links before it stops switches
            switch = net.get(self.plan.switch)
            if switch.process is not None:
                stop_process(switch.process)
            net.stop()
        if not self._owns_interfaces:
            return  # they belong to the network that made start() refuse
        self._owns_interfaces = False
        for host in self.plan.hosts:
            iface = switch_interface(self.plan.switch, host.switch_port)
            if Path("/sys/class/net", iface).exists():
                _root_run(f"ip link del {iface}")


def main(argv: list[str] | None = None) -> int:
    """Start the bare network (switch without entries) and wait, or open Mininet's CLI."""
    parser = argparse.ArgumentParser(prog="python -m topo.mininet_net", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path("p4lb-net"))
    parser.add_argument("--servers", type=int, default=4)
    parser.add_argument(
        "--p4runtime",
        default=DEFAULT_P4RUNTIME,
        metavar="HOST:PORT",
        help="where p4lb-switch serves P4Runtime (default: %(default)s; port 0: a free one)",
    )
    parser.add_argument(
        "--metrics",
        default="127.0.0.1:9100",
        help="metrics_listen written to controller.toml ('' disables)",
    )
    parser.add_argument("--cli", action="store_true", help="open Mininet's CLI")
    args = parser.parse_args(argv)
    plan = make_plan(n_servers=args.servers)
    workdir = args.workdir.resolve()
    # SIGINT and SIGTERM both unwind through the clean-up (also when started in the background)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    switch_argv = switch_command(args.p4runtime)
    with contextlib.ExitStack() as stack:
        try:
            network = stack.enter_context(ModelNetwork(workdir, plan, switch_argv))
        except NetworkError as exc:
            print(f"python -m topo.mininet_net: {exc}", file=sys.stderr)
            return 1
        config = workdir / "controller.toml"
        servers = [ServerSpec(host, 1.0) for host in plan.servers]
        knobs = ControllerKnobs(metrics_listen=args.metrics)
        config.write_text(controller_toml(servers, f"ipc://{workdir}/load.sock", knobs))
        print(
            f"p4lb-switch serves P4Runtime on {network.p4runtime_address} "
            f"(--switch {network.switch_spec}); wrote {network.topology_path}, {config}"
        )
        # hN.pid: for `nsenter --net=/proc/$(cat WORKDIR/hN.pid)/ns/net ...` (see the README)
        pid_files = [workdir / f"{host.name}.pid" for host in plan.hosts]
        try:
            for host, pid_file in zip(plan.hosts, pid_files, strict=True):
                pid = network.net.get(host.name).pid
                pid_file.write_text(f"{pid}\n")
                print(
                    f"  {host.name} {host.cidr} port {host.switch_port} pid {pid} "
                    f"({pid_file}) netns /proc/{pid}/ns/net"
                )
            if args.cli:
                from mininet.cli import CLI  # noqa: PLC0415 (optional dependency)

                CLI(network.net)
            else:
                print("running; Ctrl-C (or SIGTERM) stops and cleans up", flush=True)
                with contextlib.suppress(KeyboardInterrupt):
                    signal.pause()
        finally:
            for pid_file in pid_files:
                pid_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
