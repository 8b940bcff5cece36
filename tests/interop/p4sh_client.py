"""Runs in the p4runtime-shell 0.0.6 venv (protobuf 3.20, p4runtime 1.4.1), not in ours: a client
nobody here wrote talks to p4lb-switch. Prints one JSON line of what it saw.

usage: python p4sh_client.py HOST:PORT P4INFO_TXT DEVICE_CONFIG
"""

import json
import sys
from typing import Any

import grpc
import p4runtime_sh.shell as sh
from p4.v1 import p4runtime_pb2
from p4runtime_sh.p4runtime import P4RuntimeClient


def main() -> None:
    """Run the conversation and print what was seen."""
    address, p4info_path, config_path = sys.argv[1:4]
    result: dict[str, Any] = {}
    # Pushes the pipeline (VERIFY_AND_COMMIT), then reads the P4Info back from the switch.
    sh.setup(
        device_id=1,
        grpc_addr=address,
        election_id=(0, 10),
        config=sh.FwdPipeConfig(p4info_path, config_path),
        verbose=False,
    )
    result["tables"] = sorted(t.preamble.alias for t in sh.client.get_p4info().tables)

    entry = sh.TableEntry("vip_table")(action="set_pool")
    entry.match["hdr.ipv4.dst_addr"] = "10.0.0.100"
    entry.match["meta.l4_dport"] = "80"
    entry.match["hdr.ipv4.protocol"] = "6"
    entry.action["pool"] = "7"
    entry.action["affinity"] = "1"
    entry.insert()
    read = [e.msg() for e in sh.TableEntry("vip_table").read()]
    result["read_match"] = [[m.exact.value.hex() for m in e.match] for e in read]
    result["read_params"] = [[p.value.hex() for p in e.action.action.params] for e in read]

    # A second client with a lower election id: a backup, whose writes are refused.
    print("second client:", flush=True)
    low = P4RuntimeClient(1, address, (0, 5))
    update = p4runtime_pb2.Update(type=p4runtime_pb2.Update.DELETE)
    update.entity.table_entry.CopyFrom(read[0])
    try:
        low.write_update(update)
        result["backup_write"] = "OK"
    except grpc.RpcError as exc:
        result["backup_write"] = exc.code().name
    low.tear_down()

    entry.delete()
    result["after_delete"] = len(list(sh.TableEntry("vip_table").read()))
    sh.teardown()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
