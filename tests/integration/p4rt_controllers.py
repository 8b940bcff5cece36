"""The P4Runtime client, and controllers (ControllerService) over it, each on its own
ThreadedClock, with blocking helpers: for tests against a P4Runtime server (p4lb-switch's,
simple_switch_grpc, or the client's scripted one)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from controller.config import Config, ControllerSettings, DipConfig, VipConfig
from controller.core.ops import Outcome
from controller.shell.app import ControllerService
from controller.shell.metrics import Metrics
from controller.switch.api import SwitchError
from controller.switch.p4runtime_client import DigestConfig, P4RuntimeSwitchClient
from controller.switch.p4runtime_pipeline import PipelineFiles
from controller.switch.testing import ThreadedClock

DIPS = ("10.0.2.2", "10.0.3.2")
TICK = 0.05


class Controller:
    """A ControllerService over P4Runtime on a ThreadedClock."""

    def __init__(
        self,
        address: str,
        device_id: int,
        files: PipelineFiles | None = None,
        election_id: int = 1,
    ) -> None:
        client = P4rtClient(address, election_id, files, device_id=device_id)
        self.clock, self.client = client.clock, client.p4rt
        dips = tuple(DipConfig(ip, 8080, 1) for ip in DIPS)
        settings = ControllerSettings(policy="cpu", min_rollout_interval=0.5, quiet_period=0.5)
        config = Config(settings, (VipConfig("web", "10.0.0.100", 80, "tcp", dips),))
        self.metrics = Metrics()
        self.service = ControllerService(self.clock, config, self.client, metrics=self.metrics)

    def until(self, condition: Callable[[], bool], limit: float = 30.0) -> None:
        """Let the controller run (ticks and the client's thread calls) until `condition` holds.

        Simulated time moves a tick at a time; between ticks the client's answers from the
        switch are awaited briefly (they are the only other events).
        """
        deadline = time.monotonic() + limit
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"not reached in {limit} s")
            try:
                self.clock.run_from_threads(1, timeout=0.05)
            except TimeoutError:
                self.clock.advance(TICK)  # nothing from the switch: time for the next tick

    def metric(self, name: str) -> float:
        """A series' value (0 when unset)."""
        return self.metrics.value(name) or 0.0


class P4rtClient:
    """A P4RuntimeSwitchClient on its own ThreadedClock, with blocking helpers for tests."""

    def __init__(
        self,
        address: str,
        election_id: int,
        files: PipelineFiles | None = None,
        *,
        device_id: int = 1,
        digest_config: DigestConfig | None = None,
    ) -> None:
        self.clock = ThreadedClock()
        host, port = address.rsplit(":", 1)
        self.p4rt = P4RuntimeSwitchClient(
            self.clock,
            host,
            int(port),
            device_id=device_id,
            election_id=election_id,
            pipeline=files,
            digest_config=digest_config,
        )

    def run(self, call: Any) -> Any:
        """Run a client coroutine to its end; its result (its exception re-raised)."""
        d = defer.ensureDeferred(call)
        while not d.called:
            self.clock.run_from_threads(1)  # raises TimeoutError after 10 s without a call
        box: list[Any] = []
        d.addBoth(box.append)
        if isinstance(box[0], Failure):
            box[0].raiseException()
        return box[0]

    def failure(self, call: Any) -> SwitchError:
        """The SwitchError a client coroutine ends with (AssertionError if it ends well)."""
        try:
            self.run(call)
        except SwitchError as exc:
            return exc
        raise AssertionError("the call did not fail")

    def apply(self, *ops: Any) -> list[Outcome]:
        """Apply operations; their outcomes."""
        outcomes: list[Outcome] = self.run(self.p4rt.apply(list(ops)))
        return outcomes

    def wait_until(self, condition: Callable[[], bool]) -> None:
        """Run thread calls until `condition` holds (each wait bounded by 10 s)."""
        while not condition():
            self.clock.run_from_threads(1)

    def close(self) -> None:
        """Close the client."""
        self.run(self.p4rt.close())
