"""Admin API requests parsed into commands, the status document, and the live policy switch in
the core (all pure: no sockets, no clock)."""

from __future__ import annotations

import json
import math

import pytest

from controller.admin_protocol import (
    AdminRequestError,
    MemberAction,
    PolicyChange,
    ReloadRequest,
    StatusQuery,
    bearer_matches,
    needs_token,
    parse_request,
    status_document,
)
from controller.config import Config, ControllerSettings, DipConfig, VipConfig, parse_config
from controller.core.controller_core import ControllerCore
from controller.core.loadbook import DipLoad
from controller.core.pools import BackendPool, PoolError
from controller.core.view import CoreView
from p4src.contract import load_settings
from policy import PolicyError
from policy.autoscale import MemberState

WEB = VipConfig(
    "web",
    "10.0.0.100",
    80,
    "tcp",
    (DipConfig("10.1.0.1", 80, 3), DipConfig("10.1.0.2", 80, 1), DipConfig("10.1.0.3", 80, 1)),
)
DNS = VipConfig("dns", "10.0.0.100", 53, "udp", (DipConfig("10.1.0.1", 80, 1),))
CONFIG = Config(ControllerSettings(policy="equal"), (WEB, DNS))


def core() -> ControllerCore:
    return ControllerCore(CONFIG, load_settings())


def view() -> CoreView:
    return core().view()


MEMBER = "/v1/vips/web/members/10.1.0.2:80"


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("GET", "/v1/status", b"", StatusQuery()),
        ("GET", "/v1/status/", b"", StatusQuery()),
        ("POST", f"{MEMBER}/drain", b"", MemberAction("web", "10.1.0.2:80", "drain")),
        ("POST", f"{MEMBER}/drain", b"{}", MemberAction("web", "10.1.0.2:80", "drain")),
        (
            "POST",
            f"{MEMBER}/drain",
            b'{"remove": true}',
            MemberAction("web", "10.1.0.2:80", "drain", remove=True),
        ),
        ("POST", f"{MEMBER}/undrain", b"", MemberAction("web", "10.1.0.2:80", "undrain")),
        ("POST", f"{MEMBER}/standby", b"", MemberAction("web", "10.1.0.2:80", "standby")),
        ("POST", f"{MEMBER}/activate", b"", MemberAction("web", "10.1.0.2:80", "activate")),
        (
            "POST",
            "/v1/vips/dns/members/10.1.0.1%3A80/drain",
            b"",
            MemberAction("dns", "10.1.0.1:80", "drain"),
        ),
        ("PUT", "/v1/policy", b'{"name": "ratio"}', PolicyChange("ratio", {})),
        ("POST", "/v1/reload", b"", ReloadRequest()),
        ("POST", "/v1/reload", b"{}", ReloadRequest()),
        (
            "PUT",
            "/v1/policy",
            b'{"name": "ratio", "params": {"gain": 0.5}}',
            PolicyChange("ratio", {"gain": 0.5}),
        ),
    ],
)
def test_good_requests_become_commands(
    method: str, path: str, body: bytes, expected: object
) -> None:
    assert parse_request(method, path, body, view()) == expected


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "says"),
    [
        ("GET", "/", b"", 404, "under /v1/"),
        ("GET", "/v2/status", b"", 404, "under /v1/"),
        ("GET", "/v1/nothing", b"", 404, "no such path"),
        ("POST", "/v1/status", b"", 405, "use GET"),
        ("GET", "/v1/policy", b"", 405, "use PUT"),
        ("GET", "/v1/reload", b"", 405, "use POST"),
        ("POST", "/v1/reload", b'{"path": "/etc/x"}', 400, "unknown field(s) path"),
        ("GET", f"{MEMBER}/drain", b"", 405, "use POST"),
        ("POST", f"{MEMBER}/explode", b"", 404, "no member action 'explode'"),
        ("POST", "/v1/vips/nope/members/10.1.0.2:80/drain", b"", 404, "unknown VIP 'nope'"),
        ("POST", "/v1/vips/web/members/10.9.9.9:80/drain", b"", 404, "not a member of VIP"),
        ("POST", "/v1/vips/dns/members/10.1.0.2:80/drain", b"", 404, "not a member of VIP 'dns'"),
        ("POST", f"{MEMBER}/drain", b"{", 400, "not valid JSON"),
        ("POST", f"{MEMBER}/drain", b"\xff", 400, "not UTF-8"),
        ("POST", f"{MEMBER}/drain", b"[1]", 400, "must be a JSON object"),
        ("POST", f"{MEMBER}/drain", b'{"remove": 1}', 400, '"remove" must be true or false'),
        ("POST", f"{MEMBER}/drain", b'{"forever": true}', 400, "unknown field(s) forever"),
        ("POST", f"{MEMBER}/undrain", b'{"remove": true}', 400, "unknown field(s) remove"),
        ("PUT", "/v1/policy", b"", 400, "not valid JSON"),
        ("PUT", "/v1/policy", b'{"params": {}}', 400, '"name" must be a policy name'),
        ("PUT", "/v1/policy", b'{"name": "magic"}', 400, "unknown policy 'magic'"),
        ("PUT", "/v1/policy", b'{"name": "ratio", "x": 1}', 400, "unknown field(s) x"),
        ("PUT", "/v1/policy", b'{"name": "ratio", "params": []}', 400, '"params" must be'),
        ("PUT", "/v1/policy", b'{"name": "ratio", "params": {"bogus": 1}}', 400, "bogus"),
        ("PUT", "/v1/policy", b'{"name": "ratio", "params": {"gain": "x"}}', 400, "number"),
        ("PUT", "/v1/policy", b'{"name": "ratio", "params": {"gain": -1}}', 400, "gain"),
        ("PUT", "/v1/policy", b'{"name": "ratio", "params": {"gain": NaN}}', 400, "NaN"),
    ],
)
def test_bad_requests_say_what_was_wrong(
    method: str, path: str, body: bytes, status: int, says: str
) -> None:
    with pytest.raises(AdminRequestError) as caught:
        parse_request(method, path, body, view())
    assert caught.value.status == status
    assert says in caught.value.message
    assert bool(caught.value.allow) == (status == 405)


def test_only_reads_go_without_a_token() -> None:
    assert not needs_token(StatusQuery())
    assert needs_token(MemberAction("web", "10.1.0.1:80", "drain"))
    assert needs_token(PolicyChange("equal"))


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer s3cret", True),
        ("bearer   s3cret ", True),
        ("Bearer s3cre", False),
        ("Bearer ", False),
        ("Basic s3cret", False),
        ("s3cret", False),
        (None, False),
    ],
)
def test_bearer_header_must_carry_the_token(header: str | None, ok: bool) -> None:
    assert bearer_matches(header, "s3cret") is ok


def test_an_empty_token_matches_nothing() -> None:
    assert not bearer_matches("Bearer ", "")


def test_status_document_shows_every_member_with_load_and_share() -> None:
    loads = {
        "10.1.0.1:80": DipLoad("10.1.0.1:80", "up", 0.42, 7, None, 10.0, 0.5, 3, "up"),
        "10.1.0.2:80": DipLoad("10.1.0.2:80", "unknown", 0.0, 0, None, None, math.inf, None, None),
    }
    document = status_document(view(), loads, CONFIG.vips)
    json.dumps(document, allow_nan=False)  # plain JSON: no inf or NaN
    assert document["policy"] == {"name": "equal", "params": {}}
    web = document["vips"][0]
    assert (web["name"], web["address"], web["protocol"]) == ("web", "10.0.0.100:80", "tcp")
    first, second, third = web["members"]
    assert first["state"] == "active" and first["health"] == "up"
    assert (first["cpu"], first["connections"], first["report_age"]) == (0.42, 7, 0.5)
    assert (second["cpu"], second["connections"], second["report_age"]) == (None, None, None)
    assert third["health"] == "unknown"  # not in the load book at all
    assert {"weight", "active_weight", "share"} <= set(first)
    assert document["backpressure"] is None


def test_status_shares_come_from_the_active_version() -> None:
    base = view()
    pool = base.pools[0]
    members = tuple(
        type(m)(m.dip, m.state, m.weight, w)
        for m, w in zip(pool.members, (192, 64, 0), strict=True)
    )
    patched = CoreView(**{**base.__dict__, "pools": (type(pool)(pool.name, members),)})
    shares = [m["share"] for m in status_document(patched, {}, CONFIG.vips)["vips"][0]["members"]]
    assert shares == [0.75, 0.25, 0.0]


def test_policy_switch_keeps_the_weights_until_the_policy_runs_again() -> None:
    subject = core()
    before = subject.desired()
    subject.set_policy(1.0, "ratio", {"gain": 0.5})
    assert subject.desired() == before  # seeded with the current weights: nothing jumps
    assert subject.view().policy == "ratio"
    assert subject.view().policy_params == {"gain": 0.5}
    assert all(w.policy_name == "ratio" for w in subject.membership.weighting)
    assert subject.policy_due(1.0)


@pytest.mark.parametrize(
    ("name", "params"), [("magic", {}), ("ratio", {"bogus": 1.0}), ("ratio", {"gain": -1.0})]
)
def test_a_refused_policy_switch_changes_nothing(name: str, params: dict[str, float]) -> None:
    subject = core()
    with pytest.raises(PolicyError):
        subject.set_policy(1.0, name, params)
    assert subject.view().policy == "equal"
    assert all(w.policy_name == "equal" and w.params == {} for w in subject.membership.weighting)


def test_member_actions_name_the_pool_when_a_dip_serves_two_vips() -> None:
    subject = core()
    subject.drain_member(0.0, "10.1.0.1:80", remove=False, pool=subject.pool_named("dns"))
    assert subject.pools[1].member("10.1.0.1:80").state is MemberState.DRAINING
    assert subject.pools[0].member("10.1.0.1:80").state is MemberState.ACTIVE
    with pytest.raises(KeyError):
        subject.pool_named("nope")


def test_standby_drains_an_active_member_and_cancels_a_removal() -> None:
    pool = BackendPool(0, WEB)
    assert pool.standby(1.0, "10.1.0.1:80").state is MemberState.DRAINING
    pool.drain(2.0, "10.1.0.2:80", remove=True)
    kept = pool.standby(3.0, "10.1.0.2:80")
    assert kept.state is MemberState.DRAINING and not kept.remove_when_drained


def test_undrain_returns_draining_and_standby_members_but_not_down_ones() -> None:
    pool = BackendPool(0, WEB)
    pool.drain(1.0, "10.1.0.1:80", remove=True)
    back = pool.undrain(2.0, "10.1.0.1:80")
    assert back.state is MemberState.ACTIVE and not back.remove_when_drained
    pool._members[1] = type(pool._members[1])("10.1.0.2", 80, 1, MemberState.DOWN)
    with pytest.raises(PoolError, match="down; activate it"):
        pool.undrain(3.0, "10.1.0.2:80")
    assert pool.activate(3.0, "10.1.0.2:80").state is MemberState.ACTIVE


ADMIN_TOML = """
[controller]
admin_listen = {listen}
admin_token_file = "/etc/p4lb/admin.token"

[[vip]]
name = "web"
ip = "10.0.0.100"
port = 80
  [[vip.dip]]
  ip = "10.1.0.1"
  port = 80
"""


@pytest.mark.parametrize("listen", ['""', '"127.0.0.1:9180"', '"/run/p4lb/admin.sock"'])
def test_admin_keys_are_accepted(listen: str) -> None:
    settings = parse_config(ADMIN_TOML.format(listen=listen)).controller
    assert settings.admin_listen == json.loads(listen)
    assert settings.admin_token_file == "/etc/p4lb/admin.token"


@pytest.mark.parametrize(
    ("listen", "says"),
    [
        ('"admin.sock"', "controller.admin_listen: 'admin.sock' is not HOST:PORT or /PATH"),
        ("9180", "controller.admin_listen: 9180 is not HOST:PORT"),
    ],
)
def test_bad_admin_addresses_are_refused(listen: str, says: str) -> None:
    from controller.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_config(ADMIN_TOML.format(listen=listen))
    assert any(says in problem for problem in caught.value.problems)
