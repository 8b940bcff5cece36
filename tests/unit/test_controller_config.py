"""Config parsing: a good file loads into dataclasses; each bad value is reported with its place."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.config import ConfigError, ControllerSettings, load_config, parse_config

CATALOG = {"ratio": {"gain": 0.1}, "static": {}, "equal": {}}

GOOD = """
[controller]
policy = "ratio"
weight_bits = 8
quiet_period = 1.5
load_listen = "tcp://127.0.0.1:5555"
metrics_listen = ""

[policy_params]
gain = 0.2

[autoscale]
enabled = true
min_active = 1
max_active = 3

[[vip]]
name = "web"
ip = "10.0.0.100"
port = 80
protocol = "tcp"
  [[vip.dip]]
  ip = "10.1.3.2"
  port = 8080
  weight = 2
  [[vip.dip]]
  ip = "10.1.4.2"
  port = 8080
  state = "standby"

[[vip]]
name = "dns"
ip = "10.0.0.100"
port = 53
protocol = "udp"
  [[vip.dip]]
  ip = "10.1.3.2"
  port = 53
"""


def parse(text: str) -> object:
    return parse_config(text, policy_catalog=CATALOG)


def problems(text: str) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value.problems


def test_good_config_loads_every_field() -> None:
    config = parse_config(GOOD, policy_catalog=CATALOG)
    assert config.controller.quiet_period == 1.5
    assert config.controller.min_rollout_interval == ControllerSettings().min_rollout_interval
    assert config.controller.metrics_listen == ""
    assert config.policy_params == {"gain": 0.2}
    assert config.autoscale is not None and config.autoscale.max_active == 3
    web, dns = config.vips
    assert (web.name, web.protocol_number, dns.protocol_number) == ("web", 6, 17)
    assert [d.name for d in web.dips] == ["10.1.3.2:8080", "10.1.4.2:8080"]
    assert [(d.weight, d.state) for d in web.dips] == [(2, "active"), (1, "standby")]


def test_affinity_defaults_to_none_and_reads_client_ip_with_its_timeout() -> None:
    plain = parse_config(vip(), policy_catalog=CATALOG).vips[0]
    assert (plain.affinity, plain.affinity_timeout, plain.pins_clients) == ("none", 300.0, False)
    text = vip(extra='affinity = "client_ip"\naffinity_timeout = 30')
    pinned = parse_config(text, policy_catalog=CATALOG).vips[0]
    assert (pinned.affinity, pinned.affinity_timeout, pinned.pins_clients) == (
        "client_ip",
        30.0,
        True,
    )


def vip(dip: str = 'ip = "10.1.3.2"\nport = 8080', extra: str = "") -> str:
    return f'[[vip]]\nip = "10.0.0.1"\nport = 80\n{extra}\n[[vip.dip]]\n{dip}\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (vip('ip = "10.1.3.2"\nport = 70000'), "vip[0].dip[0].port: 70000 is not a port"),
        (
            vip('ip = "10.1.3.300"\nport = 1'),
            "vip[0].dip[0].ip: '10.1.3.300' is not an IPv4 address",
        ),
        (vip('ip = "10.1.3.2"'), "vip[0].dip[0].port: missing"),
        (
            vip('ip = "10.1.3.2"\nport = 1\nweight = -1'),
            "vip[0].dip[0].weight: -1 is not an integer",
        ),
        (vip('ip = "10.1.3.2"\nport = 1\nstate = "on"'), "vip[0].dip[0].state: 'on' is not one of"),
        (vip('ip = "10.1.3.2"\nport = 1\ncolour = 1'), "vip[0].dip[0].colour: unknown key"),
        (vip(extra='protocol = "sctp"'), "vip[0].protocol: 'sctp' is not one of tcp, udp"),
        (vip('ip = "10.1.3.2"\nport = 1\nstate = "standby"'), "vip[0].dip: no DIP is active"),
        (vip('ip = "10.1.3.2"\nport = 1\nweight = 0'), "vip[0].dip: every active DIP has weight 0"),
        (
            "[controller]\nweight_bits = 17\n" + vip(),
            "controller.weight_bits: 17 is not an integer in [1, 16]",
        ),
        (
            "[controller]\nquiet_period = -1\n" + vip(),
            "controller.quiet_period: -1 is not a number >= 0.0",
        ),
        (
            "[controller]\nmin_rollout_interval = 'x'\n" + vip(),
            "controller.min_rollout_interval: 'x'",
        ),
        ("[controller]\npolicy = 'best'\n" + vip(), "controller.policy: 'best' is not one of"),
        (
            "[controller]\nmetrics_listen = 'nope'\n" + vip(),
            "controller.metrics_listen: 'nope' is not HOST:PORT",
        ),
        (
            "[controller]\nload_listen = 5\n" + vip(),
            "controller.load_listen: 5 is not a ZeroMQ endpoint",
        ),
        ("[controller]\nspeed = 1\n" + vip(), "controller.speed: unknown key"),
        (
            "[controller]\nmax_version_connections = -1\n" + vip(),
            "controller.max_version_connections: -1 is not an integer",
        ),
        (
            "[controller]\nreport_interval = 0\n" + vip(),
            "controller.report_interval: 0 is not a number > 0.0",
        ),
        (
            "[policy_params]\nwobble = 1\n" + vip(),
            "policy_params.wobble: unknown parameter for policy 'ratio'",
        ),
        ("[autoscale]\nenabled = 1\n" + vip(), "autoscale.enabled: 1 is not true or false"),
        (
            "[autoscale]\nmin_active = 5\nmax_active = 2\n" + vip(),
            "autoscale.min_active: 5 exceeds max_active",
        ),
        ("[controller]\n", "vip: at least one [[vip]] is required"),
        (
            "[[vip]]\nip = '10.0.0.1'\nport = 80\n",
            "vip[0].dip: at least one [[vip.dip]] is required",
        ),
        (vip() + vip(), "vip[1]: 10.0.0.1:80/tcp already used by vip[0]"),
        ("a = [", "TOML syntax"),
        ("surprise = 1\n" + vip(), "surprise: unknown key"),
        (vip(extra='affinity = "cookie"'), "vip[0].affinity: 'cookie' is not one of"),
        (vip(extra="affinity_timeout = 0"), "vip[0].affinity_timeout: 0 is not a number > 0.0"),
        (vip(extra="affinity_timeout = 'long'"), "vip[0].affinity_timeout: 'long'"),
    ],
)
def test_bad_value_is_reported_with_its_location(text: str, expected: str) -> None:
    assert any(expected in p for p in problems(text)), problems(text)


def test_every_problem_is_reported_at_once() -> None:
    text = "[controller]\nweight_bits = 0\nquiet_period = 'soon'\n" + vip(
        'ip = "1.2.3"\nport = 0\nweight = 1.5'
    )
    found = problems(text)
    for where in (
        "controller.weight_bits",
        "controller.quiet_period",
        "vip[0].dip[0].ip",
        "vip[0].dip[0].port",
        "vip[0].dip[0].weight",
    ):
        assert any(p.startswith(where + ":") for p in found), (where, found)


def test_dip_shared_by_two_vips_of_one_protocol_is_rejected() -> None:
    text = (
        vip() + '[[vip]]\nip = "10.0.0.2"\nport = 80\n[[vip.dip]]\nip = "10.1.3.2"\nport = 8080\n'
    )
    assert any(
        "vip[1].dip[0]: 10.1.3.2:8080 already belongs to vip[0].dip[0]" in p for p in problems(text)
    )


def test_load_config_reads_a_file_and_reports_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(path, policy_catalog=CATALOG)
    path.write_text(vip('ip = "10.1.3.2"\nport = 8080\nstate = "standby"'))
    with pytest.raises(ConfigError) as info:
        load_config(path, policy_catalog=CATALOG)
    assert info.value.problems == ("vip[0].dip: no DIP is active",)


def _pool(dips: int) -> str:
    members = "".join(f'[[vip.dip]]\nip = "10.1.3.{i + 1}"\nport = 80\n' for i in range(dips))
    return f'[[vip]]\nip = "10.0.0.1"\nport = 80\n{members}'


def controller(lines: str) -> str:
    return f"[controller]\n{lines}\n" + vip()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "controller = 5\n" + vip(), "controller: 5 is not a table", id="controller-not-table"
        ),
        pytest.param(
            "policy_params = 3\n" + vip(), "policy_params: 3 is not a table", id="params-not-table"
        ),
        pytest.param(
            "autoscale = 'x'\n" + vip(), "autoscale: 'x' is not a table", id="autoscale-not-table"
        ),
        pytest.param("vip = 5", "vip: at least one [[vip]] is required", id="vip-not-array"),
        pytest.param("vip = [1]", "vip[0]: 1 is not a table", id="vip-entry-not-table"),
        pytest.param(
            '[[vip]]\nip = "10.0.0.1"\nport = 80\ndip = [1]\n',
            "vip[0].dip[0]: 1 is not a table",
            id="dip-entry-not-table",
        ),
        pytest.param(
            controller("quiet_period = nan"),
            "controller.quiet_period: nan is not a number",
            id="nan-rejected",
        ),
        pytest.param(
            controller("tcp_idle_timeout = inf"),
            "controller.tcp_idle_timeout: inf is not a number",
            id="inf-rejected",
        ),
        pytest.param(
            controller("weight_bits = true"),
            "controller.weight_bits: True is not an integer",
            id="bool-not-integer",
        ),
        pytest.param(
            controller("weight_bits = 8.0"),
            "controller.weight_bits: 8.0 is not an integer",
            id="float-not-integer",
        ),
        pytest.param(
            controller("min_weight_change = 1.5"),
            "controller.min_weight_change: 1.5 is not a number >= 0.0 <= 1.0",
            id="dead-band-above-1",
        ),
        pytest.param(
            controller("teardown_linger = '2s'"),
            "controller.teardown_linger: '2s' is not a number",
            id="duration-with-unit",
        ),
        pytest.param(
            controller("load_listen = 'tcp://0.0.0.0'"),
            "controller.load_listen: 'tcp://0.0.0.0' is not a ZeroMQ endpoint",
            id="load-listen-no-port",
        ),
        pytest.param(
            controller("load_listen = 'udp://0.0.0.0:5555'"),
            "controller.load_listen: 'udp://0.0.0.0:5555' is not",
            id="load-listen-bad-transport",
        ),
        pytest.param(
            controller("load_listen = 'tcp://:5555'"),
            "controller.load_listen: 'tcp://:5555' is not",
            id="load-listen-no-host",
        ),
        pytest.param(
            controller("load_listen = 'tcp://0.0.0.0:99999'"),
            "controller.load_listen: 'tcp://0.0.0.0:99999' is not",
            id="load-listen-port-range",
        ),
        pytest.param(
            controller("metrics_listen = '127.0.0.1:70000'"),
            "controller.metrics_listen: '127.0.0.1:70000' is not HOST:PORT",
            id="metrics-port-range",
        ),
        pytest.param(
            controller("metrics_listen = ':9100'"),
            "controller.metrics_listen: ':9100' is not HOST:PORT",
            id="metrics-no-host",
        ),
        pytest.param(
            "[policy_params]\ngain = 2\n" + vip(),
            "policy_params.gain: RatioParams.gain must be in [0.0, 1.0], got 2.0",
            id="param-out-of-range",
        ),
        pytest.param(
            "[policy_params]\ngain = true\n" + vip(),
            "policy_params.gain: True is not a number",
            id="param-bool",
        ),
        pytest.param(
            "[policy_params]\ngain = 'x'\n" + vip(),
            "policy_params.gain: 'x' is not a number",
            id="param-string",
        ),
        pytest.param(
            "[autoscale]\ntarget = 1.5\n" + vip(),
            "autoscale.target: 1.5 is not a number > 0.0 <= 1.0",
            id="autoscale-target-above-1",
        ),
        pytest.param(
            "[autoscale]\ntolerance = -0.1\n" + vip(),
            "autoscale.tolerance: -0.1 is not a number >= 0.0",
            id="autoscale-negative-tolerance",
        ),
        pytest.param(
            "[autoscale]\nmax_step_up = 0\n" + vip(),
            "autoscale.max_step_up: 0 is not an integer in [1, 65536]",
            id="autoscale-no-step",
        ),
        pytest.param(
            "[autoscale]\ncooldown_up = -1\n" + vip(),
            "autoscale.cooldown_up: -1 is not a number >= 0.0",
            id="autoscale-negative-cooldown",
        ),
        pytest.param(
            "[autoscale]\nspeed = 1\n" + vip(),
            "autoscale.speed: unknown key",
            id="autoscale-unknown-key",
        ),
        pytest.param(vip(extra="port = 81"), "TOML syntax", id="duplicate-key"),
        pytest.param(
            '[[vip]]\nport = 80\n[[vip.dip]]\nip = "10.1.1.1"\nport = 1\n',
            "vip[0].ip: missing",
            id="vip-ip-missing",
        ),
        pytest.param(
            vip(extra='name = ""'), "vip[0].name: '' is not a non-empty string", id="vip-name-empty"
        ),
        pytest.param(
            vip(dip='ip = "10.1.3.2"\nport = 80.0'),
            "vip[0].dip[0].port: 80.0 is not a port",
            id="float-port",
        ),
        pytest.param(
            vip(dip='ip = "10.1.3.2"\nport = "80"'),
            "vip[0].dip[0].port: '80' is not a port",
            id="string-port",
        ),
        pytest.param(
            vip(dip='ip = "10.1.3.2"\nport = 0'),
            "vip[0].dip[0].port: 0 is not a port",
            id="zero-port",
        ),
        pytest.param(
            vip(dip='ip = "::1"\nport = 1'),
            "vip[0].dip[0].ip: '::1' is not an IPv4 address",
            id="ipv6-dip",
        ),
        pytest.param(
            vip(dip="ip = 167772161\nport = 1"),
            "vip[0].dip[0].ip: 167772161 is not an IPv4 address",
            id="integer-ip",
        ),
        pytest.param(
            vip(dip='ip = "10.1.3.2"\nport = 1\nweight = 70000'),
            "vip[0].dip[0].weight: 70000 is not an integer in [0, 65536]",
            id="weight-too-big",
        ),
        pytest.param(
            vip(extra='name = "a"') + vip(extra='name = "a"').replace("port = 80", "port = 81"),
            "vip[1].name: 'a' already used by vip[0]",
            id="duplicate-vip-name",
        ),
        pytest.param(
            vip() * 257, "vip: 257 VIPs exceed the vip_table size 256", id="too-many-vips"
        ),
        pytest.param(
            "[controller]\nweight_bits = 1\n" + _pool(3),
            "vip[0].dip: 3 DIPs exceed the 2**weight_bits = 2 buckets",
            id="weight-bits-1-with-3-dips",
        ),
        pytest.param(
            "[controller]\nweight_bits = 2\n" + _pool(5),
            "vip[0].dip: 5 DIPs exceed the 2**weight_bits = 4 buckets",
            id="more-dips-than-buckets",
        ),
        pytest.param(
            "[autoscale]\ntarget = 1e-9\n" + vip(),
            "autoscale: AutoscaleParams.target must be in [1e-06, 1.0], got 1e-09",
            id="autoscale-target-below-its-floor",
        ),
        pytest.param(
            "[autoscale]\nmax_active = 0\n" + vip(),
            "autoscale.max_active: 0 is not an integer",
            id="autoscale-max-active-zero",
        ),
        pytest.param(
            controller("report_interval = inf"),
            "controller.report_interval: inf is not a number > 0.0",
            id="infinite-interval",
        ),
        pytest.param(
            controller("load_peer_timeout = nan"),
            "controller.load_peer_timeout: nan is not a number > 0.0",
            id="nan-peer-timeout",
        ),
        pytest.param(
            controller("load_max_connections = 0"),
            "controller.load_max_connections: 0 is not an integer in [1, 1048576]",
            id="no-connections",
        ),
        pytest.param("a = " + "[" * 5000 + "]" * 5000, "TOML syntax", id="deeply-nested"),
        pytest.param("a = " + "9" * 5000, "TOML syntax", id="huge-integer"),
    ],
)
def test_bad_config_case_is_reported_at_its_location(text: str, expected: str) -> None:
    assert any(expected in p for p in problems(text)), problems(text)


def test_problems_follow_the_order_of_the_file() -> None:
    text = controller("quiet_period = -1\npolicy = 5\nweight_bits = 0")
    assert [p.split(":")[0] for p in problems(text)] == [
        "controller.quiet_period",
        "controller.policy",
        "controller.weight_bits",
    ]


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b"\xff\xfe" + vip().encode())
    with pytest.raises(ConfigError) as info:
        load_config(path, policy_catalog=CATALOG)
    assert info.value.problems == (f"{path}: not UTF-8 text (byte 0)",)


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:5555", "tcp://127.0.0.1:*", "ipc:///tmp/lb"])
def test_load_listen_accepts_every_bindable_form(endpoint: str) -> None:
    config = parse_config(controller(f"load_listen = {endpoint!r}"), policy_catalog=CATALOG)
    assert config.controller.load_listen == endpoint


_SCALARS = (
    st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.text(max_size=20)
    | st.sampled_from(["10.1.3.2", "tcp://127.0.0.1:*", "ratio", "active", "tcp", "1.2.3.4:5"])
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_KEYS = st.sampled_from(
    [
        *ControllerSettings.__dataclass_fields__,
        "ip",
        "port",
        "weight",
        "state",
        "dip",
        "vip",
        "target",
        "min_active",
        "max_active",
        "enabled",
        "gain",
        "name",
        "protocol",
    ]
) | st.text(max_size=8)


def _toml(value: object) -> str:
    """An inline TOML rendering of a JSON-like value (floats as TOML spells inf and nan)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | str):
        return json.dumps(value) if isinstance(value, str) else str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


@st.composite
def _documents(draw: st.DrawFn) -> str:
    """TOML documents shaped like ours: known tables and keys, values of every type."""
    lines = []
    for table in draw(
        st.lists(
            st.sampled_from(
                ["controller", "autoscale", "policy_params", "[vip]", "[vip.dip]", "x"]
            ),
            max_size=6,
        )
    ):
        lines.append(f"[{table}]")
        for key, value in draw(st.dictionaries(_KEYS, _VALUES, max_size=5)).items():
            lines.append(f"{json.dumps(key)} = {_toml(value)}")
    return "\n".join(lines) + "\n"


@settings(max_examples=400, deadline=None)
@given(st.one_of(_documents(), st.text(max_size=200)))
def test_no_toml_input_produces_anything_but_a_config_or_a_config_error(text: str) -> None:
    try:
        parse_config(text + "\n" + vip(), policy_catalog=CATALOG)
        parse_config(text)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) for p in exc.problems)
