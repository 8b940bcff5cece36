"""Shared pytest fixtures and tier gates."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from finsy.proto import p4i
from google.protobuf import text_format

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


SAMPLE_P4INFO = Path(__file__).resolve().parent / "p4info_sample.txt"


@pytest.fixture
def sample_p4info() -> p4i.P4Info:
    """A small P4Info in p4c's shape for our program (made-up IDs): tests/p4info_sample.txt."""
    info = p4i.P4Info()
    text_format.Parse(SAMPLE_P4INFO.read_text(encoding="utf-8"), info)
    return info
