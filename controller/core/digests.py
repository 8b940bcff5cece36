"""Checking digests from the data plane before the core acts on them (pure)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from p4src.contract import AFFINITY_VERSION, DIGEST_KINDS, Digest

PROTOCOL_NUMBERS = frozenset({6, 17})
VipKey = tuple[str, int, int]
"""(VIP ip, port, protocol number)."""


def digest_problem(
    digest: Digest, slots: int, vips: Mapping[VipKey, frozenset[str]]
) -> tuple[str, str] | None:
    """Why a digest cannot be taken as is: ("malformed" | "unknown_vip" | "unknown_dip", detail).

    `vips` maps each configured VIP to its pool's DIP names. A digest for a DIP outside the pool
    is still worth pinning (the data plane already sent the connection there); the others are
    dropped by the caller.
    """
    if digest.kind not in DIGEST_KINDS:
        return "malformed", f"unknown digest kind {digest.kind!r}"
    for name, port in (
        ("src_port", digest.src_port),
        ("dst_port", digest.dst_port),
        ("dip_port", digest.dip_port),
    ):
        if not isinstance(port, int) or not 0 <= port <= 0xFFFF:
            return "malformed", f"{name} {port!r} is not a port number"
    if digest.protocol not in PROTOCOL_NUMBERS:
        return "malformed", f"protocol {digest.protocol!r} is neither TCP nor UDP"
    version = digest.version
    if not isinstance(version, int) or not (0 <= version < slots or version == AFFINITY_VERSION):
        return "malformed", f"version {version!r} is neither a slot in [0, {slots}) nor affinity"
    for name, ip in (
        ("src_ip", digest.src_ip),
        ("dst_ip", digest.dst_ip),
        ("dip_ip", digest.dip_ip),
    ):
        try:
            ipaddress.IPv4Address(ip if isinstance(ip, str) else "")
        except ValueError:
            return "malformed", f"{name} {ip!r} is not an IPv4 address"
    if digest.kind != "new_conn":
        return None
    members = vips.get((digest.dst_ip, digest.dst_port, digest.protocol))
    if members is None:
        return "unknown_vip", f"{digest.dst_ip}:{digest.dst_port}/{digest.protocol} is no VIP"
    dip = f"{digest.dip_ip}:{digest.dip_port}"
    if dip not in members:
        return "unknown_dip", f"{dip} is not in the pool of {digest.dst_ip}:{digest.dst_port}"
    return None
