"""Constants of the P4 program, read from the `#define NAME value` lines of p4src/settings.p4."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path

from p4model.errors import SwitchError

#: The repository's settings file, found relative to this package.
DEFAULT_SETTINGS_PATH = Path(__file__).resolve().parent.parent / "p4src" / "settings.p4"

_DEFINE = re.compile(r"^\s*#define\s+([A-Z_][A-Z0-9_]*)\s+(\S+)\s*$")


@dataclass(frozen=True)
class Settings:
    """Table sizes and widths shared by the P4 program and the model."""

    conn_table_size: int = 65536
    vip_table_size: int = 256
    dip_table_size: int = 16384
    dip_reverse_size: int = 4096
    route_table_size: int = 1024
    hash_bits: int = 16
    version_slots: int = 4
    bloom_bits: int = 65536
    bloom_hashes: int = 2


def parse_settings(text: str) -> Settings:
    """Build Settings from the text of a settings.p4 file (unknown defines are ignored)."""
    values: dict[str, int] = {}
    wanted = {f.name for f in fields(Settings)}
    for line in text.splitlines():
        match = _DEFINE.match(line)
        if match is None:
            continue
        name = match.group(1).lower()
        if name not in wanted:
            continue
        try:
            values[name] = int(match.group(2), 0)
        except ValueError:
            raise SwitchError(
                f"settings: {match.group(1)} is not an integer: {match.group(2)!r}"
            ) from None
    missing = wanted - values.keys()
    if missing:
        raise SwitchError(f"settings: missing #define for {sorted(n.upper() for n in missing)!r}")
    settings = Settings(**values)
    _check(settings)
    return settings


def load_settings(path: Path | str | None = None) -> Settings:
    """Read Settings from `path` (default: the repository's p4src/settings.p4)."""
    source = Path(path) if path is not None else DEFAULT_SETTINGS_PATH
    return parse_settings(source.read_text(encoding="utf-8"))


def _check(settings: Settings) -> None:
    if settings.version_slots != 4:
        raise SwitchError(f"settings: VERSION_SLOTS must be 4, got {settings.version_slots!r}")
    if settings.bloom_hashes not in (2, 3):
        raise SwitchError(f"settings: BLOOM_HASHES must be 2 or 3, got {settings.bloom_hashes!r}")
    if not 1 <= settings.hash_bits <= 31:
        raise SwitchError(f"settings: HASH_BITS must be in 1..31, got {settings.hash_bits!r}")
    for f in fields(Settings):
        if getattr(settings, f.name) <= 0:
            raise SwitchError(f"settings: {f.name.upper()} must be positive")
