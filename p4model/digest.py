"""Digests the data plane sends to the controller (the v1model `digest()` of the P4 program)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DigestKind = Literal["new_conn", "teardown"]

#: `digest_t.kind` values in the P4 program.
KIND_CODES: dict[int, DigestKind] = {1: "new_conn", 2: "teardown"}


@dataclass(frozen=True)
class Digest:
    """One digest sample: the 5-tuple as received, the version slot and the chosen DIP."""

    kind: DigestKind
    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    protocol: int
    version: int
    dip_ip: str
    dip_port: int
