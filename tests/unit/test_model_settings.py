"""Reading p4src/settings.p4."""

from __future__ import annotations

from pathlib import Path

import pytest

from p4model import SwitchError, load_settings
from p4model.settings import Settings, parse_settings

_ALL = """
#define CONN_TABLE_SIZE 1024
#define VIP_TABLE_SIZE 8
#define DIP_TABLE_SIZE 0x100
#define DIP_REVERSE_SIZE 16
#define ROUTE_TABLE_SIZE 32
#define HASH_BITS 12
#define VERSION_SLOTS 4
#define BLOOM_BITS 4096
#define BLOOM_HASHES 3
#define SOMETHING_ELSE 7
"""


def test_repository_settings_file() -> None:
    """The repository's settings.p4 holds the contract's values."""
    assert load_settings() == Settings()


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
    with pytest.raises(SwitchError, match=message):
        parse_settings(_ALL.replace(*edit))
