"""Topologies and the demo: the p4-utils/BMv2 and Mininet networks, their addressing, the host
apps they run, and `p4lb-demo` (real network as root, else simulated in one process)."""
