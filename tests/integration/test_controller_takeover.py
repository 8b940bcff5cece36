"""Two controllers on one p4lb-switch over real P4Runtime: the backup waits, writing nothing,
and takes over when the primary goes; the connection the primary installed stays, and the new
primary learns the next one from its digest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from p4rt_controllers import Controller
from twisted.internet import defer

from p4model.server import SwitchServer
from p4model.switch import Switch
from topo.frames import SYN, TCP, FlowKey, build_frame

CLIENT = "00:00:00:00:01:02"
SWITCH = "00:01:00:00:00:01"


@pytest.fixture
def switch() -> Iterator[SwitchServer]:
    """p4lb-switch's server in this process (no packet ports) on a free loopback port."""
    server = SwitchServer(Switch(), [], "127.0.0.1:0")
    yield server
    server.close()


def syn(server: SwitchServer, sport: int) -> None:
    """A client's first packet through the switch; its digest goes to the primary."""
    flow = FlowKey("10.0.1.2", "10.0.0.100", sport, 80, TCP)
    with server.lock:
        server.switch.process(1, build_frame(CLIENT, SWITCH, flow, flags=SYN))
        server.publish_digests()


def test_the_backup_takes_over_when_the_primary_goes(switch: SwitchServer) -> None:
    first = Controller(switch.p4runtime_address, 1, election_id=2)
    started = defer.ensureDeferred(first.service.start())
    first.until(lambda: started.called)
    assert started.result is None and first.metric("primary") == 1.0
    syn(switch, 4000)
    first.until(lambda: first.metric("learn_installed_total") == 1)

    second = Controller(switch.p4runtime_address, 1, election_id=1)
    waiting = defer.ensureDeferred(second.service.start())
    second.until(lambda: second.metrics.value("primary") == 0.0)
    second.until(lambda: second.clock.seconds() > 2.0)  # a while as a backup
    syn(switch, 4001)  # its digest goes to the primary only
    first.until(lambda: first.metric("learn_installed_total") == 2)
    assert not waiting.called and second.client.write_requests == 0
    assert second.metric("learn_learned_total") == 0

    stopped = defer.ensureDeferred(first.service.stop())  # its stream ends: next in line
    first.until(lambda: stopped.called)
    second.until(lambda: waiting.called)
    assert waiting.result is None and second.metric("primary") == 1.0
    with switch.lock:
        assert switch.switch.table_num_entries("conn_table") == 2  # nothing was cleared
    syn(switch, 4002)
    second.until(lambda: second.metric("learn_installed_total") == 1)
    with switch.lock:
        assert switch.switch.table_num_entries("conn_table") == 3
    stopped = defer.ensureDeferred(second.service.stop())
    second.until(lambda: stopped.called)
