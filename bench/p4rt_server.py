"""P4Runtime write and read rates of p4lb-switch: conn_table entries over real gRPC on loopback.

`python -m bench p4rt-server`: a SwitchServer with its P4Runtime server on an ephemeral
loopback port (no packet ports); one client arbitrates, pushes the pipeline and inserts N
conn_table entries (with an idle timeout, as the controller learns them) in Write batches of
each given size, then reads the whole table back. Reported per batch size: entries/s written,
and the read time.
"""

from __future__ import annotations

import argparse
import queue
import time
from pathlib import Path

import grpc
from finsy.proto import p4i, p4r, p4r_grpc

from bench.report import emit
from p4model import Switch
from p4model.server import SwitchServer

TARGET_PER_S = 2000.0
"""The learning target (bench learn): batched P4Runtime writes must keep up with it."""


def _conn_update(info: p4i.P4Info, n: int) -> p4r.Update:
    table = next(t for t in info.tables if t.preamble.alias == "conn_table")
    action = next(a for a in info.actions if a.preamble.alias == "rewrite_dst")
    entry = p4r.TableEntry(table_id=table.preamble.id, idle_timeout_ns=120 * 10**9)
    values = [(0x0B000000 + n).to_bytes(4, "big"), b"\x0a\x00\x00\x64"]
    values += [(1024 + n % 60000).to_bytes(2, "big"), b"\x50", b"\x06"]
    for field, value in zip(table.match_fields, values, strict=True):
        entry.match.add(field_id=field.id).exact.value = value
    entry.action.action.action_id = action.preamble.id
    for param, value in zip(action.params, [b"\x0a\x00\x02\x02", b"\x1f\x90"], strict=True):
        entry.action.action.params.add(param_id=param.id, value=value)
    return p4r.Update(type=p4r.Update.INSERT, entity=p4r.Entity(table_entry=entry))


def measure(entries: int, batch: int) -> dict[str, object]:
    """Write `entries` conn_table entries in batches of `batch`, read them back; one row."""
    requests: queue.SimpleQueue[p4r.StreamMessageRequest | None] = queue.SimpleQueue()
    server = SwitchServer(Switch(), [], "127.0.0.1:0")
    with server.running(), grpc.insecure_channel(server.p4runtime_address) as channel:
        info = server.p4runtime.device.own_p4info
        stub = p4r_grpc.P4RuntimeStub(channel)
        stream = stub.StreamChannel(iter(requests.get, None))
        hello = p4r.StreamMessageRequest()
        hello.arbitration.device_id = 1
        hello.arbitration.election_id.low = 1
        requests.put(hello)
        next(stream)  # the advisory: primary
        config = p4r.SetForwardingPipelineConfigRequest(device_id=1)
        config.action = p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT
        config.election_id.low = 1
        config.config.p4info.CopyFrom(info)
        stub.SetForwardingPipelineConfig(config)
        updates = [_conn_update(info, n) for n in range(entries)]
        t0 = time.perf_counter()
        for start in range(0, entries, batch):
            write = p4r.WriteRequest(device_id=1, updates=updates[start : start + batch])
            write.election_id.low = 1
            stub.Write(write)
        t1 = time.perf_counter()
        read = p4r.ReadRequest(device_id=1)
        read.entities.add().table_entry.table_id = updates[0].entity.table_entry.table_id
        got = sum(len(r.entities) for r in stub.Read(read))
        t2 = time.perf_counter()
        requests.put(None)
    return {
        "entries": entries,
        "batch": batch,
        "read back": got,
        "writes/s": round(entries / (t1 - t0)),
        "read s": round(t2 - t1, 2),
    }


def main(argv: list[str]) -> int:
    """Print the rates; exit 1 if batched writes fall below the learning target or entries go
    missing."""
    parser = argparse.ArgumentParser(
        prog="python -m bench p4rt-server", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 512])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = [measure(args.entries, batch) for batch in args.batches]
    emit(
        "P4Runtime on p4lb-switch: conn_table writes and a full read (loopback gRPC)",
        rows,
        args.json,
    )
    complete = all(row["read back"] == row["entries"] for row in rows)
    batched = [float(str(row["writes/s"])) for row in rows if int(str(row["batch"])) >= 64]
    return 0 if complete and all(rate >= TARGET_PER_S for rate in batched) else 1
