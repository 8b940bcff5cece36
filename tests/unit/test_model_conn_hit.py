"""The specialised conn_table-hit path gives the general pipeline's bytes wherever it answers."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from p4model.conn_hit import ConnHit, ConnHitPath
from p4model.packet import lb_deparser, lb_parser
from p4model.program import LbIngress, lb_compute_checksum
from p4src.contract import load_settings

CLIENT, VIP = 0x0A000102, 0x0A000064
_IPV4 = struct.Struct("!BBHHHBBHII")


def _ingress() -> LbIngress:
    ingress = LbIngress(load_settings())
    for proto in (6, 17):
        ingress.conn_table.add(
            ["10.0.1.2", "10.0.0.100", "1234", "80", str(proto)],
            "rewrite_dst",
            ["10.0.2.2", "8080"],
        )
    ingress.conn_table.add(["10.0.1.2", "10.0.0.100", "1235", "80", "6"], "NoAction", [])
    ingress.conn_table.add(
        ["10.0.1.2", "10.0.0.100", "1236", "80", "6"], "rewrite_dst", ["10.0.2.9", "80"]
    )
    ingress.ipv4_lpm.add(
        ["10.0.2.0/24"], "forward", ["3", "00:00:00:00:00:02", "00:00:0a:00:02:02"]
    )
    ingress.ipv4_lpm.add(["10.0.2.9/32"], "forward", ["511", "0", "0"])  # DROP_PORT
    ingress.ipv4_lpm.add(
        ["10.0.0.0/24"], "forward", ["2", "00:00:00:00:00:03", "00:00:00:00:00:04"]
    )
    return ingress


def _general(ingress: LbIngress, frame: bytes) -> ConnHit | None:
    p = lb_parser(frame, 1)
    ingress.apply(p)
    if p.egress_spec == 511 or p.conn_handle < 0 or not p.rewritten or p.dg_kind:
        return None
    lb_compute_checksum(p)
    return p.egress_spec, lb_deparser(p), p.conn_handle


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """Frames to the VIP around the fast path's conditions: protocol, conn_table entry, TTL,
    fragments, TCP flags, UDP checksum 0, wrong checksums, odd payloads, trailers, truncation."""
    proto = draw(st.sampled_from([6, 17]))
    sport = draw(st.sampled_from([1234, 1235, 1236, 1237]))
    checksum = draw(st.integers(0, 0xFFFF))
    payload = draw(st.binary(max_size=41))
    l4_len = (20 if proto == 6 else 8) + len(payload)
    ip = _IPV4.pack(
        draw(st.sampled_from([0x45, 0x46, 0x65])),
        0,
        20 + l4_len,
        7,
        draw(st.sampled_from([0, 0x4000, 0x2000, 0x0001])),
        draw(st.integers(0, 255)),
        proto,
        checksum,
        CLIENT,
        VIP,
    )
    if proto == 6:
        flags = draw(st.integers(0, 255))
        l4 = struct.pack("!HHIIBBHHH", sport, 80, 1, 2, 0x50, flags, 512, checksum, 0)
    else:
        l4 = struct.pack("!HHHH", sport, 80, l4_len, draw(st.sampled_from([0, 0xFFFF, checksum])))
    frame = bytes(12) + b"\x08\x00" + ip + l4 + payload + draw(st.binary(max_size=5))
    return frame[: len(frame) - draw(st.integers(0, len(frame)))]


@settings(max_examples=400, deadline=None)
@given(frames() | frames().map(lambda f: f.ljust(80, b"\x00")))
def test_fast_path_matches_general_pipeline(frame: bytes) -> None:
    """Wherever ConnHitPath answers, the general pipeline forwards the same bytes; where the
    general pipeline forwards a rewritten conn_table hit without a digest, ConnHitPath answers
    (NoAction hits, drops and teardown digests are the general pipeline's alone)."""
    assert ConnHitPath(_ingress()).run(frame) == _general(_ingress(), frame)


def test_fast_path_answers_a_plain_hit() -> None:
    """The property above is not vacuous: an ordinary hit takes the fast path."""
    tcp = struct.pack("!HHIIBBHHH", 1234, 80, 1, 2, 0x50, 0x10, 512, 0, 0)
    ip = _IPV4.pack(0x45, 0, 40, 7, 0x4000, 64, 6, 0, CLIENT, VIP)
    hit = ConnHitPath(_ingress()).run(bytes(12) + b"\x08\x00" + ip + tcp)
    assert hit is not None
    assert hit[0] == 3
