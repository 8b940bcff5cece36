"""Declarative reload: the plan between two files, and the core carrying it out on the model."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from core_runner import CoreRunner

import p4model
from controller.config import Config, ConfigError, parse_config
from controller.core.controller_core import ControllerCore, SwitchView
from controller.core.ops import DefaultEntry, Op, TableInsert
from controller.core.reload import RESTART_SETTINGS, plan_reload
from p4src.contract import DIP_TABLE, VIP_TABLE

BASE = """
[controller]
min_weight_change = {band}
min_rollout_interval = {interval}
{controller}
[[vip]]
name = "web"
ip = "10.0.0.100"
port = 80
{web}
[[vip.dip]]
ip = "10.0.2.2"
port = 8080
[[vip.dip]]
ip = "10.0.3.2"
port = 8080
{more}
"""


def parsed(
    controller: str = "", web: str = "", more: str = "", interval: float = 0.5, band: float = 0.0
) -> Config:
    text = BASE.format(controller=controller, web=web, more=more, interval=interval, band=band)
    return parse_config(text)


DIP = '[[vip.dip]]\nip = "10.0.4.2"\nport = 8080\n'
API = """
[[vip]]
name = "api"
ip = "10.0.0.101"
port = 443
[[vip.dip]]
ip = "10.0.2.2"
port = 9443
"""


@pytest.mark.parametrize(
    ("new", "summary"),
    [
        pytest.param(parsed(), [], id="unchanged"),
        pytest.param(parsed(more=DIP), ["vip web: 10.0.4.2:8080 added"], id="member-added"),
        pytest.param(parsed(more=API), ["vip api added (1 DIPs)"], id="vip-added"),
        pytest.param(
            parsed(controller="drain_timeout = 9.0"),
            ["controller.drain_timeout changed"],
            id="live-setting",
        ),
        pytest.param(
            parsed(controller='policy = "equal"'), ["policy equal {}"], id="policy-changed"
        ),
        pytest.param(
            parsed(web="affinity_timeout = 9.0"), ["vip web affinity_timeout 9.0"], id="retimed"
        ),
    ],
)
def test_plan_lists_what_changed(new: Config, summary: list[str]) -> None:
    plan = plan_reload(parsed(), new)
    assert plan.summary() == summary
    assert plan.empty == (not summary)


def test_plan_names_removed_members_and_vips_and_changed_weights() -> None:
    before = parsed(more=DIP + API)
    web = before.vips[0]
    reweighed = (web.dips[0], dataclasses.replace(web.dips[1], weight=5, state="standby"))
    after = dataclasses.replace(before, vips=(dataclasses.replace(web, dips=reweighed),))
    assert plan_reload(before, after).summary() == [
        "vip api removed (drains first)",
        "vip web: 10.0.4.2:8080 removed (drains first)",
        "vip web: 10.0.3.2:8080 weight 1 -> 5, state active -> standby",
    ]


@pytest.mark.parametrize("key", RESTART_SETTINGS)
def test_a_setting_that_needs_a_restart_is_refused_by_name(key: str) -> None:
    running = parsed()
    changed: Any = {
        "weight_bits": 9,
        "report_interval": 0.25,
        "load_listen": "tcp://127.0.0.1:5556",
        "load_max_connections": 7,
        "load_peer_timeout": 3.0,
        "metrics_listen": "",
        "admin_listen": "",
        "admin_token_file": "/tmp/token",
    }[key]
    settings = dataclasses.replace(running.controller, **{key: changed})
    with pytest.raises(ConfigError) as refused:
        plan_reload(running, dataclasses.replace(running, controller=settings))
    assert len(refused.value.problems) == 1
    assert refused.value.problems[0].startswith(f"controller.{key}: cannot change")


@pytest.mark.parametrize(
    ("field", "value"),
    [("ip", "10.0.0.9"), ("port", 81), ("protocol", "udp"), ("affinity", "client_ip")],
)
def test_a_vips_service_or_affinity_mode_cannot_change_live(field: str, value: Any) -> None:
    running = parsed()
    vip = dataclasses.replace(running.vips[0], **{field: value})
    with pytest.raises(ConfigError) as refused:
        plan_reload(running, dataclasses.replace(running, vips=(vip,)))
    assert refused.value.problems[0].startswith(f"vip 'web'.{field}: cannot change")


# -- the core carrying a plan out, on the model


class Runner(CoreRunner):
    def tick(self, now: float) -> None:
        self.now = now
        self.feed(self.core.tick(now, {}))
        self.run()


def started(config: Config) -> Runner:
    switch = p4model.Switch()
    core = ControllerCore(config, p4model.load_settings())
    runner = Runner(core, switch)
    view = SwitchView(DefaultEntry.read(*switch.table_get_default("version_config")), 0, 0)
    runner.feed(core.bootstrap(0.0, view))
    runner.run()
    assert core.started
    return runner


def test_a_new_vip_enters_vip_table_only_once_every_version_holds_its_pool() -> None:
    runner = started(parsed(interval=5.0))
    core, switch = runner.core, runner.switch
    runner.feed(core.reload(1.0, plan_reload(core.config, parsed(more=API, interval=5.0))))
    runner.run()
    runner.tick(1.0)
    runner.tick(4.9)  # no rollout yet (rate limit): the api pool has no entry, nor its VIP
    assert switch.table_num_entries(VIP_TABLE) == 1

    def slots_with_api() -> set[object]:
        return {row[1][0] for row in switch.table_entries(DIP_TABLE) if row[1][1] == 1}

    def check(op: Op) -> None:
        if isinstance(op, TableInsert) and op.table == VIP_TABLE:
            # Every slot holding a version holds the api pool: no packet of it can be dropped.
            written = {s for s, w in enumerate(core.rollouts.table.weights) if w is not None}
            assert slots_with_api() == written

    runner.check = check
    now = 4.9
    while switch.table_num_entries(VIP_TABLE) == 1:
        now += 0.1
        assert now < 60.0, "the api VIP never went in"
        runner.tick(now)
    assert core.rollouts.counters.rollouts >= 4  # rolled out until every slot held it
    assert [p.vip.name for p in core.pools] == ["web", "api"]


def test_a_removed_vip_leaves_vip_table_once_its_members_are_gone() -> None:
    runner = started(parsed(more=API))
    core, switch = runner.core, runner.switch
    assert switch.table_num_entries(VIP_TABLE) == 2
    runner.feed(core.reload(1.0, plan_reload(core.config, parsed())))
    runner.run()
    now = 1.0
    while any(p.vip.name == "api" for p in core.pools):
        now += 0.5
        assert now < 10.0, "the api VIP never left"
        runner.tick(now)
    assert switch.table_num_entries(VIP_TABLE) == 1
    with pytest.raises(KeyError):
        core.pool_named("api")


def test_a_vip_still_draining_blocks_a_new_one_at_its_address() -> None:
    runner = started(parsed(more=API))
    core = runner.core
    runner.feed(core.reload(1.0, plan_reload(core.config, parsed())))
    runner.run()
    again = parsed(more=API)
    view = core.view()
    with pytest.raises(ConfigError) as refused:
        core.reload(1.1, plan_reload(core.config, again))
    assert "still draining" in refused.value.problems[0]
    assert core.view() == view


def test_a_member_added_back_while_it_drains_is_kept() -> None:
    runner = started(parsed(more=DIP))
    core = runner.core
    runner.feed(core.reload(1.0, plan_reload(core.config, parsed())))
    runner.run()
    assert core.pools[0].member("10.0.4.2:8080").remove_when_drained
    runner.feed(core.reload(1.1, plan_reload(core.config, parsed(more=DIP))))
    runner.run()
    member = core.pools[0].member("10.0.4.2:8080")
    assert member.state.value == "active" and not member.remove_when_drained


def test_a_state_the_admin_api_set_survives_a_reload_that_does_not_touch_it() -> None:
    runner = started(parsed(more=DIP))
    core = runner.core
    core.drain_member(1.0, "10.0.4.2:8080", remove=False)
    runner.feed(
        core.reload(
            1.1, plan_reload(core.config, parsed(controller="quiet_period = 3.0", more=DIP))
        )
    )
    runner.run()
    assert core.pools[0].member("10.0.4.2:8080").state.value == "draining"
    assert core.rollouts.table.quiet_period == 3.0


def test_settings_and_vips_of_a_reload_reach_every_component() -> None:
    runner = started(parsed())
    core = runner.core
    new = parsed("tcp_idle_timeout = 7.0\nslow_start = 2.0\nswitch_check_interval = 0.0")
    runner.feed(core.reload(1.0, plan_reload(core.config, new)))
    assert core.learner.tcp_idle_timeout == 7.0
    assert core.watch.interval == 0.0
    assert all(w.slow_start == 2.0 for w in core.membership.weighting)
    assert core.config is new


def test_a_member_added_to_a_large_pool_ramps_past_the_dead_band() -> None:
    """One member's whole share (4 of 256 buckets among 64) is inside the 2 % dead-band: while
    it slow-starts, every step of its ramp is rolled out anyway."""
    big = "".join(f'[[vip.dip]]\nip = "10.2.{i}.2"\nport = 8080\n' for i in range(62))
    settings = 'policy = "static"\nslow_start = 5.0'
    runner = started(parsed(settings, more=big, band=0.02))
    core = runner.core
    new = parsed(settings, more=big + DIP, band=0.02)
    runner.feed(core.reload(10.0, plan_reload(core.config, new)))
    runner.run()
    seen = []
    for step in range(1, 41):
        runner.tick(10.0 + step * 0.25)
        seen.append(core.view().pools[0].active_weight("10.0.4.2:8080"))
    # It climbed in several rollouts (a step back is the quantization of ~1.2 buckets).
    assert len(set(seen)) >= 3 and max(seen[:8]) < 4
    assert seen[-1] == core.desired()[0][-1] >= 3  # all the way to its share (256 / 65)


def test_a_second_reload_before_the_first_took_effect_wins_cleanly() -> None:
    """Two reloads back to back: the first adds api, the second removes it before any version
    held it. api never reaches vip_table and leaves no trace."""
    runner = started(parsed(interval=5.0))
    core, switch = runner.core, runner.switch
    return_paths = switch.table_num_entries("dip_reverse")
    runner.feed(core.reload(1.0, plan_reload(core.config, parsed(more=API, interval=5.0))))
    runner.run()
    assert switch.table_num_entries("dip_reverse") == return_paths + 1
    runner.feed(core.reload(1.1, plan_reload(core.config, parsed(interval=5.0))))
    runner.run()
    now = 1.1
    while any(p.vip.name == "api" for p in core.pools):
        now += 0.5
        assert now < 30.0, "the api pool never went"
        runner.tick(now)
    for later in (now + 6.0, now + 12.0):  # rollouts after it: nothing of api comes back
        runner.tick(later)
    assert switch.table_num_entries(VIP_TABLE) == 1
    assert not any(row[1][1] == 1 for row in switch.table_entries(DIP_TABLE))
    assert switch.table_num_entries("dip_reverse") == return_paths
    assert core.config.vips == parsed(interval=5.0).vips
