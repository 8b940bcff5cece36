"""The same P4Runtime conversation with BMv2's simple_switch_grpc and with p4lb-switch: the same
status codes, advisories and read-back values (both get p4c's P4Info, so p4lb-switch also shows
it adopts p4c's IDs), except where the spec names a code and BMv2 answers another
(KNOWN_DIFFERENCES: p4lb-switch follows the spec there) and before the first Set (p4lb-switch
runs our program from the start). Where the spec is silent or, as for arbitration, BMv2 keeps an
older rule our controller relies on, p4lb-switch answers as BMv2."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from finsy.proto import p4i, p4r, p4r_grpc

# The P4Runtime test client lives beside the integration tier's tests; this tier reuses it.
from grpc_switch_harness import GrpcSwitch, compile_with_p4info, tools_missing

from p4model import Switch
from p4model.server import SwitchServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from p4rt_harness import (
    Names,
    StreamClient,
    batch_errors,
    read,
    set_pipeline,
    update,
    write,
)

MISSING = tools_missing()
pytestmark = [
    pytest.mark.bmv2,
    pytest.mark.skipif(bool(MISSING), reason=f"not on PATH: {', '.join(MISSING)}"),
]
INSERT, MODIFY, DELETE = p4r.Update.INSERT, p4r.Update.MODIFY, p4r.Update.DELETE
VIP = b"\x0a\x00\x00\x64"
KNOWN_DIFFERENCES = {
    # (p4lb-switch, BMv2) where the P4Runtime spec says what to answer and BMv2 does not:
    # a too-wide bytestring is OUT_OF_RANGE (11), BMv2 says INVALID_ARGUMENT (3)...
    "batch": ("batch 0,6,11,5,3", "batch 0,6,3,5,3"),
    # ... an empty one is OUT_OF_RANGE too, BMv2 accepts it (as 0) ...
    "bad entries": ("batch 11,3,3,3,3,3,3,3", "batch 0,3,3,3,3,3,3,3"),
    # ... and writes to a const table are PERMISSION_DENIED (7), where BMv2 answers with what
    # its entry lookup gives: UNKNOWN (2) for an insert, NOT_FOUND (5) otherwise.
    "const table insert": ("batch 7", "batch 2"),
    "const table modify": ("batch 7", "batch 5"),
    "const table delete": ("batch 7", "batch 5"),
    # p4lb-switch can run only our program and runs it from the start, under the model's own
    # P4Info: a Get before any Set answers with it, and a write carrying p4c's IDs before p4c's
    # P4Info is pushed names unknown entities (INVALID_ARGUMENT, 3). BMv2 has no pipeline yet.
    "get before set": ("OK", "FAILED_PRECONDITION"),
    "write before set": ("batch 3", "FAILED_PRECONDITION"),
}


@pytest.fixture(scope="module")
def compiled() -> tuple[p4i.P4Info, bytes]:
    """p4c's P4Info and BMv2 JSON for our program."""
    return compile_with_p4info().program()


@pytest.fixture
def bmv2(tmp_path: Path) -> Iterator[str]:
    """A simple_switch_grpc with no program on ephemeral ports; its gRPC address."""
    with GrpcSwitch(tmp_path) as switch:
        yield switch.address


@pytest.fixture
def model() -> Iterator[str]:
    """A p4lb-switch with P4Runtime on an ephemeral port; its address."""
    with SwitchServer(Switch(), [], "127.0.0.1:0").running() as server:
        yield server.p4runtime_address


def _code(call: Any) -> str:
    try:
        call()
    except grpc.RpcError as exc:
        if exc.code() is grpc.StatusCode.UNKNOWN:
            return "batch " + ",".join(str(e.canonical_code) for e in batch_errors(exc))
        return str(exc.code().name)
    return "OK"


def conversation(address: str, info: p4i.P4Info, device_config: bytes) -> dict[str, object]:
    """Talk to a P4Runtime server at `address`; what it answered, by step."""
    seen: dict[str, object] = {}
    n = Names(info)
    channel = grpc.insecure_channel(address)
    stub = p4r_grpc.P4RuntimeStub(channel)
    a, b = StreamClient(stub), StreamClient(stub)
    get = p4r.GetForwardingPipelineConfigRequest(device_id=1)
    seen["get before set"] = _code(lambda: stub.GetForwardingPipelineConfig(get))
    seen["arbitration a"] = a.arbitrate(10).status.code
    advisory = b.arbitrate(5)
    seen["arbitration b"] = (advisory.status.code, advisory.election_id.low)
    vip = n.entry("vip_table", [VIP, b"\x00\x50", b"\x06"], "set_pool", [b"\x00\x07", b"\x01"])
    seen["write before set"] = _code(lambda: write(stub, 10, update(INSERT, vip)))
    set_pipeline(stub, info, 10, device_config=device_config)
    seen["set from backup"] = _code(lambda: set_pipeline(stub, info, 5))
    too_wide = n.entry("vip_table", [VIP, b"\x01\x00\x50", b"\x06"], "set_pool", [b"\x01", b"\x00"])
    missing = n.entry("vip_table", [VIP, b"\x51", b"\x06"])
    priority = n.entry("vip_table", [VIP, b"\x52", b"\x06"], "set_pool", [b"\x01", b"\x00"])
    priority.priority = 3
    seen["batch"] = _code(
        lambda: write(
            stub,
            10,
            update(INSERT, vip),
            update(INSERT, vip),
            update(INSERT, too_wide),
            update(DELETE, missing),
            update(INSERT, priority),
        )
    )
    vip_query = p4r.Entity(table_entry=p4r.TableEntry(table_id=vip.table_id))
    seen["read vip"] = [
        (
            [m.exact.value for m in e.table_entry.match],
            [p.value for p in e.table_entry.action.action.params],
        )
        for e in read(stub, vip_query)
    ]
    route = n.entry("ipv4_lpm", [], "drop", [])
    route.match.add(field_id=1).lpm.value = b"\x0a\x00\x00\x01"
    route.match[0].lpm.prefix_len = 24
    seen["lpm bits beyond prefix"] = _code(lambda: write(stub, 10, update(INSERT, route)))
    const = n.entry("version_select", [b"\x00", b"\x00"], "use_version", [b"\x00", b"\x01"])
    seen["const table modify"] = _code(lambda: write(stub, 10, update(MODIFY, const)))
    seen["const table insert"] = _code(lambda: write(stub, 10, update(INSERT, const)))
    seen["const table delete"] = _code(lambda: write(stub, 10, update(DELETE, const)))
    bad: list[p4r.TableEntry] = []
    for _ in range(8):
        e = n.entry("vip_table", [VIP, b"\x53", b"\x06"], "set_pool", [b"\x01", b"\x00"])
        bad.append(e)
    bad[0].match[1].exact.value = b""
    bad[1].match[1].field_id = 9
    bad[2].action.action.params.pop()
    bad[3].action.action.action_id = n.actions["forward"].preamble.id
    bad[4].idle_timeout_ns = 10**9
    bad[5].match.pop()
    bad[6].table_id = 0x02FFFFFF
    bad[7].action.action.params[0].param_id = 7
    seen["bad entries"] = _code(lambda: write(stub, 10, *(update(INSERT, e) for e in bad)))
    unknown = p4r.Entity(table_entry=p4r.TableEntry(table_id=0x02FFFFFF))
    seen["read unknown table"] = _code(lambda: read(stub, unknown))
    default = n.entry(
        "version_config", [], "set_versions", [b"\x01", b"\x05", b"\x00", b"\x00", b"\x00"]
    )
    default.is_default_action = True
    seen["default modify"] = _code(lambda: write(stub, 10, update(MODIFY, default)))
    query = p4r.TableEntry(table_id=default.table_id, is_default_action=True)
    seen["default read"] = [
        [p.value for p in e.table_entry.action.action.params]
        for e in read(stub, p4r.Entity(table_entry=query))
    ]
    seen["default insert"] = _code(lambda: write(stub, 10, update(INSERT, default)))
    seen["default delete"] = _code(lambda: write(stub, 10, update(DELETE, default)))
    conn = n.entry(
        "conn_table", [VIP, VIP, b"\x01", b"\x02", b"\x06"], "rewrite_dst", [VIP, b"\x50"]
    )
    conn.idle_timeout_ns = 5 * 10**9
    seen["conn insert with ttl"] = _code(lambda: write(stub, 10, update(INSERT, conn)))
    conn_query = p4r.Entity(table_entry=p4r.TableEntry(table_id=conn.table_id))
    seen["conn read ttl"] = [e.table_entry.idle_timeout_ns for e in read(stub, conn_query)]
    select_query = p4r.Entity(table_entry=p4r.TableEntry(table_id=const.table_id))
    seen["const entries"] = len(read(stub, select_query))
    seen["write from backup"] = _code(lambda: write(stub, 5, update(DELETE, vip)))
    seen["write without election id"] = _code(lambda: write(stub, None, update(DELETE, vip)))
    rollback = p4r.WriteRequest(device_id=1, atomicity=p4r.WriteRequest.DATAPLANE_ATOMIC)
    rollback.election_id.low = 10
    seen["dataplane atomic"] = _code(lambda: stub.Write(rollback))
    a.close()
    promoted = b.next("arbitration").arbitration
    seen["after primary left"] = (promoted.status.code, promoted.election_id.low)
    seen["write after promotion"] = _code(lambda: write(stub, 5, update(DELETE, vip)))
    b.close()
    channel.close()
    return seen


def test_p4lb_switch_answers_as_bmv2_does(
    compiled: tuple[p4i.P4Info, bytes], bmv2: str, model: str
) -> None:
    info, device_config = compiled
    theirs = conversation(bmv2, info, device_config)
    ours = conversation(model, info, device_config)
    differing = {k: (ours[k], theirs[k]) for k in theirs if ours[k] != theirs[k]}
    assert differing == KNOWN_DIFFERENCES, f"(p4lb-switch, BMv2) differ: {differing}"
