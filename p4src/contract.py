"""The data-plane contract of p4src/loadbalancer.p4, as Python values (pure; no I/O but the
one read of settings.p4).

The P4 program is the source of truth; this module restates what the model (`p4model`), the
controller and the tests need of it: table, action and register names, the digest layout, and
the constants of `settings.p4` (read from that file, never retyped). A test holds the two
together (tests/unit/test_contract.py), and so does the BMv2 tier, which compiles the program.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Final, Literal

#: The repository's settings file, beside this module.
SETTINGS_PATH: Final = Path(__file__).resolve().parent / "settings.p4"
#: The program itself.
PROGRAM_PATH: Final = Path(__file__).resolve().parent / "loadbalancer.p4"

# Tables (DESIGN §2); match keys are given in contract order by the users of each table.
CONN_TABLE: Final = "conn_table"
VIP_TABLE: Final = "vip_table"
DIP_TABLE: Final = "dip_table"
DIP_REVERSE: Final = "dip_reverse"
ROUTE_TABLE: Final = "ipv4_lpm"
AFFINITY_TABLE: Final = "affinity_table"
VERSION_CONFIG: Final = "version_config"
"""Keyless; its default action `set_versions` holds the active slot and each slot's epoch."""

# Actions.
REWRITE_DST: Final = "rewrite_dst"
REWRITE_SRC: Final = "rewrite_src"
SET_POOL: Final = "set_pool"
SET_VERSIONS: Final = "set_versions"
FORWARD: Final = "forward"
DROP: Final = "drop"

#: Width of an epoch (a `set_versions` parameter and a Bloom cell); 0 means "holds nothing".
EPOCH_BITS: Final = 32
#: `digest_t.version` of a new connection that hit affinity_table (no version slot involved).
AFFINITY_VERSION: Final = 255
#: The `affinity` parameter of `set_pool`: 1 pins each client (source address) to one DIP.
AFFINITY_OFF: Final = 0
AFFINITY_CLIENT_IP: Final = 1


def bloom_register(slot: int) -> str:
    """The Bloom filter register of a version slot (bit<32> epoch tags; data plane only)."""
    return f"bloom_{slot}"


class ContractError(ValueError):
    """settings.p4 (or another restatement of the program) is malformed."""


@dataclass(frozen=True)
class Settings:
    """Table sizes and widths of the program (`#define NAME value` lines of settings.p4)."""

    conn_table_size: int
    vip_table_size: int
    dip_table_size: int
    dip_reverse_size: int
    route_table_size: int
    affinity_table_size: int
    hash_bits: int
    version_slots: int
    bloom_bits: int
    bloom_hashes: int


_DEFINE = re.compile(r"^\s*#define\s+([A-Z_][A-Z0-9_]*)\s+(\S+)\s*$")


def parse_settings(text: str) -> Settings:
    """Settings from the text of a settings.p4 file (unknown defines are ignored)."""
    values: dict[str, int] = {}
    wanted = {f.name for f in fields(Settings)}
    for line in text.splitlines():
        match = _DEFINE.match(line)
        if match is None or match.group(1).lower() not in wanted:
            continue
        try:
            values[match.group(1).lower()] = int(match.group(2), 0)
        except ValueError:
            raise ContractError(
                f"settings: {match.group(1)} is not an integer: {match.group(2)!r}"
            ) from None
    missing = wanted - values.keys()
    if missing:
        raise ContractError(f"settings: missing #define for {sorted(n.upper() for n in missing)!r}")
    settings = Settings(**values)
    _check(settings)
    return settings


def load_settings(path: Path | str | None = None) -> Settings:
    """Settings from `path`; the repository's settings.p4 (read once) when None."""
    if path is None:
        return _repository_settings()
    return parse_settings(Path(path).read_text(encoding="utf-8"))


@functools.cache
def _repository_settings() -> Settings:
    return parse_settings(SETTINGS_PATH.read_text(encoding="utf-8"))


def _check(settings: Settings) -> None:
    if settings.version_slots != 4:
        raise ContractError(f"settings: VERSION_SLOTS must be 4, got {settings.version_slots!r}")
    if settings.bloom_hashes not in (2, 3):
        raise ContractError(f"settings: BLOOM_HASHES must be 2 or 3, got {settings.bloom_hashes!r}")
    if not 1 <= settings.hash_bits <= 31:
        raise ContractError(f"settings: HASH_BITS must be in 1..31, got {settings.hash_bits!r}")
    for f in fields(Settings):
        if getattr(settings, f.name) <= 0:
            raise ContractError(f"settings: {f.name.upper()} must be positive")


# -- digests

DigestKind = Literal["new_conn", "teardown"]
#: `digest_t.kind` codes of the program.
KIND_CODES: Final[dict[int, DigestKind]] = {1: "new_conn", 2: "teardown"}
DIGEST_KINDS: Final[tuple[DigestKind, ...]] = ("new_conn", "teardown")
#: The digest struct's fields in order, with their bit widths. `version` is bit<2> in the
#: program's metadata but travels in an 8-bit field (AFFINITY_VERSION for an affinity hit).
DIGEST_FIELDS: Final[tuple[tuple[str, int], ...]] = (
    ("kind", 8),
    ("src_ip", 32),
    ("dst_ip", 32),
    ("src_port", 16),
    ("dst_port", 16),
    ("protocol", 8),
    ("version", 8),
    ("dip_ip", 32),
    ("dip_port", 16),
)


@dataclass(frozen=True, slots=True)
class Digest:
    """One digest sample: the 5-tuple as received, the version slot (or AFFINITY_VERSION) and
    the chosen DIP."""

    kind: DigestKind
    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    protocol: int
    version: int
    dip_ip: str
    dip_port: int

    # The model raises one Digest per new connection. dataclass keeps an __init__ the class
    # defines; this one is the generated one's, storing through the slots' descriptors rather
    # than calling object.__setattr__ by name per field as a frozen class's does (40% cheaper).
    def __init__(  # noqa: PLR0917 - positional in field order, like the generated __init__
        self,
        kind: DigestKind,
        src_ip: str,
        dst_ip: str,
        src_port: int,
        dst_port: int,
        protocol: int,
        version: int,
        dip_ip: str,
        dip_port: int,
    ) -> None:
        """A sample with these fields."""
        store = _DIGEST_SLOT_SETTERS
        store[0](self, kind)
        store[1](self, src_ip)
        store[2](self, dst_ip)
        store[3](self, src_port)
        store[4](self, dst_port)
        store[5](self, protocol)
        store[6](self, version)
        store[7](self, dip_ip)
        store[8](self, dip_port)


_DIGEST_SLOT_SETTERS: Final[tuple[Callable[[Digest, object], None], ...]] = tuple(
    getattr(Digest, f.name).__set__
    for f in fields(Digest)  # the slots' member descriptors
)
