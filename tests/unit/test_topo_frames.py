"""Frames the simulated demo pushes through the model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topo.frames import (
    ACK,
    FIN,
    TCP,
    UDP,
    FlowKey,
    FrameError,
    build_frame,
    checksums_ok,
    read_flow,
)

MACS = ("00:00:0a:01:01:02", "00:01:0a:01:01:02")

flows = st.builds(
    FlowKey,
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=4).map(str),
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.sampled_from([TCP, UDP]),
)


@given(flows, st.binary(max_size=200), st.sampled_from([0x02, FIN | ACK, ACK]))
def test_frames_read_back_with_valid_checksums(flow: FlowKey, payload: bytes, flags: int) -> None:
    frame = build_frame(*MACS, flow, flags=flags, payload=payload)
    assert read_flow(frame) == flow
    assert checksums_ok(frame)


def test_a_flipped_byte_breaks_the_checksum() -> None:
    frame = bytearray(build_frame(*MACS, FlowKey("10.1.1.2", "10.0.0.100", 1234, 80, TCP)))
    frame[-1] ^= 0x01
    assert not checksums_ok(bytes(frame))


@pytest.mark.parametrize("frame", [b"", b"\x00" * 60, b"\x00" * 12 + b"\x08\x00" + b"\x46" * 40])
def test_read_flow_rejects_other_frames(frame: bytes) -> None:
    with pytest.raises(FrameError):
        read_flow(frame)


def test_build_frame_rejects_other_protocols() -> None:
    with pytest.raises(FrameError):
        build_frame(*MACS, FlowKey("1.1.1.1", "2.2.2.2", 1, 2, 1))
