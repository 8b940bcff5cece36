/* p4lb constants: the single source of truth, read by the P4 program and by Python
 * (p4model.settings parses the `#define NAME value` lines below). */
#ifndef P4LB_SETTINGS_P4
#define P4LB_SETTINGS_P4

#define CONN_TABLE_SIZE 65536
#define VIP_TABLE_SIZE 256
#define DIP_TABLE_SIZE 65536
#define DIP_REVERSE_SIZE 4096
#define ROUTE_TABLE_SIZE 1024
#define AFFINITY_TABLE_SIZE 16384
#define HASH_BITS 16
#define VERSION_SLOTS 4
#define BLOOM_BITS 65536
#define BLOOM_HASHES 2

#endif
