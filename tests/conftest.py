"""Shared pytest fixtures and tier gates."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterator
from typing import Any

import pytest

from controller.switch import nanomsg


@pytest.fixture
def without_libnanomsg(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A machine where BMv2's libnanomsg is neither found nor loadable."""

    def absent(name: str, *args: Any, **kwargs: Any) -> ctypes.CDLL:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(ctypes, "CDLL", absent)
    nanomsg.load_library.cache_clear()
    yield
    nanomsg.load_library.cache_clear()
