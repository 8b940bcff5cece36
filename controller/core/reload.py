"""A declarative reload as a value: what changed between the running file and the new one (pure).

`plan_reload` compares the configuration the controller runs with (the file as last read, not
the runtime state: what the admin API changed since stays unless the file changes that very
thing) with a newly validated one, and returns a `ReloadPlan` the core applies in one step
(`ControllerCore.reload`). What cannot change while the controller runs is refused by name, with
nothing applied: the addresses it listens on, the weight scale (every slot's layout is built on
it), the report interval the load book judges liveness by, and a VIP's service or affinity mode
(its vip_table entry and every young connection's hashing depend on them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from controller.config import Config, ConfigError, ControllerSettings, DipConfig, VipConfig

RESTART_SETTINGS = (
    "weight_bits",
    "report_interval",
    "load_listen",
    "load_max_connections",
    "load_peer_timeout",
    "metrics_listen",
    "admin_listen",
    "admin_token_file",
)
"""`[controller]` keys a running controller cannot take from a reload."""

_VIP_IDENTITY = ("ip", "port", "protocol", "affinity")


@dataclass(frozen=True)
class DipChange:
    """A member of a VIP present in both files whose weight or state differs."""

    vip: str
    old: DipConfig
    new: DipConfig


@dataclass(frozen=True)
class ReloadPlan:
    """The difference between the running configuration and `config`, the new one."""

    config: Config
    settings: tuple[str, ...] = ()
    """Live `[controller]` keys whose value changed (besides `policy`)."""
    policy: tuple[str, Mapping[str, float]] | None = None
    """The file's policy and parameters, when either changed."""
    autoscale: bool = False
    """Whether the `[autoscale]` table changed."""
    added_vips: tuple[VipConfig, ...] = ()
    removed_vips: tuple[str, ...] = ()
    retimed_vips: tuple[VipConfig, ...] = ()
    """VIPs whose affinity_timeout changed."""
    added_dips: tuple[tuple[str, DipConfig], ...] = ()
    """(VIP name, member) for members new to a VIP present in both files."""
    removed_dips: tuple[tuple[str, str], ...] = ()
    """(VIP name, member name) for members gone from a VIP present in both files."""
    changed_dips: tuple[DipChange, ...] = ()

    @property
    def empty(self) -> bool:
        """Whether the new file changes nothing."""
        return not self.summary()

    def summary(self) -> list[str]:
        """One line per change, for logs, records and the API's answer."""
        lines = [f"controller.{key} changed" for key in self.settings]
        if self.policy is not None:
            lines.append(f"policy {self.policy[0]} {dict(self.policy[1])}")
        if self.autoscale:
            lines.append("autoscale changed")
        lines.extend(f"vip {v.name} added ({len(v.dips)} DIPs)" for v in self.added_vips)
        lines.extend(f"vip {name} removed (drains first)" for name in self.removed_vips)
        lines.extend(
            f"vip {v.name} affinity_timeout {v.affinity_timeout}" for v in self.retimed_vips
        )
        lines.extend(f"vip {vip}: {dip.name} added" for vip, dip in self.added_dips)
        lines.extend(f"vip {vip}: {dip} removed (drains first)" for vip, dip in self.removed_dips)
        for change in self.changed_dips:
            old, new = change.old, change.new
            moves = [
                f"{what} {before} -> {after}"
                for what, before, after in (
                    ("weight", old.weight, new.weight),
                    ("state", old.state, new.state),
                )
                if before != after
            ]
            lines.append(f"vip {change.vip}: {new.name} {', '.join(moves)}")
        return lines


def plan_reload(running: Config, new: Config) -> ReloadPlan:
    """The changes from `running` to `new`; ConfigError naming every change that needs a
    restart (nothing of the new file is then applied)."""
    refused = [
        f"controller.{key}: cannot change while the controller runs"
        f" ({getattr(running.controller, key)!r} -> {getattr(new.controller, key)!r}; restart it)"
        for key in RESTART_SETTINGS
        if getattr(running.controller, key) != getattr(new.controller, key)
    ]
    old_vips = {v.name: v for v in running.vips}
    new_vips = {v.name: v for v in new.vips}
    for name in old_vips.keys() & new_vips.keys():
        refused.extend(
            f"vip {name!r}.{what}: cannot change while the controller runs"
            f" ({getattr(old_vips[name], what)!r} -> {getattr(new_vips[name], what)!r});"
            " remove the VIP, then add it back once it has drained, or restart"
            for what in _VIP_IDENTITY
            if getattr(old_vips[name], what) != getattr(new_vips[name], what)
        )
    if refused:
        raise ConfigError(sorted(refused))
    settings = tuple(
        f.name
        for f in fields(ControllerSettings)
        if f.name != "policy"
        and getattr(running.controller, f.name) != getattr(new.controller, f.name)
    )
    policy = (new.controller.policy, dict(new.policy_params))
    policy_changed = (running.controller.policy, dict(running.policy_params)) != policy
    added_dips: list[tuple[str, DipConfig]] = []
    removed_dips: list[tuple[str, str]] = []
    changed: list[DipChange] = []
    for vip in new.vips:
        before = old_vips.get(vip.name)
        if before is None:
            continue
        old_dips = {d.name: d for d in before.dips}
        new_dips = {d.name: d for d in vip.dips}
        added_dips.extend((vip.name, d) for d in vip.dips if d.name not in old_dips)
        removed_dips.extend((vip.name, d.name) for d in before.dips if d.name not in new_dips)
        changed.extend(
            DipChange(vip.name, old_dips[d.name], d)
            for d in vip.dips
            if d.name in old_dips and old_dips[d.name] != d
        )
    return ReloadPlan(
        new,
        settings=settings,
        policy=policy if policy_changed else None,
        autoscale=running.autoscale != new.autoscale,
        added_vips=tuple(v for v in new.vips if v.name not in old_vips),
        removed_vips=tuple(v.name for v in running.vips if v.name not in new_vips),
        retimed_vips=tuple(
            v
            for v in new.vips
            if v.name in old_vips and old_vips[v.name].affinity_timeout != v.affinity_timeout
        ),
        added_dips=tuple(added_dips),
        removed_dips=tuple(removed_dips),
        changed_dips=tuple(changed),
    )
