"""The P4Runtime service without a network: notifications to a client that does not keep up are
dropped past the outbox limit and counted, never queued without bound."""

from __future__ import annotations

import queue
import threading

import pytest
from finsy.proto import p4r

from p4model import Switch
from p4model import p4runtime_service as service_module
from p4model.p4runtime_device import P4RuntimeDevice
from p4model.p4runtime_service import P4RuntimeService
from p4src.contract import Digest


def test_notifications_beyond_the_limit_are_dropped_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service_module, "OUTBOX_LIMIT", 3)
    device = P4RuntimeDevice(Switch())
    service = P4RuntimeService(device, threading.RLock(), clock_ns=lambda: 0)
    outbox: queue.SimpleQueue[object] = queue.SimpleQueue()
    service._streams[1] = outbox  # type: ignore[assignment]
    arbitration = p4r.StreamMessageRequest()
    arbitration.arbitration.device_id = 1
    arbitration.arbitration.election_id.low = 1
    service._on_stream_message(1, arbitration)  # one advisory in the outbox
    config = p4r.ForwardingPipelineConfig()
    config.p4info.CopyFrom(device.own_p4info)
    device.set_pipeline(p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT, config)
    entry = p4r.DigestEntry(digest_id=device.own_p4info.digests[0].preamble.id)
    entry.config.max_list_size = 1
    device.write(p4r.Update(type=p4r.Update.INSERT, entity=p4r.Entity(digest_entry=entry)))
    samples = [
        Digest("new_conn", "10.0.1.2", "10.0.0.100", s, 80, 6, 0, "10.0.2.2", 80) for s in range(5)
    ]
    service.offer_digests(samples)
    messages = [outbox.get_nowait() for _ in range(outbox.qsize())]
    kinds = [m.WhichOneof("update") for m in messages if isinstance(m, p4r.StreamMessageResponse)]
    assert kinds == ["arbitration", "digest", "digest"]
    assert service.dropped_notifications == 3
