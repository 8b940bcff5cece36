"""L3 routes for the switch's `ipv4_lpm` table from a topology file.

Reads the `topology.json` p4-utils saves (networkx node-link data: nodes with `isHost` /
`isP4Switch`, `ip`, `mac`; links with `node1`/`node2`, `port1`/`port2`, `intfName1`/`intfName2`,
`addr1`/`addr2` (MACs) and `ip1`/`ip2`) and our own files of the same shape, which
`topology_document` / `save_topology` write. Pure apart from the two file helpers.
"""

from __future__ import annotations

import ipaddress
import json
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

NodeKind = Literal["host", "switch", "other"]


class TopologyError(ValueError):
    """A topology file is malformed or cannot route to a host."""


@dataclass(frozen=True)
class TopologyNode:
    """A host or switch; `ip` may carry a prefix length ("10.1.1.2/24")."""

    name: str
    kind: NodeKind
    ip: str | None = None
    mac: str | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LinkEnd:
    """One side of a link: the node, its port number and interface."""

    node: str
    port: int
    intf: str | None = None
    mac: str | None = None
    ip: str | None = None


@dataclass(frozen=True)
class TopologyLink:
    """A link between two interfaces."""

    end1: LinkEnd
    end2: LinkEnd


@dataclass(frozen=True)
class Topology:
    """Nodes by name and links, as read from a topology file."""

    nodes: Mapping[str, TopologyNode]
    links: tuple[TopologyLink, ...]


@dataclass(frozen=True)
class Route:
    """An `ipv4_lpm` entry: packets to `prefix` leave on `port` with these MACs."""

    prefix: str
    port: int
    src_mac: str
    dst_mac: str

    def keys(self) -> tuple[str, ...]:
        """Match keys for `table_add`."""
        return (self.prefix,)

    def params(self) -> tuple[str, ...]:
        """Action parameters of `forward(port, src_mac, dst_mac)`."""
        return (str(self.port), self.src_mac, self.dst_mac)


def _node_kind(attrs: Mapping[str, Any]) -> NodeKind:
    if attrs.get("isHost"):
        return "host"
    if attrs.get("isP4Switch") or attrs.get("isSwitch"):
        return "switch"
    return "other"


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def parse_topology(document: Mapping[str, Any]) -> Topology:
    """Read a node-link topology document (p4-utils `topology.json` or ours)."""
    raw_nodes = document.get("nodes")
    raw_links = document.get("links", document.get("edges"))
    if not isinstance(raw_nodes, list) or not isinstance(raw_links, list):
        raise TopologyError("topology needs a 'nodes' list and a 'links' (or 'edges') list")
    nodes: dict[str, TopologyNode] = {}
    for index, raw in enumerate(raw_nodes):
        if not isinstance(raw, Mapping) or "id" not in raw:
            raise TopologyError(f"nodes[{index}]: expected an object with an 'id', got {raw!r}")
        name = str(raw["id"])
        attrs = {k: v for k, v in raw.items() if k != "id"}
        nodes[name] = TopologyNode(
            name, _node_kind(attrs), _text(raw.get("ip")), _text(raw.get("mac")), attrs
        )
    links = []
    for index, raw in enumerate(raw_links):
        if not isinstance(raw, Mapping):
            raise TopologyError(f"links[{index}]: expected an object, got {raw!r}")
        ends = []
        for side, default_key in (("1", "source"), ("2", "target")):
            node = raw.get(f"node{side}", raw.get(default_key))
            port = raw.get(f"port{side}")
            if node is None or str(node) not in nodes:
                raise TopologyError(f"links[{index}]: unknown node{side} {node!r}")
            if not isinstance(port, int) or isinstance(port, bool) or port < 0:
                raise TopologyError(f"links[{index}]: port{side} must be an integer, got {port!r}")
            ends.append(
                LinkEnd(
                    str(node),
                    port,
                    _text(raw.get(f"intfName{side}")),
                    _text(raw.get(f"addr{side}")),
                    _text(raw.get(f"ip{side}")),
                )
            )
        links.append(TopologyLink(ends[0], ends[1]))
    return Topology(nodes, tuple(links))


def load_topology(path: str | Path) -> Topology:
    """Read and parse a topology file."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise TopologyError(f"cannot read topology {str(path)!r}: {exc}") from exc
    if not isinstance(document, Mapping):
        raise TopologyError(f"topology {str(path)!r} is not a JSON object")
    return parse_topology(document)


def _host_address(topology: Topology, host: str) -> ipaddress.IPv4Interface:
    candidates = [topology.nodes[host].ip]
    for link in topology.links:
        candidates += [end.ip for end in (link.end1, link.end2) if end.node == host]
    for text in candidates:
        if text:
            try:
                return ipaddress.IPv4Interface(text)
            except ValueError as exc:
                raise TopologyError(f"host {host!r} has a bad IPv4 address {text!r}") from exc
    raise TopologyError(f"host {host!r} has no IPv4 address")


def routes_for_switch(
    topology: Topology, switch: str, *, prefix: Literal["host", "subnet"] = "host"
) -> list[Route]:
    """Routes from `switch` to every reachable host, by shortest path through switches.

    `prefix="host"` gives one /32 per host; `"subnet"` gives the host interface's network
    (p4-utils' `l3()` puts each host in its own /24). Ties between equal paths go to the
    lowest port. Conflicting next hops for one prefix raise `TopologyError`.
    """
    if topology.nodes.get(switch) is None or topology.nodes[switch].kind != "switch":
        raise TopologyError(f"{switch!r} is not a switch of the topology")
    adjacent: dict[str, list[tuple[LinkEnd, LinkEnd]]] = {name: [] for name in topology.nodes}
    for link in topology.links:
        adjacent[link.end1.node].append((link.end1, link.end2))
        adjacent[link.end2.node].append((link.end2, link.end1))
    for ends in adjacent.values():
        ends.sort(key=lambda pair: (pair[0].port, pair[1].node))
    first_hop: dict[str, tuple[LinkEnd, LinkEnd]] = {}
    queue: deque[str] = deque()
    for local, remote in adjacent[switch]:
        if remote.node != switch and remote.node not in first_hop:
            first_hop[remote.node] = (local, remote)
            queue.append(remote.node)
    while queue:
        node = queue.popleft()
        if topology.nodes[node].kind != "switch":
            continue  # hosts do not forward
        for _, remote in adjacent[node]:
            if remote.node != switch and remote.node not in first_hop:
                first_hop[remote.node] = first_hop[node]
                queue.append(remote.node)
    routes: dict[str, Route] = {}
    for name in sorted(first_hop):
        if topology.nodes[name].kind != "host":
            continue
        local, remote = first_hop[name]
        address = _host_address(topology, name)
        network = address.network if prefix == "subnet" else ipaddress.IPv4Network(address.ip)
        if local.mac is None or remote.mac is None:
            raise TopologyError(f"link {local.node}:{local.port} - {remote.node} lacks a MAC")
        route = Route(str(network), local.port, local.mac, remote.mac)
        if routes.get(route.prefix, route) != route:
            raise TopologyError(
                f"prefix {route.prefix!r} reached through two next hops: "
                f"{routes[route.prefix]!r} and {route!r}"
            )
        routes[route.prefix] = route
    return sorted(routes.values(), key=lambda r: (ipaddress.IPv4Network(r.prefix), r.port))


def topology_document(
    nodes: Sequence[TopologyNode], links: Sequence[TopologyLink]
) -> dict[str, Any]:
    """A node-link document in the shape p4-utils saves (readable by `load_topo` too)."""
    node_objects = []
    for node in nodes:
        entry: dict[str, Any] = {"id": node.name, **node.attrs}
        entry.update(isHost=node.kind == "host", isSwitch=node.kind == "switch")
        entry.setdefault("isP4Switch", node.kind == "switch")
        if node.ip is not None:
            entry["ip"] = node.ip
        if node.mac is not None:
            entry["mac"] = node.mac
        node_objects.append(entry)
    link_objects = []
    for link in links:
        entry = {"source": link.end1.node, "target": link.end2.node}
        for side, end in (("1", link.end1), ("2", link.end2)):
            entry[f"node{side}"] = end.node
            entry[f"port{side}"] = end.port
            for key, value in (("intfName", end.intf), ("addr", end.mac), ("ip", end.ip)):
                if value is not None:
                    entry[f"{key}{side}"] = value
        link_objects.append(entry)
    return {
        "directed": False,
        "multigraph": False,
        "graph": {},
        "nodes": node_objects,
        "links": link_objects,
    }


def save_topology(
    path: str | Path, nodes: Sequence[TopologyNode], links: Sequence[TopologyLink]
) -> None:
    """Write `topology_document(nodes, links)` as JSON to `path`."""
    Path(path).write_text(json.dumps(topology_document(nodes, links), indent=2) + "\n")
