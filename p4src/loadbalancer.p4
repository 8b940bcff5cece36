/* p4lb data plane (P4_16, v1model): a load-aware L4 load balancer.
 *
 * Parser: Ethernet -> IPv4 -> TCP | UDP. Only IPv4 with version 4, IHL 5 (no options) and no
 * fragmentation (MF clear, offset 0) goes on to TCP/UDP; any other IPv4 packet is routed only,
 * never balanced. The L4 ports are copied into metadata so one path serves TCP and UDP.
 *
 * Ingress, for IPv4 with TTL > 1 (everything else is dropped):
 *   1. conn_table (5-tuple exact) -> rewrite_dst. TCP FIN or RST on a hit raises a teardown digest.
 *   2. vip_table (dst, dport, protocol) -> set_pool(pool, affinity), only on a conn_table miss.
 *      For an affinity VIP the Bloom key and the flow-hash input below take sport 0, so every
 *      connection of one client to that VIP selects the same version and bucket.
 *   2a. affinity_table (src, dst, dport, protocol) -> rewrite_dst, for affinity VIPs only: a hit
 *      raises a new_conn digest with version AFFINITY_VERSION (255) and skips steps 3-5.
 *   3. Version selection for a VIP packet: version_config's default action set_versions gives
 *      the active slot a and each slot's epoch; slot i holds the key when epoch_i != 0 and all
 *      its BLOOM_HASHES cells of bloom_i (bit<32> epoch tags) equal epoch_i. version_select, a
 *      const table keyed by (a, holding mask), picks the oldest holding slot in activation order
 *      a+1, a+2, a+3, a; none -> a, and the key is inserted into bloom_a (its cells := epoch_a).
 *      The control plane never touches the registers: a slot is emptied by giving it a fresh,
 *      never reused epoch, one write of version_config's default action.
 *   4. Flow hash: crc32 over {src, dst, sport (0 for affinity), dport, protocol} (104 bits)
 *      mod 2^HASH_BITS.
 *   5. dip_table (version exact, pool exact, flow_hash lpm) -> rewrite_dst + new_conn digest;
 *      a miss drops.
 *   6. dip_reverse (src, sport, protocol) -> rewrite_src, only for packets that are neither in
 *      conn_table nor to a VIP (a DIP's service port therefore always answers as its VIP).
 *   7. ipv4_lpm -> forward(port, src_mac, dst_mac) with TTL decrement; default drop, so nothing
 *      leaves on port 0 by accident.
 *
 * Bloom hash functions (each bit-packed as BMv2 does, base 0, max BLOOM_BITS):
 *   h0 = crc16 (CRC-16/ARC) over {src, dst, sport, dport, protocol}
 *   h1 = crc32 over {dst, src, dport, sport, protocol}           (endpoints swapped)
 *   h2 = crc16 over {dst, src, dport, sport, protocol}           (only if BLOOM_HASHES == 3)
 *   (sport is 0 for an affinity VIP.) Slot i holds the key when epoch_i != 0 and its cells at
 *   h0..h(n-1) all equal epoch_i: cells of an earlier epoch of the slot never match again.
 *
 * Checksums: forward() updates the IPv4 header checksum incrementally for the TTL decrement
 * (RFC 1624), so headers with options stay correct. When the balancer rewrote an address, the
 * IPv4 checksum is recomputed in full, and so is the TCP or UDP checksum over the pseudo-header
 * and the whole payload (a UDP checksum of 0, "none", stays 0).
 *
 * Digests: one struct and one digest() call (one BMv2 learn list); kind 1 = new_conn,
 * 2 = teardown; the 5-tuple as received, the version (0 for teardown, 255 for an affinity hit)
 * and the DIP address and port. BMv2 samples digest fields at the end of ingress, so they live in metadata that is not
 * changed after digest() is called.
 */
#include <core.p4>
#include <v1model.p4>
#include "settings.p4"

#if BLOOM_HASHES < 2 || BLOOM_HASHES > 3
#error "BLOOM_HASHES must be 2 or 3"
#endif

#define HASH_SPACE (32w1 << HASH_BITS)

const bit<16> ETHERTYPE_IPV4 = 0x0800;
const bit<8> PROTO_TCP = 6;
const bit<8> PROTO_UDP = 17;
const bit<8> TCP_FIN_RST = 0x05;
const bit<8> DIGEST_NEW_CONN = 1;
const bit<8> DIGEST_TEARDOWN = 2;
const bit<8> AFFINITY_VERSION = 255;

header ethernet_t {
    bit<48> dst_addr;
    bit<48> src_addr;
    bit<16> ether_type;
}

header ipv4_t {
    bit<4>  version;
    bit<4>  ihl;
    bit<8>  diffserv;
    bit<16> total_len;
    bit<16> identification;
    bit<1>  reserved_flag;
    bit<1>  dont_fragment;
    bit<1>  more_fragments;
    bit<13> frag_offset;
    bit<8>  ttl;
    bit<8>  protocol;
    bit<16> hdr_checksum;
    bit<32> src_addr;
    bit<32> dst_addr;
}

header tcp_t {
    bit<16> src_port;
    bit<16> dst_port;
    bit<32> seq_no;
    bit<32> ack_no;
    bit<4>  data_offset;
    bit<4>  reserved;
    bit<8>  flags;
    bit<16> window;
    bit<16> checksum;
    bit<16> urgent_ptr;
}

header udp_t {
    bit<16> src_port;
    bit<16> dst_port;
    bit<16> length;
    bit<16> checksum;
}

struct headers_t {
    ethernet_t ethernet;
    ipv4_t     ipv4;
    tcp_t      tcp;
    udp_t      udp;
}

/* The digest sent to the controller (field order is the contract). */
struct digest_t {
    bit<8>  kind;
    bit<32> src_addr;
    bit<32> dst_addr;
    bit<16> src_port;
    bit<16> dst_port;
    bit<8>  protocol;
    bit<8>  version;
    bit<32> dip_addr;
    bit<16> dip_port;
}

struct metadata_t {
    bit<16> l4_sport;        /* as parsed; rewrite_src replaces it */
    bit<16> l4_dport;        /* as parsed; rewrite_dst replaces it */
    bit<16> l4_len;          /* ipv4.total_len - 20, for the TCP pseudo-header */
    bit<1>  rewritten;       /* an address or port was rewritten: recompute checksums */
    bit<1>  dropped;         /* drop() ran: do not route */
    bit<16> pool;
    bit<1>  affinity;        /* the VIP pins clients (set_pool) */
    bit<1>  pinned;          /* affinity_table hit: no version selection */
    bit<16> hash_sport;      /* the sport of the Bloom key and flow hash: 0 for affinity VIPs */
    bit<2>  active;          /* version_config: the active slot */
    bit<32> epoch_0;         /* version_config: each slot's epoch (0 = holds nothing) */
    bit<32> epoch_1;
    bit<32> epoch_2;
    bit<32> epoch_3;
    bit<2>  version;         /* the version slot chosen for this packet */
    bit<1>  bloom_insert;    /* no slot matched: insert into the active slot */
    bit<4>  bloom_match;     /* bit i set: slot i's Bloom filter holds the 5-tuple */
    bit<32> bloom_idx0;
    bit<32> bloom_idx1;
    bit<32> bloom_idx2;
    bit<HASH_BITS> flow_hash;
    digest_t dg;
}

parser LbParser(packet_in packet, out headers_t hdr, inout metadata_t meta,
                inout standard_metadata_t standard_metadata) {
    state start {
        packet.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETHERTYPE_IPV4: parse_ipv4;
            default: accept;
        }
    }

    state parse_ipv4 {
        packet.extract(hdr.ipv4);
        transition select(hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.more_fragments,
                          hdr.ipv4.frag_offset) {
            (4w4, 4w5, 1w0, 13w0): parse_l4;
            default: accept;
        }
    }

    state parse_l4 {
        transition select(hdr.ipv4.protocol) {
            PROTO_TCP: parse_tcp;
            PROTO_UDP: parse_udp;
            default: accept;
        }
    }

    state parse_tcp {
        packet.extract(hdr.tcp);
        meta.l4_sport = hdr.tcp.src_port;
        meta.l4_dport = hdr.tcp.dst_port;
        transition accept;
    }

    state parse_udp {
        packet.extract(hdr.udp);
        meta.l4_sport = hdr.udp.src_port;
        meta.l4_dport = hdr.udp.dst_port;
        transition accept;
    }
}

control LbVerifyChecksum(inout headers_t hdr, inout metadata_t meta) {
    /* Packets with bad checksums are forwarded as they are (BMv2 would not drop them anyway). */
    apply { }
}

control LbIngress(inout headers_t hdr, inout metadata_t meta,
                  inout standard_metadata_t standard_metadata) {
    register<bit<32>>(BLOOM_BITS) bloom_0;
    register<bit<32>>(BLOOM_BITS) bloom_1;
    register<bit<32>>(BLOOM_BITS) bloom_2;
    register<bit<32>>(BLOOM_BITS) bloom_3;

    action drop() {
        mark_to_drop(standard_metadata);
        meta.dropped = 1;
    }

    action rewrite_dst(bit<32> ip, bit<16> port) {
        hdr.ipv4.dst_addr = ip;
        meta.l4_dport = port;
        meta.rewritten = 1;
    }

    action rewrite_src(bit<32> ip, bit<16> port) {
        hdr.ipv4.src_addr = ip;
        meta.l4_sport = port;
        meta.rewritten = 1;
    }

    action set_pool(bit<16> pool, bit<1> affinity) {
        meta.pool = pool;
        meta.affinity = affinity;
    }

    action set_versions(bit<2> active, bit<32> epoch_0, bit<32> epoch_1, bit<32> epoch_2,
                        bit<32> epoch_3) {
        meta.active = active;
        meta.epoch_0 = epoch_0;
        meta.epoch_1 = epoch_1;
        meta.epoch_2 = epoch_2;
        meta.epoch_3 = epoch_3;
    }

    action use_version(bit<2> version, bit<1> insert) {
        meta.version = version;
        meta.bloom_insert = insert;
    }

    action forward(bit<9> port, bit<48> src_mac, bit<48> dst_mac) {
        standard_metadata.egress_spec = port;
        hdr.ethernet.src_addr = src_mac;
        hdr.ethernet.dst_addr = dst_mac;
        hdr.ipv4.ttl = hdr.ipv4.ttl - 1;
        /* RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'): the TTL/protocol word m drops by 0x0100,
         * so ~m + m' = 0xFEFF; one end-around carry fold suffices (max 0x1FEFE). */
        bit<32> sum = (bit<32>)(~hdr.ipv4.hdr_checksum) + 32w0xFEFF;
        sum = (sum & 32w0xFFFF) + (sum >> 16);
        hdr.ipv4.hdr_checksum = ~((bit<16>)sum);
    }

    table conn_table {
        key = {
            hdr.ipv4.src_addr: exact;
            hdr.ipv4.dst_addr: exact;
            meta.l4_sport: exact;
            meta.l4_dport: exact;
            hdr.ipv4.protocol: exact;
        }
        actions = { rewrite_dst; NoAction; }
        default_action = NoAction();
        size = CONN_TABLE_SIZE;
        support_timeout = true;
    }

    table vip_table {
        key = {
            hdr.ipv4.dst_addr: exact;
            meta.l4_dport: exact;
            hdr.ipv4.protocol: exact;
        }
        actions = { set_pool; NoAction; }
        default_action = NoAction();
        size = VIP_TABLE_SIZE;
    }

    table affinity_table {
        key = {
            hdr.ipv4.src_addr: exact;
            hdr.ipv4.dst_addr: exact;
            meta.l4_dport: exact;
            hdr.ipv4.protocol: exact;
        }
        actions = { rewrite_dst; NoAction; }
        default_action = NoAction();
        size = AFFINITY_TABLE_SIZE;
    }

    /* Keyless: the controller rewrites the default action (never const) in one write. */
    table version_config {
        actions = { set_versions; }
        default_action = set_versions(2w0, 32w0, 32w0, 32w0, 32w0);
    }

    /* (active slot, match mask) -> oldest matching slot in activation order a+1, a+2, a+3, a;
     * no match -> a with insertion. Generated from that rule; p4model checks it against this. */
    table version_select {
        key = {
            meta.active: exact;
            meta.bloom_match: exact;
        }
        actions = { use_version; NoAction; }
        default_action = NoAction();
        const entries = {
            (2w0, 4w0b0000) : use_version(2w0, 1w1);
            (2w0, 4w0b0001) : use_version(2w0, 1w0);
            (2w0, 4w0b0010) : use_version(2w1, 1w0);
            (2w0, 4w0b0011) : use_version(2w1, 1w0);
            (2w0, 4w0b0100) : use_version(2w2, 1w0);
            (2w0, 4w0b0101) : use_version(2w2, 1w0);
            (2w0, 4w0b0110) : use_version(2w1, 1w0);
            (2w0, 4w0b0111) : use_version(2w1, 1w0);
            (2w0, 4w0b1000) : use_version(2w3, 1w0);
            (2w0, 4w0b1001) : use_version(2w3, 1w0);
            (2w0, 4w0b1010) : use_version(2w1, 1w0);
            (2w0, 4w0b1011) : use_version(2w1, 1w0);
            (2w0, 4w0b1100) : use_version(2w2, 1w0);
            (2w0, 4w0b1101) : use_version(2w2, 1w0);
            (2w0, 4w0b1110) : use_version(2w1, 1w0);
            (2w0, 4w0b1111) : use_version(2w1, 1w0);
            (2w1, 4w0b0000) : use_version(2w1, 1w1);
            (2w1, 4w0b0001) : use_version(2w0, 1w0);
            (2w1, 4w0b0010) : use_version(2w1, 1w0);
            (2w1, 4w0b0011) : use_version(2w0, 1w0);
            (2w1, 4w0b0100) : use_version(2w2, 1w0);
            (2w1, 4w0b0101) : use_version(2w2, 1w0);
            (2w1, 4w0b0110) : use_version(2w2, 1w0);
            (2w1, 4w0b0111) : use_version(2w2, 1w0);
            (2w1, 4w0b1000) : use_version(2w3, 1w0);
            (2w1, 4w0b1001) : use_version(2w3, 1w0);
            (2w1, 4w0b1010) : use_version(2w3, 1w0);
            (2w1, 4w0b1011) : use_version(2w3, 1w0);
            (2w1, 4w0b1100) : use_version(2w2, 1w0);
            (2w1, 4w0b1101) : use_version(2w2, 1w0);
            (2w1, 4w0b1110) : use_version(2w2, 1w0);
            (2w1, 4w0b1111) : use_version(2w2, 1w0);
            (2w2, 4w0b0000) : use_version(2w2, 1w1);
            (2w2, 4w0b0001) : use_version(2w0, 1w0);
            (2w2, 4w0b0010) : use_version(2w1, 1w0);
            (2w2, 4w0b0011) : use_version(2w0, 1w0);
            (2w2, 4w0b0100) : use_version(2w2, 1w0);
            (2w2, 4w0b0101) : use_version(2w0, 1w0);
            (2w2, 4w0b0110) : use_version(2w1, 1w0);
            (2w2, 4w0b0111) : use_version(2w0, 1w0);
            (2w2, 4w0b1000) : use_version(2w3, 1w0);
            (2w2, 4w0b1001) : use_version(2w3, 1w0);
            (2w2, 4w0b1010) : use_version(2w3, 1w0);
            (2w2, 4w0b1011) : use_version(2w3, 1w0);
            (2w2, 4w0b1100) : use_version(2w3, 1w0);
            (2w2, 4w0b1101) : use_version(2w3, 1w0);
            (2w2, 4w0b1110) : use_version(2w3, 1w0);
            (2w2, 4w0b1111) : use_version(2w3, 1w0);
            (2w3, 4w0b0000) : use_version(2w3, 1w1);
            (2w3, 4w0b0001) : use_version(2w0, 1w0);
            (2w3, 4w0b0010) : use_version(2w1, 1w0);
            (2w3, 4w0b0011) : use_version(2w0, 1w0);
            (2w3, 4w0b0100) : use_version(2w2, 1w0);
            (2w3, 4w0b0101) : use_version(2w0, 1w0);
            (2w3, 4w0b0110) : use_version(2w1, 1w0);
            (2w3, 4w0b0111) : use_version(2w0, 1w0);
            (2w3, 4w0b1000) : use_version(2w3, 1w0);
            (2w3, 4w0b1001) : use_version(2w0, 1w0);
            (2w3, 4w0b1010) : use_version(2w1, 1w0);
            (2w3, 4w0b1011) : use_version(2w0, 1w0);
            (2w3, 4w0b1100) : use_version(2w2, 1w0);
            (2w3, 4w0b1101) : use_version(2w0, 1w0);
            (2w3, 4w0b1110) : use_version(2w1, 1w0);
            (2w3, 4w0b1111) : use_version(2w0, 1w0);
        }
    }

    table dip_table {
        key = {
            meta.version: exact;
            meta.pool: exact;
            meta.flow_hash: lpm;
        }
        actions = { rewrite_dst; drop; }
        default_action = drop();
        size = DIP_TABLE_SIZE;
    }

    table dip_reverse {
        key = {
            hdr.ipv4.src_addr: exact;
            meta.l4_sport: exact;
            hdr.ipv4.protocol: exact;
        }
        actions = { rewrite_src; NoAction; }
        default_action = NoAction();
        size = DIP_REVERSE_SIZE;
    }

    table ipv4_lpm {
        key = {
            hdr.ipv4.dst_addr: lpm;
        }
        actions = { forward; drop; }
        default_action = drop();
        size = ROUTE_TABLE_SIZE;
    }

    /* Sets meta.bloom_match from the four Bloom filters at the key's indices: bit i is set when
     * epoch_i != 0 and every cell equals epoch_i. */
    action bloom_lookup() {
        hash(meta.bloom_idx0, HashAlgorithm.crc16, 32w0,
             { hdr.ipv4.src_addr, hdr.ipv4.dst_addr, meta.hash_sport, meta.l4_dport,
               hdr.ipv4.protocol }, (bit<32>)BLOOM_BITS);
        hash(meta.bloom_idx1, HashAlgorithm.crc32, 32w0,
             { hdr.ipv4.dst_addr, hdr.ipv4.src_addr, meta.l4_dport, meta.hash_sport,
               hdr.ipv4.protocol }, (bit<32>)BLOOM_BITS);
        bit<32> c00; bit<32> c01; bit<32> c10; bit<32> c11;
        bit<32> c20; bit<32> c21; bit<32> c30; bit<32> c31;
        bloom_0.read(c00, meta.bloom_idx0);
        bloom_0.read(c01, meta.bloom_idx1);
        bloom_1.read(c10, meta.bloom_idx0);
        bloom_1.read(c11, meta.bloom_idx1);
        bloom_2.read(c20, meta.bloom_idx0);
        bloom_2.read(c21, meta.bloom_idx1);
        bloom_3.read(c30, meta.bloom_idx0);
        bloom_3.read(c31, meta.bloom_idx1);
        /* With two hash functions the third cell stands in as the epoch itself. */
        bit<32> c02 = meta.epoch_0; bit<32> c12 = meta.epoch_1;
        bit<32> c22 = meta.epoch_2; bit<32> c32 = meta.epoch_3;
#if BLOOM_HASHES == 3
        hash(meta.bloom_idx2, HashAlgorithm.crc16, 32w0,
             { hdr.ipv4.dst_addr, hdr.ipv4.src_addr, meta.l4_dport, meta.hash_sport,
               hdr.ipv4.protocol }, (bit<32>)BLOOM_BITS);
        bloom_0.read(c02, meta.bloom_idx2);
        bloom_1.read(c12, meta.bloom_idx2);
        bloom_2.read(c22, meta.bloom_idx2);
        bloom_3.read(c32, meta.bloom_idx2);
#endif
        meta.bloom_match =
            (bit<1>)(meta.epoch_3 != 0 && c30 == meta.epoch_3 && c31 == meta.epoch_3 &&
                     c32 == meta.epoch_3) ++
            (bit<1>)(meta.epoch_2 != 0 && c20 == meta.epoch_2 && c21 == meta.epoch_2 &&
                     c22 == meta.epoch_2) ++
            (bit<1>)(meta.epoch_1 != 0 && c10 == meta.epoch_1 && c11 == meta.epoch_1 &&
                     c12 == meta.epoch_1) ++
            (bit<1>)(meta.epoch_0 != 0 && c00 == meta.epoch_0 && c01 == meta.epoch_0 &&
                     c02 == meta.epoch_0);
    }

    /* Tags the active slot's cells for the key with its epoch (only when no slot held it). */
    action bloom_insert_0() {
        bloom_0.write(meta.bloom_idx0, meta.epoch_0);
        bloom_0.write(meta.bloom_idx1, meta.epoch_0);
#if BLOOM_HASHES == 3
        bloom_0.write(meta.bloom_idx2, meta.epoch_0);
#endif
    }

    action bloom_insert_1() {
        bloom_1.write(meta.bloom_idx0, meta.epoch_1);
        bloom_1.write(meta.bloom_idx1, meta.epoch_1);
#if BLOOM_HASHES == 3
        bloom_1.write(meta.bloom_idx2, meta.epoch_1);
#endif
    }

    action bloom_insert_2() {
        bloom_2.write(meta.bloom_idx0, meta.epoch_2);
        bloom_2.write(meta.bloom_idx1, meta.epoch_2);
#if BLOOM_HASHES == 3
        bloom_2.write(meta.bloom_idx2, meta.epoch_2);
#endif
    }

    action bloom_insert_3() {
        bloom_3.write(meta.bloom_idx0, meta.epoch_3);
        bloom_3.write(meta.bloom_idx1, meta.epoch_3);
#if BLOOM_HASHES == 3
        bloom_3.write(meta.bloom_idx2, meta.epoch_3);
#endif
    }

    /* The 5-tuple as received, for either digest. */
    action digest_tuple() {
        meta.dg.src_addr = hdr.ipv4.src_addr;
        meta.dg.dst_addr = hdr.ipv4.dst_addr;
        meta.dg.src_port = meta.l4_sport;
        meta.dg.dst_port = meta.l4_dport;
        meta.dg.protocol = hdr.ipv4.protocol;
    }

    apply {
        if (!hdr.ipv4.isValid()) {
            drop();
        } else if (hdr.ipv4.ttl <= 1) {
            drop();
        } else {
            if (hdr.tcp.isValid() || hdr.udp.isValid()) {
                meta.l4_len = hdr.ipv4.total_len - 16w20;
                digest_tuple();
                if (conn_table.apply().hit) {
                    if (hdr.tcp.isValid() && (hdr.tcp.flags & TCP_FIN_RST) != 0) {
                        meta.dg.kind = DIGEST_TEARDOWN;
                        meta.dg.version = 0;
                        meta.dg.dip_addr = hdr.ipv4.dst_addr;
                        meta.dg.dip_port = meta.l4_dport;
                    }
                } else if (vip_table.apply().hit) {
                    meta.hash_sport = meta.l4_sport;
                    if (meta.affinity == 1) {
                        meta.hash_sport = 0;
                        if (affinity_table.apply().hit) {
                            meta.pinned = 1;
                            meta.dg.kind = DIGEST_NEW_CONN;
                            meta.dg.version = AFFINITY_VERSION;
                            meta.dg.dip_addr = hdr.ipv4.dst_addr;
                            meta.dg.dip_port = meta.l4_dport;
                        }
                    }
                    if (meta.pinned == 0) {
                        version_config.apply();
                        bloom_lookup();
                        version_select.apply();
                        if (meta.bloom_insert == 1) {
                            if (meta.version == 0) {
                                bloom_insert_0();
                            } else if (meta.version == 1) {
                                bloom_insert_1();
                            } else if (meta.version == 2) {
                                bloom_insert_2();
                            } else {
                                bloom_insert_3();
                            }
                        }
                        hash(meta.flow_hash, HashAlgorithm.crc32, (bit<HASH_BITS>)0,
                             { hdr.ipv4.src_addr, hdr.ipv4.dst_addr, meta.hash_sport,
                               meta.l4_dport, hdr.ipv4.protocol }, HASH_SPACE);
                        if (dip_table.apply().hit) {
                            meta.dg.kind = DIGEST_NEW_CONN;
                            meta.dg.version = (bit<8>)meta.version;
                            meta.dg.dip_addr = hdr.ipv4.dst_addr;
                            meta.dg.dip_port = meta.l4_dport;
                        }
                    }
                } else {
                    dip_reverse.apply();
                }
                if (meta.rewritten == 1) {
                    if (hdr.tcp.isValid()) {
                        hdr.tcp.src_port = meta.l4_sport;
                        hdr.tcp.dst_port = meta.l4_dport;
                    } else {
                        hdr.udp.src_port = meta.l4_sport;
                        hdr.udp.dst_port = meta.l4_dport;
                    }
                }
            }
            /* One digest() call, so BMv2 has a single learn list for the controller. */
            if (meta.dg.kind != 0) {
                digest<digest_t>(1, meta.dg);
            }
            if (meta.dropped == 0) {
                ipv4_lpm.apply();
            }
        }
    }
}

control LbEgress(inout headers_t hdr, inout metadata_t meta,
                 inout standard_metadata_t standard_metadata) {
    apply { }
}

control LbComputeChecksum(inout headers_t hdr, inout metadata_t meta) {
    apply {
        update_checksum(
            hdr.ipv4.isValid() && meta.rewritten == 1,
            { hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.diffserv, hdr.ipv4.total_len,
              hdr.ipv4.identification, hdr.ipv4.reserved_flag, hdr.ipv4.dont_fragment,
              hdr.ipv4.more_fragments, hdr.ipv4.frag_offset, hdr.ipv4.ttl, hdr.ipv4.protocol,
              hdr.ipv4.src_addr, hdr.ipv4.dst_addr },
            hdr.ipv4.hdr_checksum,
            HashAlgorithm.csum16);
        update_checksum_with_payload(
            hdr.tcp.isValid() && meta.rewritten == 1,
            { hdr.ipv4.src_addr, hdr.ipv4.dst_addr, 8w0, hdr.ipv4.protocol, meta.l4_len,
              hdr.tcp.src_port, hdr.tcp.dst_port, hdr.tcp.seq_no, hdr.tcp.ack_no,
              hdr.tcp.data_offset, hdr.tcp.reserved, hdr.tcp.flags, hdr.tcp.window,
              hdr.tcp.urgent_ptr },
            hdr.tcp.checksum,
            HashAlgorithm.csum16);
        update_checksum_with_payload(
            hdr.udp.isValid() && meta.rewritten == 1 && hdr.udp.checksum != 0,
            { hdr.ipv4.src_addr, hdr.ipv4.dst_addr, 8w0, hdr.ipv4.protocol, hdr.udp.length,
              hdr.udp.src_port, hdr.udp.dst_port, hdr.udp.length },
            hdr.udp.checksum,
            HashAlgorithm.csum16);
    }
}

control LbDeparser(packet_out packet, in headers_t hdr) {
    apply {
        packet.emit(hdr.ethernet);
        packet.emit(hdr.ipv4);
        packet.emit(hdr.tcp);
        packet.emit(hdr.udp);
    }
}

V1Switch(LbParser(), LbVerifyChecksum(), LbIngress(), LbEgress(), LbComputeChecksum(),
         LbDeparser()) main;
