"""Controller configuration: the TOML schema, validated into frozen dataclasses.

Every problem in a file is collected (with its location, e.g. `vip[0].dip[2].port`) and reported
together in one `ConfigError`, so `p4lb-controller --check-config FILE` shows them all at once.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.validation import Problems
from policy import PolicyError
from policy.autoscale import AutoscaleParams

PROTOCOLS: Mapping[str, int] = {"tcp": 6, "udp": 17}
AFFINITIES = ("none", "client_ip")
AFFINITY_TIMEOUT_DEFAULT = 300.0
MEMBER_STATES = ("active", "standby")
HASH_BITS_DEFAULT = 16
VIP_LIMIT_DEFAULT = 256


class ConfigError(ValueError):
    """A configuration file has one or more problems; `problems` lists each with its location."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems: tuple[str, ...] = tuple(problems)


@dataclass(frozen=True)
class ControllerSettings:
    """The `[controller]` table; times in seconds."""

    policy: str = "ratio"
    """Key of policy.POLICIES; the CLI's --policy overrides it."""
    weight_bits: int = 8
    """Each pool's integer weights sum to 2**weight_bits (at most HASH_BITS)."""
    report_interval: float = 0.5
    """The agents' report interval; a DIP is down after 3 missed reports."""
    min_rollout_interval: float = 1.0
    """Minimum time between two rollouts."""
    quiet_period: float = 2.0
    """A version slot must have been inactive (no digests either) this long before reuse."""
    tcp_idle_timeout: float = 120.0
    """Idle time after which a TCP conn_table entry is removed."""
    udp_idle_timeout: float = 30.0
    """Idle time after which a UDP conn_table entry is removed."""
    teardown_linger: float = 2.0
    """Time a TCP entry stays after FIN/RST (TIME_WAIT-like)."""
    load_listen: str = "tcp://127.0.0.1:5555"
    """ZeroMQ PULL endpoint for agents' load reports; binding beyond loopback needs CURVE with an
    allow-list (or --insecure-load-listen)."""
    load_max_connections: int = 1024
    """Agent connections the load feed serves at once; more are refused at the handshake."""
    load_peer_timeout: float = 15.0
    """An agent connection silent this long (ZeroMQ heartbeats included) is dropped."""
    metrics_listen: str = "127.0.0.1:9100"
    """HOST:PORT of the Prometheus endpoint; empty disables it."""
    admin_listen: str = "127.0.0.1:9180"
    """Where the admin API listens: HOST:PORT, or the absolute path of a Unix socket (created
    0600: local users who can open it need no token); empty disables it."""
    admin_token_file: str = ""
    """File holding the bearer token for the admin API's changes (`p4lb-ctl --make-token FILE`
    writes one); empty or missing: changes over TCP are refused."""
    min_weight_change: float = 0.02
    """Dead-band: roll out only if some weight moves by more than this fraction of the total."""
    drain_timeout: float = 300.0
    """A draining member is removed after this long even if connections remain."""
    slow_start: float = 10.0
    """A member that turns active (added, undrained, activated) ramps from no share to its
    full share over this long; 0 = at once."""
    restart_hold: float = 30.0
    """After attaching to a switch that kept state, hold slot reuse this long."""
    switch_check_interval: float = 1.0
    """How often the controller checks that the switch still holds its entries (a switch that
    restarted empty is reprogrammed); 0 = never."""
    max_version_connections: int = 2000
    """Roll out a fresh version after this many connections joined the active one, even with
    unchanged weights (keeps Bloom false positives rare; see controller.core.rollout); 0 = never."""


@dataclass(frozen=True)
class DipConfig:
    """One `[[vip.dip]]`: a backend server and its initial weight and state."""

    ip: str
    port: int
    weight: int = 1
    state: str = "active"

    @property
    def name(self) -> str:
        """The DIP's name everywhere (reports, records, metrics): "ip:port"."""
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class VipConfig:
    """One `[[vip]]`: a virtual service and its pool of DIPs (pool id = index in the file)."""

    name: str
    ip: str
    port: int
    protocol: str
    dips: tuple[DipConfig, ...]
    affinity: str = "none"
    """"none" (each connection hashed on its 5-tuple) or "client_ip" (all connections of one
    client address go to one DIP while its affinity lives)."""
    affinity_timeout: float = AFFINITY_TIMEOUT_DEFAULT
    """Seconds a client stays pinned after its last connection to this VIP ended."""

    @property
    def protocol_number(self) -> int:
        """IP protocol number (6 or 17)."""
        return PROTOCOLS[self.protocol]

    @property
    def pins_clients(self) -> bool:
        """Whether the VIP has client-IP affinity."""
        return self.affinity == "client_ip"


@dataclass(frozen=True)
class Config:
    """A whole validated configuration file."""

    controller: ControllerSettings
    vips: tuple[VipConfig, ...]
    policy_params: Mapping[str, float] = field(default_factory=dict)
    autoscale: AutoscaleParams | None = None
    """The `[autoscale]` table when `enabled = true` (None: autoscaling off)."""


def load_config(
    path: Path,
    *,
    hash_bits: int = HASH_BITS_DEFAULT,
    policy_catalog: Mapping[str, Mapping[str, float]] | None = None,
) -> Config:
    """Read and validate a TOML file; raise ConfigError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start})"]) from exc
    return parse_config(text, source=str(path), hash_bits=hash_bits, policy_catalog=policy_catalog)


def parse_config(
    text: str,
    *,
    source: str = "<config>",
    hash_bits: int = HASH_BITS_DEFAULT,
    policy_catalog: Mapping[str, Mapping[str, float]] | None = None,
) -> Config:
    """Validate TOML text; `policy_catalog` maps policy names to their parameter defaults."""
    try:
        data = tomllib.loads(text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError; integer digit limits; nesting
        raise ConfigError([f"{source}: TOML syntax: {type(exc).__name__}: {exc}"]) from None
    checker = _Checker(hash_bits, policy_catalog if policy_catalog is not None else _catalog())
    config = checker.config(data)
    if checker.problems or config is None:
        raise ConfigError(checker.problems)
    return config


def policy_params_problem(policy_name: str, params: Mapping[str, object]) -> str | None:
    """Why `params` are invalid for the named policy (None if valid or the policy is unknown)."""
    import policy  # noqa: PLC0415 - the parameter dataclasses validate their own values
    from policy.params import build_params  # noqa: PLC0415

    cls = policy.PARAMS.get(policy_name)
    if cls is None:
        return None
    try:
        build_params(cls, params)
    except policy.PolicyError as exc:
        return str(exc)
    return None


def policy_problem(policy_name: str, params: Mapping[str, object]) -> str | None:
    """Why policy `policy_name` cannot run with `params` (None if it can): an unknown name, or
    parameters refused as `[policy_params]` would be."""
    import policy  # noqa: PLC0415

    if policy_name not in policy.POLICIES:
        return f"unknown policy {policy_name!r}; choose from {', '.join(sorted(policy.POLICIES))}"
    return policy_params_problem(policy_name, params)


def _catalog() -> dict[str, Mapping[str, float]]:
    import policy  # noqa: PLC0415 - only needed when no catalog is given

    return {name: policy.policy_params(name) for name in policy.POLICIES}


_POSITIVE_FIELDS = {
    "report_interval",
    "tcp_idle_timeout",
    "udp_idle_timeout",
    "drain_timeout",
    "load_peer_timeout",
}
_FLOAT_FIELDS = {
    "load_peer_timeout",
    "report_interval",
    "min_rollout_interval",
    "quiet_period",
    "tcp_idle_timeout",
    "udp_idle_timeout",
    "teardown_linger",
    "drain_timeout",
    "slow_start",
    "restart_hold",
    "switch_check_interval",
}


class _Checker(Problems):
    """Walks parsed TOML, collecting problems instead of stopping at the first."""

    def __init__(self, hash_bits: int, catalog: Mapping[str, Mapping[str, float]]) -> None:
        super().__init__()
        self.hash_bits = hash_bits
        self.catalog = catalog

    def table(self, data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.bad(key, f"{value!r} is not a table")
            return {}
        return value

    def unknown(self, where: str, table: Mapping[str, Any], allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                prefix = f"{where}." if where else ""
                self.bad(f"{prefix}{key}", "unknown key")

    def config(self, data: Mapping[str, Any]) -> Config | None:
        self.unknown("", data, {"controller", "policy_params", "autoscale", "vip"})
        settings = self.settings(self.table(data, "controller"))
        params = self.policy_params(self.table(data, "policy_params"), settings.policy)
        autoscale = self.autoscale(self.table(data, "autoscale"))
        vips = self.vips(data.get("vip", []), settings.weight_bits)
        if self.problems:
            return None
        return Config(settings, vips, params, autoscale)

    def settings(self, table: Mapping[str, Any]) -> ControllerSettings:
        defaults = ControllerSettings()
        allowed = set(defaults.__dataclass_fields__)
        self.unknown("controller", table, allowed)
        values: dict[str, Any] = {}
        for key in [k for k in table if k in allowed]:  # file order: problems read top-down
            where, value = f"controller.{key}", table[key]
            if key in _FLOAT_FIELDS:
                ok = self.number(where, value, minimum=0.0, strict=key in _POSITIVE_FIELDS)
            elif key == "min_weight_change":
                ok = self.number(where, value, minimum=0.0, maximum=1.0)
            elif key == "weight_bits":
                ok = self.integer(where, value, 1, self.hash_bits)
            elif key == "max_version_connections":
                ok = self.integer(where, value, 0, 1 << 31)
            elif key == "load_max_connections":
                ok = self.integer(where, value, 1, 1 << 20)
            elif key == "policy":
                ok = self.choice(where, value, self.catalog)
            elif key == "load_listen":
                ok = self.zmq_endpoint(where, value)
            elif key == "metrics_listen":
                ok = self.host_port(where, value, allow_empty=True)
            elif key == "admin_listen":
                ok = self.admin_address(where, value)
            elif key == "admin_token_file":
                ok = self.check(where, isinstance(value, str), f"{value!r} is not a path")
            else:
                ok = self.check(where, False, "no check for this key (a bug)")
            if ok:
                values[key] = float(value) if key in _FLOAT_FIELDS else value
        return ControllerSettings(**values)

    def policy_params(self, table: Mapping[str, Any], policy: str) -> dict[str, float]:
        known = self.catalog.get(policy, {})
        params: dict[str, float] = {}
        for key, value in table.items():
            where = f"policy_params.{key}"
            if key not in known:
                self.bad(where, f"unknown parameter for policy {policy!r}")
            elif self.number(where, value):
                problem = policy_params_problem(policy, {key: float(value)})
                if problem is None:
                    params[key] = float(value)
                else:
                    self.bad(where, problem)
        if params and len(params) == len(table):
            # Each value alone is fine; some constraints tie two parameters together.
            problem = policy_params_problem(policy, params)
            if problem is not None:
                self.bad("policy_params", problem)
        return params

    def autoscale(self, table: Mapping[str, Any]) -> AutoscaleParams | None:
        defaults = AutoscaleParams()
        allowed = set(defaults.__dataclass_fields__)
        self.unknown("autoscale", table, allowed | {"enabled"})
        enabled = table.get("enabled", False)
        if "enabled" in table:
            self.boolean("autoscale.enabled", enabled)
        values: dict[str, Any] = {}
        for key in [k for k in table if k in allowed]:
            where, value = f"autoscale.{key}", table[key]
            current = getattr(defaults, key)
            if isinstance(current, int):
                ok = self.integer(where, value, 0 if key == "min_active" else 1, 1 << 16)
            elif key in ("target", "tolerance"):
                ok = self.number(where, value, minimum=0.0, maximum=1.0, strict=key == "target")
            else:
                ok = self.number(where, value, minimum=0.0)
            if ok:
                values[key] = float(value) if isinstance(current, float) else value
        min_active = values.get("min_active", defaults.min_active)
        if min_active > values.get("max_active", defaults.max_active):
            self.bad("autoscale.min_active", f"{min_active!r} exceeds max_active")
            return None
        try:
            result = AutoscaleParams(**values)
        except PolicyError as exc:
            self.bad("autoscale", str(exc))
            return None
        return result if enabled is True else None

    def vips(self, raw: Any, weight_bits: int) -> tuple[VipConfig, ...]:
        if not isinstance(raw, list) or not raw:
            self.bad("vip", "at least one [[vip]] is required")
            return ()
        if len(raw) > VIP_LIMIT_DEFAULT:
            self.bad("vip", f"{len(raw)} VIPs exceed the vip_table size {VIP_LIMIT_DEFAULT}")
        vips: list[VipConfig] = []
        services: dict[tuple[str, int, str], str] = {}
        owners: dict[tuple[str, int, str], str] = {}
        names: dict[str, str] = {}
        for i, item in enumerate(raw):
            where = f"vip[{i}]"
            if not isinstance(item, dict):
                self.bad(where, f"{item!r} is not a table")
                continue
            vip = self.vip(where, item)
            if vip is None:
                continue
            if len(vip.dips) > 1 << weight_bits:
                self.bad(
                    f"{where}.dip",
                    f"{len(vip.dips)} DIPs exceed the 2**weight_bits = {1 << weight_bits} buckets"
                    " (every DIP needs one; raise controller.weight_bits)",
                )
            service = (vip.ip, vip.port, vip.protocol)
            if service in services:
                self.bad(
                    where, f"{vip.ip}:{vip.port}/{vip.protocol} already used by {services[service]}"
                )
            services.setdefault(service, where)
            if vip.name in names:
                self.bad(f"{where}.name", f"{vip.name!r} already used by {names[vip.name]}")
            names.setdefault(vip.name, where)
            for j, dip in enumerate(vip.dips):
                key = (dip.ip, dip.port, vip.protocol)
                if key in owners:
                    self.bad(f"{where}.dip[{j}]", f"{dip.name} already belongs to {owners[key]}")
                owners.setdefault(key, f"{where}.dip[{j}]")
            vips.append(vip)
        return tuple(vips)

    def vip(self, where: str, item: Mapping[str, Any]) -> VipConfig | None:
        self.unknown(
            where, item, {"name", "ip", "port", "protocol", "dip", "affinity", "affinity_timeout"}
        )
        before = len(self.problems)
        name = item.get("name", where)
        if not isinstance(name, str) or not name:
            self.bad(f"{where}.name", f"{name!r} is not a non-empty string")
        ip = self.required(where, item, "ip", self.ipv4)
        port = self.required(where, item, "port", self.port)
        protocol = item.get("protocol", "tcp")
        self.choice(f"{where}.protocol", protocol, PROTOCOLS)
        affinity = item.get("affinity", "none")
        self.choice(f"{where}.affinity", affinity, AFFINITIES)
        timeout = item.get("affinity_timeout", AFFINITY_TIMEOUT_DEFAULT)
        self.number(f"{where}.affinity_timeout", timeout, minimum=0.0, strict=True)
        raw_dips = item.get("dip", [])
        dips: list[DipConfig] = []
        if not isinstance(raw_dips, list) or not raw_dips:
            self.bad(f"{where}.dip", "at least one [[vip.dip]] is required")
            raw_dips = []
        for j, raw in enumerate(raw_dips):
            dip = self.dip(f"{where}.dip[{j}]", raw)
            if dip is not None:
                dips.append(dip)
        if raw_dips and len(dips) == len(raw_dips):
            if not any(d.state == "active" for d in dips):
                self.bad(f"{where}.dip", "no DIP is active")
            elif not any(d.weight > 0 for d in dips if d.state == "active"):
                self.bad(f"{where}.dip", "every active DIP has weight 0")
        if len(self.problems) != before:
            return None
        return VipConfig(
            str(name),
            str(ip),
            int(port),
            str(protocol),
            tuple(dips),
            str(affinity),
            float(timeout),
        )

    def dip(self, where: str, raw: Any) -> DipConfig | None:
        if not isinstance(raw, dict):
            self.bad(where, f"{raw!r} is not a table")
            return None
        self.unknown(where, raw, {"ip", "port", "weight", "state"})
        before = len(self.problems)
        ip = self.required(where, raw, "ip", self.ipv4)
        port = self.required(where, raw, "port", self.port)
        weight = raw.get("weight", 1)
        self.integer(f"{where}.weight", weight, 0, 1 << 16)
        state = raw.get("state", "active")
        self.choice(f"{where}.state", state, MEMBER_STATES)
        if len(self.problems) != before:
            return None
        return DipConfig(str(ip), int(port), int(weight), str(state))
