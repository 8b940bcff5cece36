"""Controllers (ControllerService) over the P4Runtime client, each on its own ThreadedClock, for
tests against a real P4Runtime server (p4lb-switch's in-process, or simple_switch_grpc)."""

from __future__ import annotations

import time
from collections.abc import Callable

from controller.config import Config, ControllerSettings, DipConfig, VipConfig
from controller.shell.app import ControllerService
from controller.shell.metrics import Metrics
from controller.switch.p4runtime_client import P4RuntimeSwitchClient
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
        self.clock = ThreadedClock()
        host, port = address.rsplit(":", 1)
        self.client = P4RuntimeSwitchClient(
            self.clock,
            host,
            int(port),
            device_id=device_id,
            election_id=election_id,
            pipeline=files,
        )
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
