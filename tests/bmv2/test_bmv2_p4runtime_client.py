"""The controller's P4RuntimeSwitchClient against BMv2's simple_switch_grpc (skipped unless p4c
and simple_switch_grpc are on PATH).

Each test starts a fresh `simple_switch_grpc --no-p4` on a free port; the first client loads the
program over P4Runtime. Frames travel over the switch's nanomsg packet socket. Waits run the
clients' thread calls until the awaited event, each bounded by ThreadedClock's 10 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from grpc_switch_harness import (
    CompiledP4Runtime,
    GrpcSwitch,
    compile_with_p4info,
    tools_missing,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from p4rt_controllers import P4rtClient

from controller.core.ops import (
    EntryCount,
    ErrorKind,
    Owner,
    TableInsert,
    TableRead,
)
from controller.switch.api import DefaultEntry, Digest, SwitchError
from controller.switch.p4runtime_client import (
    RECONNECT_INTERVAL,
    DigestConfig,
)
from controller.switch.p4runtime_pipeline import PipelineFiles

ROOT = Path(__file__).resolve().parents[2]
MISSING = tools_missing()

pytestmark = [
    pytest.mark.bmv2,
    pytest.mark.skipif(bool(MISSING), reason=f"not on PATH: {', '.join(MISSING)}"),
]

# 10.0.1.2:40000 -> VIP 10.0.0.100:80 TCP SYN (flow hash 0x82c6, see tests/conformance/vip_tcp.vec)
SYN = bytes.fromhex(
    "00010a00010100000a000102080045000028000100004006656a0a0001020a000064"
    "9c400050000003e80000000050022000da040000"
)
# 10.0.1.2:40000 -> 10.0.2.100:80 UDP, not a VIP: routed only
TO_SERVER = bytes.fromhex(
    "00010a00010100000a00010208004500001c000100004011656e0a0001020a0002649c40005000080000"
)
ROUTE = ("2", "00:01:0a:00:02:01", "00:00:0a:00:02:02")
NEW_CONN = Digest("new_conn", "10.0.1.2", "10.0.0.100", 40000, 80, 6, 0, "10.0.2.3", 8080)
OWNER = Owner.STARTUP
PACKET_LIMIT = 10.0


@pytest.fixture(scope="module")
def compiled() -> CompiledP4Runtime:
    """The program and its P4Info, compiled once."""
    result = compile_with_p4info()
    assert result.returncode == 0, result.output
    return result


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[GrpcSwitch]:
    """A fresh simple_switch_grpc with no program."""
    with GrpcSwitch(tmp_path) as sw:
        yield sw


def make_client(
    switch: GrpcSwitch,
    election_id: int,
    files: PipelineFiles | None,
    digest_config: DigestConfig | None = None,
) -> P4rtClient:
    """A client of the simple_switch_grpc under test."""
    return P4rtClient(
        switch.address,
        election_id,
        files,
        device_id=switch.device_id,
        digest_config=digest_config,
    )


@pytest.fixture
def files(compiled: CompiledP4Runtime) -> PipelineFiles:
    """The pipeline the clients load."""
    return PipelineFiles(compiled.p4info_path, compiled.json_path)


@pytest.fixture
def client(switch: GrpcSwitch, files: PipelineFiles) -> Iterator[P4rtClient]:
    """The primary client (election ID 10); it loads the program."""
    # A long ack timeout: a repeated digest can then only come from our acknowledgement.
    primary = make_client(switch, 10, files, DigestConfig(ack_timeout_ns=600 * 10**9))
    yield primary
    primary.close()


def vip(n: int, pool: int = 1) -> TableInsert:
    """A vip_table insert for VIP number `n`."""
    keys = (f"10.200.0.{n}", "80", "6")
    return TableInsert(OWNER, "vip_table", keys, "set_pool", (str(pool), "0"))


def test_tables_and_default_actions_act_on_packets(client: P4rtClient, switch: GrpcSwitch) -> None:
    """Entries and defaults written over P4Runtime read back and forward real frames."""
    p4rt = client.p4rt
    handle = client.run(p4rt.table_add("ipv4_lpm", "forward", ["10.0.2.0/24"], list(ROUTE)))
    assert client.run(p4rt.table_num_entries("ipv4_lpm")) == 1
    other = ["3", "00:01:0a:00:00:01", "00:00:0a:00:00:02"]
    client.run(p4rt.table_modify("ipv4_lpm", "forward", handle, other))
    switch.send(1, TO_SERVER)
    sent = switch.receive(PACKET_LIMIT)
    assert sent is not None and sent[0] == 3  # the modified route
    client.run(p4rt.table_clear("ipv4_lpm"))
    assert client.run(p4rt.table_num_entries("ipv4_lpm")) == 0
    initial = client.run(p4rt.table_get_default("version_config"))
    assert initial == DefaultEntry("set_versions", (0, 0, 0, 0, 0))
    params = ["3", "1", "4294967295", "0", "77"]
    client.run(p4rt.table_set_default("version_config", "set_versions", params))
    read = client.run(p4rt.table_get_default("version_config"))
    assert read == DefaultEntry("set_versions", (3, 1, 4294967295, 0, 77))


def test_a_batch_is_one_write_and_each_update_gets_its_own_error(client: P4rtClient) -> None:
    """Consecutive writes share one WriteRequest; the switch's per-update errors map to each
    operation's kind, and an operation the client cannot encode is refused without sending."""
    (first,) = client.apply(vip(1))
    assert first.ok
    sent = client.p4rt.write_requests
    too_wide = TableInsert(OWNER, "vip_table", ("10.200.0.9", "70000", "6"), "set_pool", ("1", "0"))
    outcomes = client.apply(vip(2), vip(1), too_wide, vip(3))
    assert client.p4rt.write_requests == sent + 1
    assert [(o.ok, o.error) for o in outcomes] == [
        (True, None),
        (False, ErrorKind.DUPLICATE),
        (False, ErrorKind.INVALID),
        (True, None),
    ]
    (count,) = client.apply(EntryCount(OWNER, "vip_table"))
    assert count.value == 3


def test_entries_read_back_get_handles_that_later_operations_use(
    client: P4rtClient, switch: GrpcSwitch
) -> None:
    """Another client's entries read back carry handles this client can delete them by."""
    (added,) = client.apply(vip(4, pool=7))
    assert added.ok
    other = make_client(switch, 3, None)  # a backup: it may read
    try:
        (read,) = other.apply(TableRead(OWNER, "vip_table"))
        (entry,) = read.entries
        assert (entry.match, entry.action) == ((0x0AC80004, 80, 6), "set_pool")
        assert entry.params == (7, 0)
    finally:
        other.close()
    (mine,) = client.apply(TableRead(OWNER, "vip_table"))
    assert [e.handle for e in mine.entries] == [added.handle]


def test_a_backup_reads_is_refused_writes_and_takes_over_when_the_primary_goes(
    client: P4rtClient, switch: GrpcSwitch
) -> None:
    """A lower election ID makes a backup: reads work, writes fail as NOT_PRIMARY unsent; once
    the primary closes, the switch promotes the backup and its writes go through."""
    client.apply(vip(5))
    backup = make_client(switch, 5, None)
    try:
        (count,) = backup.apply(EntryCount(OWNER, "vip_table"))
        assert count.value == 1
        assert not backup.p4rt.primary
        (refused,) = backup.apply(vip(6))
        assert (refused.ok, refused.error) == (False, ErrorKind.NOT_PRIMARY)
        assert backup.p4rt.write_requests == 0
        client.close()
        backup.wait_until(lambda: backup.p4rt.primary)
        (written,) = backup.apply(vip(6))
        assert written.ok
    finally:
        backup.close()


def test_a_digest_from_a_real_packet_arrives_and_is_acknowledged(
    client: P4rtClient, switch: GrpcSwitch
) -> None:
    """A VIP SYN's new_conn digest arrives decoded; the same SYN again raises it again only
    because the first list was acknowledged (the ack timeout is far longer than the test)."""
    p4rt = client.p4rt
    client.run(p4rt.table_add("ipv4_lpm", "forward", ["10.0.2.0/24"], list(ROUTE)))
    client.run(p4rt.table_add("vip_table", "set_pool", ["10.0.0.100", "80", "6"], ["0", "0"]))
    client.run(p4rt.table_add("dip_table", "rewrite_dst", ["0", "0", "0/0"], ["10.0.2.3", "8080"]))
    digests: list[Digest] = []
    client.run(p4rt.subscribe(digests.append, lambda handles: None))
    switch.send(1, SYN)
    client.wait_until(lambda: len(digests) == 1)
    assert digests == [NEW_CONN]
    switch.send(1, SYN)
    client.wait_until(lambda: len(digests) == 2)
    assert digests == [NEW_CONN, NEW_CONN]
    assert p4rt.malformed_digests == 0


def test_a_higher_election_id_takes_over_and_the_old_primary_learns_it_is_a_backup(
    client: P4rtClient, switch: GrpcSwitch
) -> None:
    """A second controller with a higher election ID becomes primary at once; the switch tells
    the first, whose writes then fail as NOT_PRIMARY without being sent."""
    client.apply(vip(6))  # connected, the program loaded
    assert client.p4rt.primary
    newer = make_client(switch, 20, None)
    try:
        newer.wait_until(lambda: newer.p4rt.primary)
        client.wait_until(lambda: not client.p4rt.primary)
        sent = client.p4rt.write_requests
        (refused,) = client.apply(vip(7))
        assert (refused.ok, refused.error) == (False, ErrorKind.NOT_PRIMARY)
        assert client.p4rt.write_requests == sent
        (written,) = newer.apply(vip(7))
        assert written.ok
    finally:
        newer.close()


def test_a_promoted_backup_enables_the_digest_it_subscribed_to(
    client: P4rtClient, switch: GrpcSwitch
) -> None:
    """A backup's subscription waits; once the primary has gone, the promoted backup configures
    the digest and a real packet's digest reaches it."""
    p4rt = client.p4rt
    client.run(p4rt.table_add("ipv4_lpm", "forward", ["10.0.2.0/24"], list(ROUTE)))
    client.run(p4rt.table_add("vip_table", "set_pool", ["10.0.0.100", "80", "6"], ["0", "0"]))
    client.run(p4rt.table_add("dip_table", "rewrite_dst", ["0", "0", "0/0"], ["10.0.2.3", "8080"]))
    backup = make_client(switch, 5, None)
    try:
        digests: list[Digest] = []
        backup.run(backup.p4rt.subscribe(digests.append, lambda handles: None))
        assert not backup.p4rt.primary
        client.close()
        backup.wait_until(lambda: backup.p4rt.primary)
        # The digest is configured on the worker after the promotion; a count queued behind it
        # returns once it is done.
        backup.run(backup.p4rt.table_num_entries("vip_table"))
        switch.send(1, SYN)
        backup.wait_until(lambda: bool(digests))
        assert digests == [NEW_CONN]
    finally:
        backup.close()


def test_an_idle_entry_is_reported_by_its_handle(client: P4rtClient) -> None:
    """A conn_table entry given an idle timeout (MODIFY with idle_timeout_ns) is reported idle."""
    p4rt = client.p4rt
    aged: list[Sequence[int]] = []
    client.run(p4rt.subscribe(lambda digest: None, aged.append))
    keys = ["10.0.1.2", "10.0.0.100", "40000", "80", "6"]
    handle = client.run(p4rt.table_add("conn_table", "rewrite_dst", keys, ["10.0.2.3", "8080"]))
    client.run(p4rt.table_set_timeout("conn_table", handle, 100))
    client.wait_until(lambda: bool(aged))
    assert list(aged[0]) == [handle]
    # The timeout is kept when the action changes (MODIFY sends both).
    client.run(p4rt.table_modify("conn_table", "rewrite_dst", handle, ["10.0.2.4", "8080"]))
    (read,) = client.apply(TableRead(OWNER, "conn_table"))
    assert [e.params for e in read.entries] == [(0x0A000204, 8080)]


def test_a_restarted_switch_gets_the_pipeline_and_digest_again(
    client: P4rtClient, switch: GrpcSwitch
) -> None:
    """The stream breaks when the switch restarts; the client reconnects on its own (paced by
    the reactor's clock), loads the program again and re-enables the digest; handles of the lost
    entries are not found."""
    p4rt = client.p4rt
    digests: list[Digest] = []
    client.run(p4rt.subscribe(digests.append, lambda handles: None))
    lost = client.run(p4rt.table_add("vip_table", "set_pool", ["10.0.0.1", "80", "6"], ["1", "0"]))
    switch.restart()

    client.wait_until(lambda: not p4rt.primary)  # the stream has ended

    def reconnected() -> bool:
        client.clock.advance(RECONNECT_INTERVAL)  # fires a pending reconnection attempt
        return p4rt.primary

    client.wait_until(reconnected)
    assert client.run(p4rt.table_num_entries("vip_table")) == 0
    error = client.failure(p4rt.table_delete("vip_table", lost))
    assert isinstance(error, SwitchError) and error.kind is ErrorKind.NOT_FOUND
    client.run(p4rt.table_add("ipv4_lpm", "forward", ["10.0.2.0/24"], list(ROUTE)))
    client.run(p4rt.table_add("vip_table", "set_pool", ["10.0.0.100", "80", "6"], ["0", "0"]))
    client.run(p4rt.table_add("dip_table", "rewrite_dst", ["0", "0", "0/0"], ["10.0.2.3", "8080"]))
    switch.send(1, SYN)
    client.wait_until(lambda: bool(digests))
    assert digests == [NEW_CONN]


def test_the_switch_level_suite_passes_through_p4runtime(
    client: P4rtClient, switch: GrpcSwitch
) -> None:
    """tests/integration/test_switch_targets.py with P4LB_TEST_SWITCH naming this switch; its
    client outranks this test's (which loaded the program and stays connected as a backup)."""
    client.run(client.p4rt.table_num_entries("vip_table"))  # the program is loaded
    suite = ROOT / "tests" / "integration" / "test_switch_targets.py"
    env = {**os.environ, "P4LB_TEST_SWITCH": f"{switch.spec}&election_id=100"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "skipped" not in run.stdout.splitlines()[-1]
