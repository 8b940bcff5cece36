"""Putting BMv2's Python modules (bm_runtime, sswitch_runtime) on `sys.path`, in one place.

BMv2's `make install` puts them in PREFIX/lib/pythonX.Y/site-packages, which Debian's Python
(and a virtualenv made from it) does not search; BMv2's own CLI wrappers add that directory the
same way. p4-utils imports them at module level, so this runs before p4-utils is imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import sys
from pathlib import Path

from controller.switch.api import SwitchError

BMV2_MODULES = ("bm_runtime", "sswitch_runtime")
"""The BMv2 packages p4-utils' Thrift API imports."""


def bmv2_site_packages() -> Path | None:
    """BMv2's Python directory under simple_switch's prefix (or /usr/local); None if absent."""
    binary = shutil.which("simple_switch")
    prefixes = [Path(binary).resolve().parents[1]] if binary is not None else []
    prefixes.append(Path("/usr/local"))
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for prefix in prefixes:
        site = prefix / "lib" / version / "site-packages"
        if all((site / name).is_dir() for name in BMV2_MODULES):
            return site
    return None


def ensure_bmv2_modules() -> None:
    """Make `bm_runtime` and `sswitch_runtime` importable, or raise `SwitchError` saying why."""
    if all(importlib.util.find_spec(name) is not None for name in BMV2_MODULES):
        return
    site = bmv2_site_packages()
    if site is None:
        raise SwitchError(
            f"BMv2's Python modules {', '.join(BMV2_MODULES)} are not importable and not "
            f"installed beside simple_switch (PREFIX/lib/python{sys.version_info.major}."
            f"{sys.version_info.minor}/site-packages): install BMv2 (`make install`) or put "
            "that directory on PYTHONPATH"
        )
    if str(site) not in sys.path:
        sys.path.append(str(site))
        importlib.invalidate_caches()
