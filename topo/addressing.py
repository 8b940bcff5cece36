"""Addressing plan of the demo network (p4-utils ``l3`` convention) and its topology.json.

Pure values: host hN on the switch with device id S gets IP ``10.S.N.2/24``, gateway
``10.S.N.1``, host MAC ``00:00:0a:SS:NN:02`` and switch-port MAC ``00:01:0a:SS:NN:02`` on
switch port N, exactly as p4-utils' ``NetworkAPI.l3()`` assigns them, so the controller's
routing reads either network's ``topology.json`` the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

VIP_IP = "10.0.0.100"
"""The demo's virtual IP (TCP and UDP services)."""
VIP_TCP_PORT = 80
"""TCP service port of the VIP."""
VIP_UDP_PORT = 53
"""UDP service port of the VIP (UDP tests)."""
DIP_PORT = 8080
"""Port the servers listen on (TCP and UDP); a DIP:port belongs to one VIP."""
IPERF_PORT = 5201
"""iperf3's port, on the VIP (a client-IP affinity VIP) and on each server (e2e tests)."""
MAX_HOSTS = 253


class AddressingError(ValueError):
    """An addressing plan that cannot be built (bad host number or device id)."""


@dataclass(frozen=True)
class HostAddress:
    """One host's addresses and the switch port it hangs off."""

    name: str
    number: int
    ip: str
    prefix_len: int
    gateway: str
    mac: str
    switch_mac: str
    switch_port: int

    @property
    def cidr(self) -> str:
        """The host address with its prefix length, e.g. ``10.1.3.2/24``."""
        return f"{self.ip}/{self.prefix_len}"

    @property
    def gateway_cidr(self) -> str:
        """The switch port's (fake) address with its prefix length."""
        return f"{self.gateway}/{self.prefix_len}"


def host_address(number: int, device_id: int = 1) -> HostAddress:
    """Addresses of host ``h<number>`` on the switch with ``device_id`` (p4-utils ``l3``)."""
    if not 1 <= number <= MAX_HOSTS:
        raise AddressingError(f"host number must be 1..{MAX_HOSTS}, got {number!r}")
    if not 1 <= device_id <= MAX_HOSTS:
        raise AddressingError(f"device id must be 1..{MAX_HOSTS}, got {device_id!r}")
    tail = f"0a:{device_id:02x}:{number:02x}:02"
    return HostAddress(
        name=f"h{number}",
        number=number,
        ip=f"10.{device_id}.{number}.2",
        prefix_len=24,
        gateway=f"10.{device_id}.{number}.1",
        mac=f"00:00:{tail}",
        switch_mac=f"00:01:{tail}",
        switch_port=number,
    )


@dataclass(frozen=True)
class NetworkPlan:
    """The demo network: one switch, clients h1..hC, then servers."""

    switch: str
    device_id: int
    clients: tuple[HostAddress, ...]
    servers: tuple[HostAddress, ...]

    @property
    def hosts(self) -> tuple[HostAddress, ...]:
        """Every host, clients first, in switch-port order."""
        return self.clients + self.servers

    def host(self, name: str) -> HostAddress:
        """The host called ``name``."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise AddressingError(f"no host {name!r} in the plan")

    def dips(self, port: int = DIP_PORT) -> tuple[str, ...]:
        """Server endpoints as DIP names ``ip:port``, in server order."""
        return tuple(f"{server.ip}:{port}" for server in self.servers)


def make_plan(
    n_clients: int = 2, n_servers: int = 4, switch: str = "s1", device_id: int = 1
) -> NetworkPlan:
    """Plan ``n_clients`` clients (h1..) then ``n_servers`` servers on one switch."""
    if n_clients < 1 or n_servers < 1:
        raise AddressingError(
            f"need at least one client and one server, got {n_clients!r} and {n_servers!r}"
        )
    if n_clients + n_servers > MAX_HOSTS:
        raise AddressingError(f"at most {MAX_HOSTS} hosts, got {n_clients + n_servers!r}")
    hosts = [host_address(n, device_id) for n in range(1, n_clients + n_servers + 1)]
    return NetworkPlan(
        switch=switch,
        device_id=device_id,
        clients=tuple(hosts[:n_clients]),
        servers=tuple(hosts[n_clients:]),
    )


def switch_interface(switch: str, port: int) -> str:
    """Name of the switch-side interface of ``port`` (Mininet's ``<switch>-eth<port>``)."""
    return f"{switch}-eth{port}"


def topology_json(
    plan: NetworkPlan, thrift_port: int | None = None, p4_src: str | None = None
) -> dict[str, Any]:
    """The plan as a p4-utils ``topology.json`` document (networkx node-link data)."""
    nodes: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    for host in plan.hosts:
        nodes.append(
            {
                "id": host.name,
                "isHost": True,
                "ip": host.cidr,
                "mac": host.mac,
                "defaultRoute": f"via {host.gateway}",
            }
        )
    nodes.append(
        {
            "id": plan.switch,
            "isSwitch": True,
            "isP4Switch": True,
            "device_id": plan.device_id,
            "thrift_port": thrift_port,
            "p4_src": p4_src,
        }
    )
    for host in plan.hosts:
        links.append(
            {
                "node1": host.name,
                "node2": plan.switch,
                "port1": 0,
                "port2": host.switch_port,
                "intfName1": f"{host.name}-eth0",
                "intfName2": switch_interface(plan.switch, host.switch_port),
                "addr1": host.mac,
                "addr2": host.switch_mac,
                "ip1": host.cidr,
                "ip2": host.gateway_cidr,
                "weight": 1,
                "source": host.name,
                "target": plan.switch,
            }
        )
    return {"directed": False, "multigraph": False, "graph": {}, "nodes": nodes, "links": links}
