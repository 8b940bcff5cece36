"""A small P4Info in p4c's shape for our program (names, aliases, widths; made-up IDs)."""

from __future__ import annotations

from finsy.proto import p4i
from google.protobuf import text_format

from controller.switch.p4info_index import P4InfoIndex

SAMPLE = """
tables {
  preamble { id: 100 name: "LbIngress.vip_table" alias: "vip_table" }
  match_fields { id: 1 name: "hdr.ipv4.dst_addr" bitwidth: 32 match_type: EXACT }
  match_fields { id: 2 name: "meta.l4_dport" bitwidth: 16 match_type: EXACT }
  match_fields { id: 3 name: "hdr.ipv4.protocol" bitwidth: 8 match_type: EXACT }
  action_refs { id: 200 }
  action_refs { id: 201 }
  size: 256
}
tables {
  preamble { id: 101 name: "LbIngress.dip_table" alias: "dip_table" }
  match_fields { id: 1 name: "meta.version" bitwidth: 2 match_type: EXACT }
  match_fields { id: 2 name: "meta.pool" bitwidth: 16 match_type: EXACT }
  match_fields { id: 3 name: "meta.flow_hash" bitwidth: 16 match_type: LPM }
  action_refs { id: 202 }
  action_refs { id: 203 }
  size: 65536
}
tables {
  preamble { id: 102 name: "LbIngress.conn_table" alias: "conn_table" }
  match_fields { id: 1 name: "hdr.ipv4.src_addr" bitwidth: 32 match_type: EXACT }
  match_fields { id: 2 name: "hdr.ipv4.dst_addr" bitwidth: 32 match_type: EXACT }
  match_fields { id: 3 name: "meta.l4_sport" bitwidth: 16 match_type: EXACT }
  match_fields { id: 4 name: "meta.l4_dport" bitwidth: 16 match_type: EXACT }
  match_fields { id: 5 name: "hdr.ipv4.protocol" bitwidth: 8 match_type: EXACT }
  action_refs { id: 202 }
  action_refs { id: 201 }
  size: 65536
  idle_timeout_behavior: NOTIFY_CONTROL
}
tables {
  preamble { id: 103 name: "LbIngress.version_config" alias: "version_config" }
  action_refs { id: 204 }
  size: 1024
}
tables {
  preamble { id: 104 name: "LbIngress.ipv4_lpm" alias: "ipv4_lpm" }
  match_fields { id: 1 name: "hdr.ipv4.dst_addr" bitwidth: 32 match_type: LPM }
  action_refs { id: 205 }
  action_refs { id: 203 }
  size: 1024
}
actions {
  preamble { id: 200 name: "LbIngress.set_pool" alias: "set_pool" }
  params { id: 1 name: "pool" bitwidth: 16 }
  params { id: 2 name: "affinity" bitwidth: 1 }
}
actions { preamble { id: 201 name: "NoAction" alias: "NoAction" } }
actions {
  preamble { id: 202 name: "LbIngress.rewrite_dst" alias: "rewrite_dst" }
  params { id: 1 name: "ip" bitwidth: 32 }
  params { id: 2 name: "port" bitwidth: 16 }
}
actions { preamble { id: 203 name: "LbIngress.drop" alias: "drop" } }
actions {
  preamble { id: 204 name: "LbIngress.set_versions" alias: "set_versions" }
  params { id: 1 name: "active" bitwidth: 2 }
  params { id: 2 name: "epoch_0" bitwidth: 32 }
  params { id: 3 name: "epoch_1" bitwidth: 32 }
  params { id: 4 name: "epoch_2" bitwidth: 32 }
  params { id: 5 name: "epoch_3" bitwidth: 32 }
}
actions {
  preamble { id: 205 name: "LbIngress.forward" alias: "forward" }
  params { id: 1 name: "port" bitwidth: 9 }
  params { id: 2 name: "src_mac" bitwidth: 48 }
  params { id: 3 name: "dst_mac" bitwidth: 48 }
}
digests {
  preamble { id: 300 name: "digest_t" alias: "digest_t" }
  type_spec { struct { name: "digest_t" } }
}
type_info {
  structs {
    key: "digest_t"
    value {
      members { name: "kind" type_spec { bitstring { bit { bitwidth: 8 } } } }
      members { name: "src" type_spec { bitstring { bit { bitwidth: 32 } } } }
      members { name: "dst" type_spec { bitstring { bit { bitwidth: 32 } } } }
      members { name: "sport" type_spec { bitstring { bit { bitwidth: 16 } } } }
      members { name: "dport" type_spec { bitstring { bit { bitwidth: 16 } } } }
      members { name: "protocol" type_spec { bitstring { bit { bitwidth: 8 } } } }
      members { name: "version" type_spec { bitstring { bit { bitwidth: 8 } } } }
      members { name: "dip" type_spec { bitstring { bit { bitwidth: 32 } } } }
      members { name: "dip_port" type_spec { bitstring { bit { bitwidth: 16 } } } }
    }
  }
}
"""


def sample_info() -> p4i.P4Info:
    """The sample as a message."""
    info = p4i.P4Info()
    text_format.Parse(SAMPLE, info)
    return info


def sample_index() -> P4InfoIndex:
    """An index over the sample."""
    return P4InfoIndex(sample_info())
