"""P4RuntimeSwitchClient against a scripted P4Runtime server (real gRPC on loopback).

The switch-level suite runs the client against p4lb-switch's real server; this one scripts what
a correct server never does or does not let a test see: the updates of each WriteRequest (one
per batch), an error forced onto one update of a batch, a digest list with a malformed sample,
an idle notice naming an entry no handle knows, a digest of another layout. Also a backup's
unsent writes and its promotion.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_p4runtime import ALREADY_EXISTS, OK, FakeP4Runtime
from finsy.proto import p4d, p4i, p4r
from p4rt_controllers import P4rtClient

from controller.core.ops import EntryCount, ErrorKind, Owner, TableInsert
from controller.switch.api import Digest, SwitchError
from controller.switch.p4runtime_client import PipelineFiles

OWNER = Owner.STARTUP


def make_client(port: int, election_id: int, files: PipelineFiles | None = None) -> P4rtClient:
    """A client of the scripted server on `port`."""
    return P4rtClient(f"127.0.0.1:{port}", election_id, files)


@pytest.fixture
def server(sample_p4info: p4i.P4Info) -> Iterator[tuple[FakeP4Runtime, int]]:
    fake = FakeP4Runtime(sample_p4info)
    port = fake.start()
    yield fake, port
    fake.stop()


@pytest.fixture
def client(server: tuple[FakeP4Runtime, int]) -> Iterator[P4rtClient]:
    primary = make_client(server[1], 10)
    yield primary
    primary.close()


def vip(n: int) -> TableInsert:
    return TableInsert(OWNER, "vip_table", (f"10.0.0.{n}", "80", "6"), "set_pool", ("1", "0"))


def test_consecutive_writes_are_one_request_and_errors_land_on_their_ops(
    server: tuple[FakeP4Runtime, int], client: P4rtClient
) -> None:
    fake, _ = server
    outcomes = client.apply(vip(1), vip(2), vip(3))
    assert all(o.ok for o in outcomes)
    assert [len(w.updates) for w in fake.writes] == [3]
    fake.fail_next = [OK, ALREADY_EXISTS]
    again = client.apply(vip(4), vip(5))
    assert [(o.ok, o.error) for o in again] == [(True, None), (False, ErrorKind.DUPLICATE)]


def test_a_read_splits_a_batch_and_two_updates_of_one_entry_never_share_a_request(
    server: tuple[FakeP4Runtime, int], client: P4rtClient
) -> None:
    fake, _ = server
    outcomes = client.apply(vip(1), EntryCount(OWNER, "vip_table"), vip(2), vip(2))
    assert [o.ok for o in outcomes] == [True, True, True, False]
    assert outcomes[1].value == 1 and outcomes[3].error is ErrorKind.DUPLICATE
    assert [len(w.updates) for w in fake.writes] == [1, 1, 1]


def test_a_backup_sends_no_write_and_is_promoted_when_the_primary_leaves(
    server: tuple[FakeP4Runtime, int], client: P4rtClient
) -> None:
    fake, port = server
    client.apply(vip(1))
    backup = make_client(port, 5)
    try:
        (count,) = backup.apply(EntryCount(OWNER, "vip_table"))
        assert count.value == 1 and not backup.p4rt.primary
        sent = len(fake.writes)
        (refused,) = backup.apply(vip(2))
        assert refused.error is ErrorKind.NOT_PRIMARY and len(fake.writes) == sent
        client.close()
        backup.wait_until(lambda: backup.p4rt.primary)
        (written,) = backup.apply(vip(2))
        assert written.ok
    finally:
        backup.close()


def _sample(*values: bytes) -> p4d.P4Data:
    members = [p4d.P4Data(bitstring=v) for v in values]
    return p4d.P4Data(struct=p4d.P4StructLike(members=members))


def test_a_digest_list_is_delivered_then_acknowledged(
    server: tuple[FakeP4Runtime, int], client: P4rtClient
) -> None:
    fake, _ = server
    digests: list[Digest] = []
    client.run(client.p4rt.subscribe(digests.append, lambda handles: None))
    good = _sample(b"\x02", b"\n\x00\x01\x02", b"\n\x00\x00d", b"\x9c@", b"P", b"\x06", b"\x01")
    good.struct.members.extend(
        [p4d.P4Data(bitstring=b"\n\x00\x02\x03"), p4d.P4Data(bitstring=b"P")]
    )
    bad = _sample(b"\x09")
    digest_list = p4r.DigestList(digest_id=300, list_id=42, data=[good, bad])
    fake.notify(p4r.StreamMessageResponse(digest=digest_list))
    client.wait_until(lambda: bool(digests))
    assert digests == [
        Digest("teardown", "10.0.1.2", "10.0.0.100", 40000, 80, 6, 1, "10.0.2.3", 80)
    ]
    assert client.p4rt.malformed_digests == 1
    client.run(client.p4rt.table_num_entries("vip_table"))  # a round trip after the ack
    assert [(a.digest_id, a.list_id) for a in fake.acks] == [(300, 42)]


def test_an_idle_notification_names_the_entries_by_their_handles(
    server: tuple[FakeP4Runtime, int], client: P4rtClient
) -> None:
    fake, _ = server
    aged: list[list[int]] = []
    client.run(client.p4rt.subscribe(lambda digest: None, lambda h: aged.append(list(h))))
    keys = ["10.0.1.2", "10.0.0.100", "40000", "80", "6"]
    handle = client.run(client.p4rt.table_add("conn_table", "rewrite_dst", keys, ["1", "2"]))
    client.run(client.p4rt.table_set_timeout("conn_table", handle, 100))
    entry = next(iter(fake.entries.values()))
    assert entry.idle_timeout_ns == 100_000_000
    stranger = p4r.TableEntry()
    stranger.CopyFrom(entry)
    stranger.match[2].exact.value = b"\x01"  # an entry no handle names
    notice = p4r.IdleTimeoutNotification(table_entry=[entry, stranger])
    fake.notify(p4r.StreamMessageResponse(idle_timeout_notification=notice))
    client.wait_until(lambda: bool(aged))
    assert aged == [[handle]]


def test_subscribing_to_a_digest_of_another_layout_is_refused(sample_p4info: p4i.P4Info) -> None:
    members = sample_p4info.type_info.structs["digest_t"].members
    members[0].type_spec.bitstring.bit.bitwidth = 16  # `kind` two bytes wide: not our program
    fake = FakeP4Runtime(sample_p4info)
    client = make_client(fake.start(), 10)
    try:
        with pytest.raises(SwitchError) as raised:
            client.run(client.p4rt.subscribe(lambda digest: None, lambda handles: None))
        assert "expects" in str(raised.value)
        assert not fake.writes  # the digest was not enabled
    finally:
        client.close()
        fake.stop()


def test_the_program_is_loaded_only_when_the_target_runs_another(
    server: tuple[FakeP4Runtime, int], sample_p4info: p4i.P4Info, tmp_path: Path
) -> None:
    fake, port = server
    same, other = tmp_path / "same.p4info.bin", tmp_path / "other.p4info.bin"
    same.write_bytes(sample_p4info.SerializeToString())
    changed = p4i.P4Info()
    changed.CopyFrom(sample_p4info)
    changed.tables[0].size = 512
    other.write_bytes(changed.SerializeToString())
    device_config = tmp_path / "lb.json"
    device_config.write_text("{}")
    other_primary = make_client(port, 50)  # someone else is primary: no one may load
    try:
        other_primary.wait_until(lambda: other_primary.p4rt.primary)
        refused = make_client(port, 10, PipelineFiles(other, device_config))
        (outcome,) = refused.apply(EntryCount(OWNER, "vip_table"))
        assert outcome.error is ErrorKind.NOT_PRIMARY and fake.loads == 0
        refused.close()
    finally:
        other_primary.close()
    for files, loads in ((same, 0), (other, 1)):
        fake.wait_streams(0)  # the last client's election ID is free again
        client = make_client(port, 10, PipelineFiles(files, device_config))
        try:
            (count,) = client.apply(EntryCount(OWNER, "vip_table"))
            assert count.ok and fake.loads == loads
        finally:
            client.close()
    assert fake.info == changed
