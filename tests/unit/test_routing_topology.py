"""Routes for ipv4_lpm from p4-utils-shaped topology documents."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from controller.routing import (
    LinkEnd,
    Route,
    TopologyError,
    TopologyLink,
    TopologyNode,
    load_topology,
    parse_topology,
    routes_for_switch,
    save_topology,
    topology_document,
)
from controller.switch.model_client import ModelSwitchClient
from p4model import Switch
from p4src.contract import FORWARD, ROUTE_TABLE

sync = SynchronousTestCase()


def host(name: str, ip: str, mac: str) -> dict[str, Any]:
    return {"id": name, "isHost": True, "ip": ip, "mac": mac}


def link(end1: tuple[str, int, str], end2: tuple[str, int, str], **extra: Any) -> dict[str, Any]:
    (n1, p1, a1), (n2, p2, a2) = end1, end2
    return {
        "source": n1,
        "target": n2,
        "node1": n1,
        "node2": n2,
        "port1": p1,
        "port2": p2,
        "intfName1": f"{n1}-eth{p1}",
        "intfName2": f"{n2}-eth{p2}",
        "addr1": a1,
        "addr2": a2,
        **extra,
    }


# What p4-utils' NetworkAPI with l3() saves for s1 (device 1) with hosts h1, h2, h3.
ONE_SWITCH: dict[str, Any] = {
    "directed": False,
    "multigraph": False,
    "graph": {},
    "nodes": [
        {"id": "s1", "isP4Switch": True, "isSwitch": True, "thrift_port": 9090, "device_id": 1},
        host("h1", "10.1.1.2/24", "00:00:0a:01:01:02"),
        host("h2", "10.1.2.2/24", "00:00:0a:01:02:02"),
        host("h3", "10.1.3.2/24", "00:00:0a:01:03:02"),
    ],
    "links": [
        link(("h1", 0, "00:00:0a:01:01:02"), ("s1", 1, "00:01:0a:01:01:02"), ip1="10.1.1.2/24"),
        link(("s1", 2, "00:01:0a:01:02:02"), ("h2", 0, "00:00:0a:01:02:02"), ip2="10.1.2.2/24"),
        link(("h3", 0, "00:00:0a:01:03:02"), ("s1", 3, "00:01:0a:01:03:02"), ip1="10.1.3.2/24"),
    ],
}

# h1 - s1 - s2 - h2 : s1 reaches h2 through s2.
TWO_SWITCHES: dict[str, Any] = {
    "nodes": [
        {"id": "s1", "isP4Switch": True},
        {"id": "s2", "isP4Switch": True},
        host("h1", "10.1.1.2/24", "00:00:0a:01:01:02"),
        host("h2", "10.2.1.2/24", "00:00:0a:02:01:02"),
    ],
    "edges": [
        link(("h1", 0, "00:00:0a:01:01:02"), ("s1", 1, "00:01:0a:01:01:02")),
        link(("s1", 2, "00:01:00:00:00:12"), ("s2", 2, "00:01:00:00:00:22")),
        link(("s2", 1, "00:01:0a:02:01:02"), ("h2", 0, "00:00:0a:02:01:02")),
    ],
}


@pytest.mark.parametrize(
    ("name", "document", "switch", "prefix", "expected"),
    [
        (
            "one switch, host routes",
            ONE_SWITCH,
            "s1",
            "host",
            [
                Route("10.1.1.2/32", 1, "00:01:0a:01:01:02", "00:00:0a:01:01:02"),
                Route("10.1.2.2/32", 2, "00:01:0a:01:02:02", "00:00:0a:01:02:02"),
                Route("10.1.3.2/32", 3, "00:01:0a:01:03:02", "00:00:0a:01:03:02"),
            ],
        ),
        (
            "one switch, subnet routes",
            ONE_SWITCH,
            "s1",
            "subnet",
            [
                Route("10.1.1.0/24", 1, "00:01:0a:01:01:02", "00:00:0a:01:01:02"),
                Route("10.1.2.0/24", 2, "00:01:0a:01:02:02", "00:00:0a:01:02:02"),
                Route("10.1.3.0/24", 3, "00:01:0a:01:03:02", "00:00:0a:01:03:02"),
            ],
        ),
        (
            "remote host via the next switch",
            TWO_SWITCHES,
            "s1",
            "host",
            [
                Route("10.1.1.2/32", 1, "00:01:0a:01:01:02", "00:00:0a:01:01:02"),
                Route("10.2.1.2/32", 2, "00:01:00:00:00:12", "00:01:00:00:00:22"),
            ],
        ),
        (
            "the other switch's view",
            TWO_SWITCHES,
            "s2",
            "host",
            [
                Route("10.1.1.2/32", 2, "00:01:00:00:00:22", "00:01:00:00:00:12"),
                Route("10.2.1.2/32", 1, "00:01:0a:02:01:02", "00:00:0a:02:01:02"),
            ],
        ),
    ],
)
def test_routes_follow_the_topology(
    name: str, document: dict[str, Any], switch: str, prefix: Any, expected: list[Route]
) -> None:
    assert routes_for_switch(parse_topology(document), switch, prefix=prefix) == expected, name


def broken(change: Any) -> dict[str, Any]:
    document = copy.deepcopy(ONE_SWITCH)
    change(document)
    return document


@pytest.mark.parametrize(
    ("name", "document", "switch", "needle"),
    [
        ("no nodes", {"links": []}, "s1", "'nodes' list"),
        (
            "node without id",
            broken(lambda d: d["nodes"].append({"ip": "1.2.3.4"})),
            "s1",
            "nodes[4]",
        ),
        ("unknown link node", broken(lambda d: d["links"][0].update(node1="hx")), "s1", "'hx'"),
        ("port not a number", broken(lambda d: d["links"][1].update(port1="2")), "s1", "port1"),
        ("not a switch", ONE_SWITCH, "h1", "'h1' is not a switch"),
        ("missing switch", ONE_SWITCH, "s9", "'s9'"),
        ("missing MAC", broken(lambda d: d["links"][2].pop("addr2")), "s1", "lacks a MAC"),
        (
            "bad host IP",
            broken(lambda d: d["nodes"][1].update(ip="10.1.1.999/24")),
            "s1",
            "bad IPv4",
        ),
        (
            "host without IP",
            broken(lambda d: [d["nodes"][1].pop("ip"), d["links"][0].pop("ip1")]),
            "s1",
            "no IPv4",
        ),
    ],
)
def test_bad_topologies_are_refused(
    name: str, document: dict[str, Any], switch: str, needle: str
) -> None:
    with pytest.raises(TopologyError, match=None) as raised:
        routes_for_switch(parse_topology(document), switch)
    assert needle in str(raised.value), name


def test_two_hosts_in_one_subnet_on_different_ports_conflict() -> None:
    document = broken(lambda d: d["nodes"][2].update(ip="10.1.1.3/24"))
    document["links"][1].pop("ip2")
    with pytest.raises(TopologyError, match="two next hops"):
        routes_for_switch(parse_topology(document), "s1", prefix="subnet")


def test_our_writer_round_trips_through_the_reader(tmp_path: Path) -> None:
    nodes = [
        TopologyNode("s1", "switch", attrs={"thrift_port": 9090}),
        TopologyNode("h1", "host", "10.1.1.2/24", "00:00:0a:01:01:02"),
        TopologyNode("h2", "host", "10.1.2.2/24", "00:00:0a:01:02:02"),
    ]
    links = [
        TopologyLink(
            LinkEnd("h1", 0, "h1-eth0", "00:00:0a:01:01:02", "10.1.1.2/24"),
            LinkEnd("s1", 1, "s1-eth1", "00:01:0a:01:01:02"),
        ),
        TopologyLink(
            LinkEnd("h2", 0, "h2-eth0", "00:00:0a:01:02:02", "10.1.2.2/24"),
            LinkEnd("s1", 2, "s1-eth2", "00:01:0a:01:02:02"),
        ),
    ]
    path = tmp_path / "topology.json"
    save_topology(path, nodes, links)
    loaded = load_topology(path)
    assert loaded.nodes["s1"].attrs["thrift_port"] == 9090
    assert loaded.links == tuple(links)
    assert routes_for_switch(loaded, "s1") == [
        Route("10.1.1.2/32", 1, "00:01:0a:01:01:02", "00:00:0a:01:01:02"),
        Route("10.1.2.2/32", 2, "00:01:0a:01:02:02", "00:00:0a:01:02:02"),
    ]
    document = topology_document(nodes, links)
    assert document["links"][0]["intfName2"] == "s1-eth1"
    assert document["nodes"][0]["isP4Switch"] is True


def test_unreadable_files_raise_topology_error(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="cannot read"):
        load_topology(tmp_path / "missing.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(TopologyError, match="not a JSON object"):
        load_topology(tmp_path / "list.json")


def test_installed_routes_forward_in_the_model() -> None:
    clock = task.Clock()
    client = ModelSwitchClient(Switch(clock=clock.seconds), clock)
    routes = routes_for_switch(parse_topology(ONE_SWITCH), "s1")
    handles = [
        sync.successResultOf(
            defer.ensureDeferred(client.table_add(ROUTE_TABLE, FORWARD, r.keys(), r.params()))
        )
        for r in routes
    ]
    assert len(set(handles)) == 3
    packet = Ether(dst="00:01:0a:01:01:02") / IP(src="10.1.1.2", dst="10.1.2.2", ttl=9) / UDP()
    ((port, frame),) = client.switch.process(1, bytes(packet))
    out = Ether(frame)
    assert (port, out.src, out.dst, out[IP].ttl) == (2, "00:01:0a:01:02:02", "00:00:0a:01:02:02", 8)


@given(st.sets(st.integers(1, 250), min_size=1, max_size=30))
def test_every_host_of_a_star_gets_one_route_out_of_its_own_port(ports: set[int]) -> None:
    nodes = [TopologyNode("s1", "switch")]
    links = []
    for port in sorted(ports):
        name, mac = f"h{port}", f"00:00:0a:01:{port:02x}:02"
        nodes.append(TopologyNode(name, "host", f"10.1.{port}.2/24", mac))
        links.append(
            TopologyLink(
                LinkEnd(name, 0, None, mac), LinkEnd("s1", port, None, f"00:01:0a:01:{port:02x}:02")
            )
        )
    routes = routes_for_switch(parse_topology(topology_document(nodes, links)), "s1")
    assert {(r.prefix, r.port) for r in routes} == {(f"10.1.{p}.2/32", p) for p in ports}
    assert all(r.dst_mac == f"00:00:0a:01:{r.port:02x}:02" for r in routes)
