"""Play every conformance vector (tests/conformance/*.vec) on the in-process model."""

from __future__ import annotations

from pathlib import Path

import pytest

from p4model import Switch
from p4model.vectors import PacketCase, load_vector, play_vector

VECTORS = sorted(Path(__file__).resolve().parent.glob("*.vec"))


def test_vectors_exist() -> None:
    """The vector files are present (a glob that finds nothing would pass vacuously)."""
    assert len(VECTORS) >= 7


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_vector_on_model(path: Path) -> None:
    """Every packet of the vector leaves as expected, with exactly the expected digests."""
    vector = load_vector(path)
    assert any(isinstance(step, PacketCase) for step in vector.steps)
    failures = play_vector(vector, Switch())
    assert not failures, "\n".join(failures)
