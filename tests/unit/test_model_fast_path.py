"""The specialised paths (conn_table hit, new connection) give the general pipeline's bytes,
digests and register state wherever they answer, and leave no trace where they decline."""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from p4model.fast_path import FastPath, FastResult
from p4model.packet import lb_deparser, lb_parser
from p4model.program import (
    DROP_PORT,
    HASH_TUPLE,
    LbIngress,
    digest_sample,
    lb_compute_checksum,
)
from p4src.contract import AFFINITY_VERSION, Digest, load_settings

CLIENT, VIP = 0x0A000102, 0x0A000064
_IPV4 = struct.Struct("!BBHHHBBHII")


def _ingress(bloom_hashes: int = 2) -> LbIngress:
    ingress = LbIngress(replace(load_settings(), bloom_hashes=bloom_hashes))
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


def _general_hit(ingress: LbIngress, frame: bytes) -> FastResult | None:
    p = lb_parser(frame, 1)
    ingress.apply(p)
    if p.egress_spec == 511 or p.conn_handle < 0 or not p.rewritten or p.dg_kind:
        return None
    lb_compute_checksum(p)
    return p.egress_spec, lb_deparser(p), p.conn_handle, None


@st.composite
def frames(
    draw: st.DrawFn,
    sports: st.SearchStrategy[int],
    clients: st.SearchStrategy[int],
    destinations: st.SearchStrategy[tuple[int, int]],
) -> bytes:
    """Frames from `clients` to `destinations` (address, port) around the fast paths'
    conditions: protocol, TTL, fragments, TCP flags, UDP checksum 0, wrong checksums, odd
    payloads, trailers, truncation."""
    well_formed = draw(st.sampled_from([True, True, False]))  # else mostly malformed
    proto = draw(st.sampled_from([6, 17]))
    sport = draw(sports)
    dst, dport = draw(destinations)
    checksum = draw(st.integers(0, 0xFFFF))
    payload = draw(st.binary(max_size=41))
    l4_len = (20 if proto == 6 else 8) + len(payload)
    ip = _IPV4.pack(
        0x45 if well_formed else draw(st.sampled_from([0x45, 0x46, 0x65])),
        0,
        20 + l4_len,
        7,
        draw(st.sampled_from([0, 0x4000] if well_formed else [0, 0x4000, 0x2000, 0x0001])),
        draw(st.integers(2 if well_formed else 0, 255)),
        proto,
        checksum,
        draw(clients),
        dst,
    )
    if proto == 6:
        flags = draw(st.integers(0, 255))
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 2, 0x50, flags, 512, checksum, 0)
    else:
        udp_checksum = draw(st.sampled_from([0, 0xFFFF, checksum]))
        l4 = struct.pack("!HHHH", sport, dport, l4_len, udp_checksum)
    frame = bytes(12) + b"\x08\x00" + ip + l4 + payload + draw(st.binary(max_size=5))
    return frame if well_formed else frame[: len(frame) - draw(st.integers(0, len(frame)))]


hit_frames = frames(st.sampled_from([1234, 1235, 1236, 1237]), st.just(CLIENT), st.just((VIP, 80)))


@settings(max_examples=400, deadline=None)
@given(hit_frames | hit_frames.map(lambda f: f.ljust(80, b"\x00")))
def test_fast_path_matches_general_pipeline_on_hits(frame: bytes) -> None:
    """Wherever FastPath answers (here: no VIP, so only hits), the general pipeline forwards the
    same bytes; where the general pipeline forwards a rewritten conn_table hit without a digest,
    FastPath answers (NoAction hits, drops and teardown digests are the general pipeline's)."""
    assert FastPath(_ingress()).run(frame) == _general_hit(_ingress(), frame)


def test_fast_path_answers_a_plain_hit() -> None:
    """The property above is not vacuous: an ordinary hit takes the fast path."""
    tcp = struct.pack("!HHIIBBHHH", 1234, 80, 1, 2, 0x50, 0x10, 512, 0, 0)
    ip = _IPV4.pack(0x45, 0, 40, 7, 0x4000, 64, 6, 0, CLIENT, VIP)
    hit = FastPath(_ingress()).run(bytes(12) + b"\x08\x00" + ip + tcp)
    assert hit is not None
    assert hit[0] == 3
    assert hit[3] is None


# ---- new connections ---------------------------------------------------------------------

OTHER_CLIENT, AFFINITY_VIP = 0x0A000103, 0x0A000065
EPOCHS = st.sampled_from([0, 0, 1, 7, 0xFFFFFFFF])
VERSIONS = st.tuples(st.integers(0, 3), EPOCHS, EPOCHS, EPOCHS, EPOCHS)
VIP_PORT = (VIP, 80)
new_conn_frames = frames(
    st.sampled_from([1234, 1237, 40000, 40001, 40002]),
    st.sampled_from([CLIENT, OTHER_CLIENT]),
    st.sampled_from(  # (10.0.2.9 is no VIP)
        [VIP_PORT, VIP_PORT, (VIP, 81), (VIP, 82), (AFFINITY_VIP, 80), (0x0A000209, 80)]
    ),
)


@dataclass(frozen=True)
class NewConnSetup:
    """Tables and registers around a new connection, drawn."""

    history: tuple[tuple[tuple[int, ...], tuple[bytes, ...]], ...]
    """Rollout steps: version_config's parameters, then frames the general pipeline ran."""
    versions: tuple[int, ...]
    """version_config's parameters when the frame under test arrives."""
    config_entry: bool = False
    """version_config also holds an entry (keyless: it overrides the default)."""
    unusual_actions: bool = False
    """vip_table holds a NoAction entry (the VIP's pool is then 0), and the default of
    conn_table, affinity_table and dip_table is rewrite_dst."""
    bloom_hashes: int = 2
    cells: tuple[tuple[int, int, int], ...] = ()
    """Bloom cells written after the history: (slot, index, value), often at the indices of
    the frame under test, so that some but not all of them hold an epoch."""


def _new_conn_ingress(setup: NewConnSetup) -> LbIngress:
    ingress = _ingress(setup.bloom_hashes)
    vips = [
        ("10.0.0.100", "80", "6", "set_pool", ["0", "0"]),
        ("10.0.0.100", "80", "17", "set_pool", ["1", "1"]),
        ("10.0.0.100", "81", "17", "set_pool", ["1", "0"]),
        ("10.0.0.100", "82", "6", "set_pool", ["2", "0"]),  # a pool without backends
        ("10.0.0.101", "80", "6", "set_pool", ["1", "1"]),
        ("10.0.0.101", "80", "17", "set_pool", ["0", "1"]),
    ]
    for dst, dport, proto, action, params in vips:
        ingress.vip_table.add([dst, dport, proto], action, params)
    ingress.affinity_table.add(
        ["10.0.1.3", "10.0.0.101", "80", "6"], "rewrite_dst", ["10.0.2.7", "8080"]
    )
    for version in range(4):
        for pool in (0, 1):
            if (version, pool) == (3, 1):
                continue  # a dip_table miss
            keys = [str(version), str(pool)]
            port = str(8080 + version)
            table = ingress.dip_table
            table.add([*keys, "0/1"], "rewrite_dst", [f"10.0.2.{2 + version + 4 * pool}", port])
            table.add([*keys, "0x8000/2"], "rewrite_dst", ["10.0.0.20", port])
            table.add([*keys, "0xc000/3"], "rewrite_dst", ["10.0.2.9", "80"])  # route drops
            table.add([*keys, "0xe000/4"], "drop", [])
            table.add([*keys, "0xf000/4"], "rewrite_dst", ["10.0.3.1", "80"])  # no route
    if setup.unusual_actions:
        ingress.vip_table.add(["10.0.0.100", "81", "6"], "NoAction", [])
        for table in (ingress.conn_table, ingress.affinity_table, ingress.dip_table):
            table.set_default("rewrite_dst", ["10.0.2.5", "9999"])
    for versions, frames_then in setup.history:
        _set_versions(ingress, versions)
        for frame in frames_then:
            ingress.apply(lb_parser(frame, 1))
    for slot, index, value in setup.cells:
        ingress.blooms[slot].control_write(index, value)
    _set_versions(ingress, setup.versions)
    if setup.config_entry:
        ingress.version_config.add([], "set_versions", ["1", "7", "7", "0", "1"])
    return ingress


def _set_versions(ingress: LbIngress, versions: tuple[int, ...]) -> None:
    ingress.version_config.set_default("set_versions", [str(v) for v in versions])


def _blooms(ingress: LbIngress) -> list[list[int]]:
    return [list(bloom.cells) for bloom in ingress.blooms]


def _general(
    ingress: LbIngress, frame: bytes
) -> tuple[tuple[int, bytes] | None, int, Digest | None]:
    """What the general pipeline does with `frame`: what leaves, the conn_table handle hit, the
    digest."""
    p = lb_parser(frame, 1)
    ingress.apply(p)
    digest = None
    if p.dg_kind:
        digest = digest_sample(p.dg_kind, p.dg_tuple, p.dg_version, p.dg_dip_addr, p.dg_dip_port)
    if p.egress_spec == DROP_PORT:
        return None, p.conn_handle, digest
    lb_compute_checksum(p)
    return (p.egress_spec, lb_deparser(p)), p.conn_handle, digest


@st.composite
def new_conn_cases(draw: st.DrawFn) -> tuple[NewConnSetup, bytes]:
    """A frame, and a rollout history whose Bloom filters often hold its 5-tuple."""
    frame = draw(new_conn_frames | new_conn_frames.map(lambda f: f.ljust(80, b"\x00")))
    earlier = st.lists(st.just(frame) | new_conn_frames, max_size=3).map(tuple)
    history = tuple(draw(st.lists(st.tuples(VERSIONS, earlier), max_size=3)))
    versions: st.SearchStrategy[tuple[int, ...]] = VERSIONS
    if history:  # often a rollout: the next slot active with a new epoch, the others kept
        active, *epochs = history[-1][0]
        active = (active + 1) % 4
        epochs[active] = 9
        versions |= st.just((active, *epochs))
    bloom_hashes = draw(st.sampled_from([2, 3]))
    versions_now = draw(versions)
    # cells of one slot at some of the frame's indices (with its source port, or with 0 as an
    # affinity VIP hashes it), set to an epoch: often a partial match
    cells = st.integers(0, 3).flatmap(
        lambda slot: st.tuples(
            st.just(slot),
            st.sampled_from(_bloom_indices(frame, bloom_hashes)).flatmap(
                lambda indices: st.sets(st.sampled_from(indices), min_size=1)
            ),
            st.just(versions_now[1 + slot]) | EPOCHS,
        )
    )
    setup = NewConnSetup(
        history,
        versions_now,
        config_entry=draw(st.sampled_from([False, False, False, True])),
        unusual_actions=draw(st.sampled_from([False, False, False, True])),
        bloom_hashes=bloom_hashes,
        cells=tuple(
            (slot, index, value)
            for slot, indices, value in draw(st.lists(cells, max_size=3))
            for index in sorted(indices)
        ),
    )
    return setup, frame


def _bloom_indices(frame: bytes, bloom_hashes: int) -> list[list[int]]:
    """The Bloom indices of the frame's 5-tuple, with its source port and with 0 (affinity)."""
    ingress = _ingress(bloom_hashes)
    p = lb_parser(frame, 1)
    indices = []
    for hash_sport in (p.l4_sport, 0):
        p.hash_sport = hash_sport
        fields = (p.ipv4_src_addr, p.ipv4_dst_addr, hash_sport, p.l4_dport, p.ipv4_protocol)
        indices.append(ingress.bloom_lookup(HASH_TUPLE.pack(*fields), p)[0])
    return indices


@settings(max_examples=600, deadline=None)
@given(new_conn_cases())
def test_fast_path_matches_general_pipeline_on_new_connections(
    case: tuple[NewConnSetup, bytes],
) -> None:
    """Wherever FastPath answers, the general pipeline forwards the same bytes on the same port,
    raises the same digest and leaves the same Bloom cells; where it declines, it has written
    nothing; and every slot-version new_conn digest of a forwarded packet is FastPath's, unless
    an action on the way was an unusual one."""
    setup, frame = case
    fast_ingress, general_ingress = _new_conn_ingress(setup), _new_conn_ingress(setup)
    before = _blooms(fast_ingress)
    assert before == _blooms(general_ingress)
    fast = FastPath(fast_ingress).run(frame)
    out, handle, digest = _general(general_ingress, frame)
    if fast is not None:
        event(_answered(fast, _blooms(fast_ingress) != before))
        assert (fast[0], fast[1]) == out
        assert fast[2] == handle
        assert fast[3] == digest
        assert _blooms(fast_ingress) == _blooms(general_ingress)
        return
    event("declined")
    assert _blooms(fast_ingress) == before
    plain_new_conn = (
        out is not None
        and digest is not None
        and digest.kind == "new_conn"
        and digest.version != AFFINITY_VERSION
    )
    assert not plain_new_conn or setup.unusual_actions


def _answered(fast: FastResult, tagged: bool) -> str:
    if fast[3] is None:
        return "answered: a hit"
    if tagged:
        return "answered: a new connection, its Bloom cells tagged"
    return "answered: a new connection the Bloom filters held (or re-tagged with the same epoch)"


def test_fast_path_answers_a_plain_new_connection() -> None:
    """The property above is not vacuous: a new connection to a VIP takes the fast path, tags
    the active slot's Bloom cells with its epoch and raises the digest."""
    ingress = _new_conn_ingress(NewConnSetup((), (2, 0, 0, 5, 0)))
    tcp = struct.pack("!HHIIBBHHH", 40002, 80, 1, 2, 0x50, 0x02, 512, 0, 0)  # flow hash 0x4a4d
    ip = _IPV4.pack(0x45, 0, 40, 7, 0x4000, 64, 6, 0, CLIENT, VIP)
    fast = FastPath(ingress).run(bytes(12) + b"\x08\x00" + ip + tcp)
    assert fast is not None
    port, _, handle, digest = fast
    assert (port, handle) == (3, -1)
    assert digest is not None
    fields = (digest.kind, digest.version, digest.src_port, digest.dst_port, digest.dip_ip)
    assert fields == ("new_conn", 2, 40002, 80, "10.0.2.4")
    assert sorted(set(ingress.blooms[2].cells)) == [0, 5]


def _tagged_cases() -> list[tuple[int, tuple[int, ...]]]:
    """(BLOOM_HASHES, which of the frame's indices slot 1 tags): every subset, full or not."""
    cases = []
    for hashes in (2, 3):
        for mask in range(1, 1 << hashes):
            cases.append((hashes, tuple(i for i in range(hashes) if mask >> i & 1)))
    return cases


@pytest.mark.parametrize(("bloom_hashes", "tagged"), _tagged_cases())
def test_fast_path_holds_a_connection_only_when_every_cell_is_tagged(
    bloom_hashes: int, tagged: tuple[int, ...]
) -> None:
    """Slot 1 tags some of the 5-tuple's cells with its epoch: all of them, and the connection
    stays on slot 1; fewer, and it goes to the active slot 0, tagged there, as in the general
    pipeline."""
    tcp = struct.pack("!HHIIBBHHH", 40002, 80, 1, 2, 0x50, 0x02, 512, 0, 0)  # flow hash 0x4a4d
    frame = bytes(12) + b"\x08\x00" + _IPV4.pack(0x45, 0, 40, 7, 0, 64, 6, 0, CLIENT, VIP) + tcp
    indices = _bloom_indices(frame, bloom_hashes)[0]
    cells = tuple((1, indices[i], 7) for i in tagged)
    setup = NewConnSetup((), (0, 3, 7, 0, 0), bloom_hashes=bloom_hashes, cells=cells)
    fast_ingress, general_ingress = _new_conn_ingress(setup), _new_conn_ingress(setup)
    fast = FastPath(fast_ingress).run(frame)
    out, _, digest = _general(general_ingress, frame)
    assert fast is not None
    assert ((fast[0], fast[1]), fast[3]) == (out, digest)
    assert _blooms(fast_ingress) == _blooms(general_ingress)
    assert digest is not None
    assert digest.version == (1 if {indices[i] for i in tagged} == set(indices) else 0)
