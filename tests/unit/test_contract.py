"""The data-plane contract (p4src/contract.py) against the P4 program and settings.p4."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from p4src import contract
from p4src.contract import ContractError, Digest, load_settings, parse_settings

_ALL = """
#define CONN_TABLE_SIZE 1024
#define VIP_TABLE_SIZE 8
#define DIP_TABLE_SIZE 0x100
#define DIP_REVERSE_SIZE 16
#define ROUTE_TABLE_SIZE 32
#define AFFINITY_TABLE_SIZE 64
#define HASH_BITS 12
#define VERSION_SLOTS 4
#define BLOOM_BITS 4096
#define BLOOM_HASHES 3
#define SOMETHING_ELSE 7
"""


def test_repository_settings_file() -> None:
    """The repository's settings.p4 holds the values DESIGN fixes, read once."""
    settings = load_settings()
    assert (settings.conn_table_size, settings.hash_bits, settings.version_slots) == (65536, 16, 4)
    assert load_settings() is settings


def test_program_declares_every_name_of_the_contract() -> None:
    """Each table, action and register the contract names is declared by the P4 program."""
    program = contract.PROGRAM_PATH.read_text(encoding="utf-8")
    declared = set(re.findall(r"\b(?:table|action)\s+(\w+)", program))
    declared |= set(re.findall(r"register<.+?>\(\w*\)\s+(\w+)", program))
    names = [
        contract.CONN_TABLE,
        contract.VIP_TABLE,
        contract.DIP_TABLE,
        contract.DIP_REVERSE,
        contract.ROUTE_TABLE,
        contract.AFFINITY_TABLE,
        contract.VERSION_CONFIG,
        contract.REWRITE_DST,
        contract.REWRITE_SRC,
        contract.SET_POOL,
        contract.SET_VERSIONS,
        contract.FORWARD,
        contract.DROP,
        *(contract.bloom_register(s) for s in range(load_settings().version_slots)),
    ]
    assert [n for n in names if n not in declared] == []


def test_program_has_no_control_plane_register_and_epoch_wide_blooms() -> None:
    """The only registers are the Bloom filters, each of epoch-wide cells (data plane only)."""
    program = contract.PROGRAM_PATH.read_text(encoding="utf-8")
    registers = re.findall(r"register<bit<(\d+)>>\((\w+)\)\s+(\w+);", program)
    slots = load_settings().version_slots
    expected = [
        (str(contract.EPOCH_BITS), "BLOOM_BITS", contract.bloom_register(s)) for s in range(slots)
    ]
    assert registers == expected


def test_action_parameters_and_constants_match_the_program() -> None:
    """set_pool and set_versions take the contract's parameters; the affinity digest version."""
    program = contract.PROGRAM_PATH.read_text(encoding="utf-8")

    def params(action: str) -> list[tuple[str, str]]:
        found = re.search(rf"action {action}\(([^)]*)\)", program)
        assert found is not None, action
        return re.findall(r"bit<(\d+)>\s+(\w+)", found.group(1))

    assert params(contract.SET_POOL) == [("16", "pool"), ("1", "affinity")]
    epochs = [(str(contract.EPOCH_BITS), f"epoch_{i}") for i in range(4)]
    assert params(contract.SET_VERSIONS) == [("2", "active"), *epochs]
    assert f"AFFINITY_VERSION = {contract.AFFINITY_VERSION};" in program
    version_config = re.search(r"table version_config \{([^}]*)\}", program)
    assert version_config is not None
    assert "key" not in version_config.group(1) and "const" not in version_config.group(1)


def test_digest_struct_matches_the_program() -> None:
    """The digest fields, in order, have the widths of the program's digest struct (whose
    field names say `addr` where Python says `ip`)."""
    program = contract.PROGRAM_PATH.read_text(encoding="utf-8")
    body = re.search(r"struct digest_t\s*\{([^}]*)\}", program)
    assert body is not None
    fields = re.findall(r"bit<(\d+)>\s+(\w+);", body.group(1))
    assert [int(bits) for bits, _ in fields] == [bits for _, bits in contract.DIGEST_FIELDS]


def test_parse_reads_every_define(tmp_path: Path) -> None:
    """All defines are read (hex allowed, unknown ones ignored), from a path too."""
    path = tmp_path / "settings.p4"
    path.write_text(_ALL)
    settings = load_settings(path)
    assert (settings.hash_bits, settings.dip_table_size, settings.bloom_hashes) == (12, 256, 3)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("#define HASH_BITS 12\n", ""), "missing #define for \\['HASH_BITS'\\]"),
        (("HASH_BITS 12", "HASH_BITS twelve"), "HASH_BITS is not an integer: 'twelve'"),
        (("BLOOM_HASHES 3", "BLOOM_HASHES 4"), "BLOOM_HASHES must be 2 or 3"),
        (("VERSION_SLOTS 4", "VERSION_SLOTS 8"), "VERSION_SLOTS must be 4"),
        (("VIP_TABLE_SIZE 8", "VIP_TABLE_SIZE 0"), "VIP_TABLE_SIZE must be positive"),
    ],
)
def test_bad_settings_raise(edit: tuple[str, str], message: str) -> None:
    """Missing, malformed or unsupported values raise with the bad value shown."""
    with pytest.raises(ContractError, match=message):
        parse_settings(_ALL.replace(*edit))


def test_digest_is_a_frozen_dataclass_with_its_own_init() -> None:
    """Digest's hand-written __init__ (faster) builds the same value the generated one would:
    positional or keyword, equal and hashed by value, immutable, and dataclass tools work."""
    digest = Digest("new_conn", "10.0.1.2", "10.0.0.100", 40000, 80, 6, 1, "10.0.2.2", 8080)
    by_name = Digest(
        kind="new_conn",
        src_ip="10.0.1.2",
        dst_ip="10.0.0.100",
        src_port=40000,
        dst_port=80,
        protocol=6,
        version=1,
        dip_ip="10.0.2.2",
        dip_port=8080,
    )
    assert digest == by_name
    assert hash(digest) == hash(by_name)
    values = ("new_conn", "10.0.1.2", "10.0.0.100", 40000, 80, 6, 1, "10.0.2.2", 8080)
    assert dataclasses.astuple(digest) == values
    assert dataclasses.replace(digest, version=2).version == 2
    assert repr(digest).startswith("Digest(kind='new_conn', src_ip='10.0.1.2'")
    with pytest.raises(dataclasses.FrozenInstanceError):
        digest.version = 3  # type: ignore[misc]
