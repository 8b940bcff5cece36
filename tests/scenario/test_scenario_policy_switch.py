"""A live policy switch (what `PUT /v1/policy` does) under traffic: controller + in-process model
+ simulated agents on a test clock; every packet checks that its connection keeps its DIP."""

from __future__ import annotations

import io
from typing import Any

from twisted.web.test.requesthelper import DummyRequest

from controller.shell.admin import AdminAccess, AdminResource
from topo.sim import SimOptions, Simulation


def put_policy(sim: Simulation, body: bytes) -> tuple[int, bytes]:
    """PUT /v1/policy through the admin resource itself (the body is checked before the token)."""
    resource = AdminResource(sim.service, AdminAccess(None))
    request: Any = DummyRequest([b"v1", b"policy"])  # untyped, and no Request subclass
    request.method, request.path = b"PUT", b"/v1/policy"
    request.content = io.BytesIO(body)
    answer = resource.render(request)
    return request.responseCode or 200, answer


def test_switching_policy_under_traffic_breaks_no_connection() -> None:
    sim = Simulation(
        SimOptions(connections=3000, rollouts=12, write_latency=(0.01, 0.1), policy="equal", seed=4)
    )
    sim.start()
    t0 = sim.clock.seconds()
    sim.open_connections(3000, t0 + 0.5, t0 + 30.0)
    for phase in range(6):
        sim.new_loads()
        sim.advance(t0 + 1.5 * (phase + 1))
    core = sim.service.core
    slot, weights, rollouts = core.view().active_slot, core.desired(), sim.rollouts_so_far()

    sim.service.set_policy("cpu", {})

    # In place: the same active version and the same weights until the new policy runs.
    assert core.view().active_slot == slot and core.desired() == weights
    assert core.view().policy == "cpu"
    for phase in range(6, 24):
        sim.new_loads()
        sim.advance(t0 + 1.5 * (phase + 1))
    sim.advance(sim.clock.seconds() + 5.0)
    result = sim.finish()
    assert result.connections == 3000
    assert result.broken == 0 and result.dropped == 0
    assert sim.rollouts_so_far() > rollouts  # the new policy did move weights
    assert core.desired() != weights


def test_a_refused_policy_through_the_api_changes_nothing() -> None:
    sim = Simulation(SimOptions(connections=10, policy="equal"))
    sim.start()
    code, answer = put_policy(sim, b'{"name": "cpu", "params": {"nope": 1}}')
    assert code == 400 and b"nope" in answer
    assert sim.service.core.view().policy == "equal"
