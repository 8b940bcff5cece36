"""The admin API's requests and answers as values (pure: no sockets, no clock).

`parse_request` turns a method, a path and a body into one typed command (`StatusQuery`,
`MemberAction`, `PolicyChange`, `ReloadRequest`) or raises `AdminRequestError` carrying the HTTP
status and a message that says what was wrong; `status_document` renders the controller's state (its
`CoreView` and the load book's snapshot) as the JSON of `GET /v1/status`. The Twisted resource
(controller.shell.admin) only moves bytes and carries commands out.
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import unquote

from controller.config import VipConfig, policy_problem
from controller.core.loadbook import DipLoad
from controller.core.view import CoreView

API_PREFIX: Final = "/v1"
MemberVerb = Literal["drain", "undrain", "standby", "activate"]
MEMBER_VERBS: Final[tuple[MemberVerb, ...]] = ("drain", "undrain", "standby", "activate")
JSONValue = dict[str, Any]


class AdminRequestError(ValueError):
    """A request the API refuses: `status` is the HTTP code, the message says why."""

    def __init__(
        self, status: int, message: str, problems: tuple[str, ...] = (), allow: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems
        """Each located problem, when there are several (a refused reload)."""
        self.allow = allow
        """For 405: the methods the path takes."""


@dataclass(frozen=True)
class StatusQuery:
    """`GET /v1/status`."""


@dataclass(frozen=True)
class MemberAction:
    """`POST /v1/vips/{vip}/members/{dip}/{verb}`: change one member's state."""

    vip: str
    dip: str
    verb: MemberVerb
    remove: bool = False
    """For drain: leave the pool once drained."""


@dataclass(frozen=True)
class PolicyChange:
    """`PUT /v1/policy`: every pool's policy, switched in place."""

    name: str
    params: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ReloadRequest:
    """`POST /v1/reload`: apply the configuration file as it is now."""


AdminCommand = StatusQuery | MemberAction | PolicyChange | ReloadRequest


def parse_request(method: str, path: str, body: bytes, view: CoreView) -> AdminCommand:
    """The command a request asks for, checked against the controller's current pools."""
    parts = [unquote(part) for part in path.split("?", 1)[0].strip("/").split("/")]
    if parts[:1] != [API_PREFIX.strip("/")]:
        raise AdminRequestError(404, f"no such path {path!r}; the API lives under {API_PREFIX}/")
    route = parts[1:]
    if route == ["status"]:
        _allow(method, "GET")
        return StatusQuery()
    if route == ["reload"]:
        _allow(method, "POST")
        if body.strip():
            _no_unknown_keys(_json_object(body), set())
        return ReloadRequest()
    if route == ["policy"]:
        _allow(method, "PUT")
        return _policy_change(_json_object(body))
    if len(route) == 5 and route[0] == "vips" and route[2] == "members":
        vip, dip, verb = route[1], route[3], route[4]
        if verb not in MEMBER_VERBS:
            raise AdminRequestError(
                404, f"no member action {verb!r}; choose from {', '.join(MEMBER_VERBS)}"
            )
        _allow(method, "POST")
        _check_member(view, vip, dip)
        document = _json_object(body) if body.strip() else {}
        allowed = {"remove"} if verb == "drain" else set()
        _no_unknown_keys(document, allowed)
        remove = document.get("remove", False)
        if not isinstance(remove, bool):
            raise AdminRequestError(400, f'"remove" must be true or false, got {remove!r}')
        return MemberAction(vip, dip, verb, remove)
    raise AdminRequestError(404, f"no such path {path!r}")


def _allow(method: str, expected: str) -> None:
    if method != expected:
        raise AdminRequestError(
            405, f"{method} is not allowed here; use {expected}", allow=(expected,)
        )


def _check_member(view: CoreView, vip: str, dip: str) -> None:
    pool = next((p for p in view.pools if p.name == vip), None)
    if pool is None:
        names = ", ".join(p.name for p in view.pools)
        raise AdminRequestError(404, f"unknown VIP {vip!r}; VIPs: {names}")
    if not any(m.dip == dip for m in pool.members):
        raise AdminRequestError(404, f"{dip!r} is not a member of VIP {vip!r} (DIPs are IP:PORT)")


def _json_object(body: bytes) -> JSONValue:
    """The body as a JSON object; 400 for anything else."""
    try:
        document = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise AdminRequestError(400, "the body is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise AdminRequestError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise AdminRequestError(400, f"the body must be a JSON object, got {document!r:.60}")
    return document


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _no_unknown_keys(document: Mapping[str, object], allowed: set[str]) -> None:
    unknown = sorted(set(document) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise AdminRequestError(400, f"unknown field(s) {', '.join(unknown)}; known: {known}")


def _policy_change(document: JSONValue) -> PolicyChange:
    _no_unknown_keys(document, {"name", "params"})
    name = document.get("name")
    if not isinstance(name, str):
        raise AdminRequestError(400, f'"name" must be a policy name, got {name!r}')
    params = document.get("params", {})
    if not isinstance(params, dict):
        raise AdminRequestError(400, f'"params" must be an object, got {params!r:.60}')
    problem = policy_problem(name, params)
    if problem is not None:
        raise AdminRequestError(400, f"policy {name!r}: {problem}")
    return PolicyChange(name, {key: float(value) for key, value in params.items()})


def needs_token(command: AdminCommand) -> bool:
    """Whether a command changes anything (and so needs the bearer token)."""
    return not isinstance(command, StatusQuery)


def bearer_matches(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries `token` (compared in constant time)."""
    if header is None or not token:
        return False
    scheme, _, given = header.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8"), token.encode("utf-8")
    )


def status_document(
    view: CoreView, loads: Mapping[str, DipLoad], vips: Sequence[VipConfig]
) -> JSONValue:
    """`GET /v1/status`: the policy, the active version, rollout backpressure and every member."""
    services = {v.name: v for v in vips}
    pools: list[JSONValue] = []
    for pool in view.pools:
        total = sum(m.active_weight for m in pool.members)
        members: list[JSONValue] = []
        for member in pool.members:
            load = loads.get(member.dip)
            age = None if load is None or math.isinf(load.report_age) else load.report_age
            members.append(
                {
                    "dip": member.dip,
                    "state": member.state.value,
                    "health": "unknown" if load is None else load.state,
                    "cpu": None if load is None or load.last_seen is None else load.cpu,
                    "connections": None if load is None or load.last_seen is None else load.conns,
                    "weight": member.weight,
                    "active_weight": member.active_weight,
                    "share": member.active_weight / total if total else 0.0,
                    "report_age": age,
                }
            )
        service = services.get(pool.name)
        pools.append(
            {
                "name": pool.name,
                "address": None if service is None else f"{service.ip}:{service.port}",
                "protocol": None if service is None else service.protocol,
                "members": members,
            }
        )
    return {
        "started": view.started,
        "policy": {"name": view.policy, "params": dict(view.policy_params)},
        "active_slot": view.active_slot,
        "rollouts": view.rollouts.rollouts,
        "backpressure": view.backpressure,
        "conn_entries": view.conn_entries,
        "conn_table_full": view.conn_table_full,
        "vips": pools,
    }
