"""Finding BMv2's Python modules beside simple_switch (controller.switch.bmv2_path)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from controller.switch import bmv2_path
from controller.switch.api import SwitchError

SITE = Path("lib") / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def _install(prefix: Path, modules: tuple[str, ...]) -> Path:
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "simple_switch").write_text("")
    for name in modules:
        (prefix / SITE / name).mkdir(parents=True)
    return prefix / SITE


@pytest.mark.parametrize(
    ("modules", "found"),
    [(("bm_runtime", "sswitch_runtime"), True), (("bm_runtime",), False), ((), False)],
)
def test_site_packages_is_found_under_simple_switchs_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, modules: tuple[str, ...], found: bool
) -> None:
    site = _install(tmp_path / "prefix", modules)
    monkeypatch.setattr("shutil.which", lambda _: str(tmp_path / "prefix/bin/x"))
    monkeypatch.setattr(bmv2_path, "Path", _no_usr_local)
    assert bmv2_path.bmv2_site_packages() == (site if found else None)


def _no_usr_local(*parts: str) -> Path:
    path = Path(*parts)
    return Path("/nonexistent-prefix") if path == Path("/usr/local") else path


def test_the_directory_is_appended_to_sys_path_when_the_modules_are_not_importable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = _install(tmp_path / "prefix", bmv2_path.BMV2_MODULES)
    for name in bmv2_path.BMV2_MODULES:
        (site / name / "__init__.py").write_text("")
    monkeypatch.setattr(sys, "path", list(sys.path))  # undone after the test
    monkeypatch.setattr(bmv2_path, "bmv2_site_packages", lambda: site)
    monkeypatch.setattr("importlib.util.find_spec", lambda _: None)
    bmv2_path.ensure_bmv2_modules()
    assert str(site) in sys.path


def test_missing_modules_are_reported_with_where_they_were_looked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda _: None)
    monkeypatch.setattr(bmv2_path, "bmv2_site_packages", lambda: None)
    with pytest.raises(SwitchError, match=r"bm_runtime, sswitch_runtime .*site-packages"):
        bmv2_path.ensure_bmv2_modules()
