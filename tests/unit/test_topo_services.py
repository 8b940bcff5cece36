"""Controller config and command lines the topologies build; cgroup layout parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import parse_config
from topo.addressing import make_plan
from topo.cgroups import CgroupError, parse_layout, quota_files
from topo.services import ControllerKnobs, ServerSpec, controller_toml, server_argv


def _servers() -> list[ServerSpec]:
    return [
        ServerSpec(h, cpu) for h, cpu in zip(make_plan().servers, (0.1, 0.2, 0.3, 0.4), strict=True)
    ]


@pytest.mark.parametrize("udp", [False, True])
def test_controller_toml_is_a_valid_config(udp: bool) -> None:
    text = controller_toml(
        _servers(), "ipc:///tmp/x/load.sock", ControllerKnobs(policy="equal"), udp_vip=udp
    )
    config = parse_config(text, policy_catalog={"equal": {}, "ratio": {}})
    assert config.controller.policy == "equal"
    assert config.controller.load_listen == "ipc:///tmp/x/load.sock"
    assert [(v.ip, v.port, v.protocol) for v in config.vips] == [("10.0.0.100", 80, "tcp")] + (
        [("10.0.0.100", 53, "udp")] if udp else []
    )
    assert [d.name for d in config.vips[0].dips] == list(make_plan().dips())
    assert all(v.affinity == "none" for v in config.vips)


def test_the_iperf_vip_pins_clients_to_servers_on_the_iperf_port() -> None:
    text = controller_toml(_servers(), "ipc:///tmp/x/load.sock", iperf_vip=True)
    config = parse_config(text, policy_catalog={"ratio": {}})
    web, iperf = config.vips
    assert (web.affinity, iperf.affinity, iperf.port) == ("none", "client_ip", 5201)
    assert [d.name for d in iperf.dips] == list(make_plan().dips(5201))


def test_server_argv_tags_responses_with_the_dip() -> None:
    argv = server_argv(Path("/venv/bin/python"), _servers()[1], udp=True)
    assert argv[argv.index("--id") + 1] == "10.1.4.2:8080"
    assert argv[-1] == "--udp"


V1_MOUNTS = """\
tmpfs /sys/fs/cgroup tmpfs rw 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0
"""
COMBINED_MOUNTS = "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\n"


@pytest.mark.parametrize(
    ("mounts", "cpu", "cpuacct"),
    [
        (V1_MOUNTS, "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct"),
        (COMBINED_MOUNTS, "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct"),
    ],
)
def test_v1_layout_finds_cpu_and_cpuacct(mounts: str, cpu: str, cpuacct: str) -> None:
    layout = parse_layout(mounts)
    assert (layout.version, layout.cpu, layout.cpuacct) == (1, Path(cpu), Path(cpuacct))


def test_layout_without_any_cpu_controller_is_an_error() -> None:
    with pytest.raises(CgroupError):
        parse_layout("cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n")


@pytest.mark.parametrize(
    ("version", "fraction", "files"),
    [
        (1, 0.1, {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "10000"}),
        (1, 0.001, {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "1000"}),
        (2, 0.4, {"cpu.max": "40000 100000"}),
        (2, 1.5, {"cpu.max": "150000 100000"}),
    ],
)
def test_quota_files(version: int, fraction: float, files: dict[str, str]) -> None:
    assert quota_files(version, fraction) == files


@pytest.mark.parametrize("fraction", [0.0, -1.0, 100.0])
def test_quota_rejects_nonsense(fraction: float) -> None:
    with pytest.raises(CgroupError, match=repr(fraction)):
        quota_files(1, fraction)


def test_policy_params_are_rendered_for_the_chosen_policy() -> None:
    knobs = ControllerKnobs(policy="ratio", policy_params=(("jump", 0.3),))
    text = controller_toml(_servers(), "tcp://127.0.0.1:5555", knobs)
    config = parse_config(text, policy_catalog={"ratio": {"jump": 0.15}})
    assert dict(config.policy_params) == {"jump": 0.3}
