"""Addressing plan (p4-utils l3 convention) and the topology.json it saves."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topo.addressing import (
    AddressingError,
    host_address,
    make_plan,
    switch_interface,
    topology_json,
)


@pytest.mark.parametrize(
    ("number", "device", "expected"),
    [
        (1, 1, ("10.1.1.2", "10.1.1.1", "00:00:0a:01:01:02", "00:01:0a:01:01:02")),
        (3, 1, ("10.1.3.2", "10.1.3.1", "00:00:0a:01:03:02", "00:01:0a:01:03:02")),
        (17, 1, ("10.1.17.2", "10.1.17.1", "00:00:0a:01:11:02", "00:01:0a:01:11:02")),
        (200, 12, ("10.12.200.2", "10.12.200.1", "00:00:0a:0c:c8:02", "00:01:0a:0c:c8:02")),
    ],
)
def test_host_address_follows_p4utils_l3(
    number: int, device: int, expected: tuple[str, str, str, str]
) -> None:
    host = host_address(number, device)
    assert host.name == f"h{number}"
    assert (host.ip, host.gateway, host.mac, host.switch_mac) == expected
    assert host.switch_port == number
    assert host.cidr == f"{expected[0]}/24"


@pytest.mark.parametrize(("number", "device"), [(0, 1), (254, 1), (1, 0), (1, 300)])
def test_host_address_rejects_out_of_range(number: int, device: int) -> None:
    with pytest.raises(AddressingError, match=str(number if number in (0, 254) else device)):
        host_address(number, device)


def test_default_plan_has_two_clients_then_four_servers() -> None:
    plan = make_plan()
    assert [h.name for h in plan.clients] == ["h1", "h2"]
    assert [h.name for h in plan.servers] == ["h3", "h4", "h5", "h6"]
    assert plan.dips() == ("10.1.3.2:8080", "10.1.4.2:8080", "10.1.5.2:8080", "10.1.6.2:8080")
    assert plan.host("h4").ip == "10.1.4.2"
    with pytest.raises(AddressingError, match="h9"):
        plan.host("h9")


@pytest.mark.parametrize(("clients", "servers"), [(0, 4), (2, 0), (200, 60)])
def test_plan_rejects_impossible_shapes(clients: int, servers: int) -> None:
    with pytest.raises(AddressingError):
        make_plan(clients, servers)


@given(st.integers(1, 20), st.integers(1, 20))
def test_plan_addresses_and_ports_are_unique(clients: int, servers: int) -> None:
    plan = make_plan(clients, servers)
    hosts = plan.hosts
    assert len(hosts) == clients + servers
    for attribute in ("ip", "mac", "switch_mac", "switch_port", "gateway"):
        values = [getattr(h, attribute) for h in hosts]
        assert len(set(values)) == len(values), attribute


def test_topology_json_has_p4utils_shape() -> None:
    plan = make_plan(switch="s1")
    document = json.loads(json.dumps(topology_json(plan, thrift_port=9090)))
    nodes = {n["id"]: n for n in document["nodes"]}
    assert nodes["s1"]["isP4Switch"] is True and nodes["s1"]["thrift_port"] == 9090
    assert all(nodes[h.name]["isHost"] for h in plan.hosts)
    links = {(link["node1"], link["node2"]): link for link in document["links"]}
    link = links[("h5", "s1")]
    assert link["port2"] == 5 and link["port1"] == 0
    assert link["addr1"] == "00:00:0a:01:05:02" and link["addr2"] == "00:01:0a:01:05:02"
    assert link["ip1"] == "10.1.5.2/24" and link["ip2"] == "10.1.5.1/24"
    assert link["intfName2"] == switch_interface("s1", 5) == "s1-eth5"
    assert (link["source"], link["target"]) == ("h5", "s1")
    assert len(document["links"]) == len(plan.hosts)


def test_controller_reads_routes_from_our_topology_json() -> None:
    from controller.routing import parse_topology, routes_for_switch

    plan = make_plan()
    routes = routes_for_switch(parse_topology(topology_json(plan)), plan.switch)
    assert [(r.prefix, r.port, r.src_mac, r.dst_mac) for r in routes] == [
        (f"{h.ip}/32", h.switch_port, h.switch_mac, h.mac) for h in plan.hosts
    ]
