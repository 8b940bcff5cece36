"""Register arrays: BMv2's out-of-bounds and width semantics, control-plane access."""

from __future__ import annotations

import pytest

from p4model import SwitchError
from p4model.registers import Register


def test_data_plane_out_of_bounds_read_keeps_destination() -> None:
    """An out-of-bounds read leaves the destination value unchanged."""
    reg = Register("r", 8, 4)
    reg.write(1, 7)
    assert reg.read(1, 99) == 7
    assert reg.read(4, 99) == 99
    assert reg.read(-1, 42) == 42


def test_data_plane_out_of_bounds_write_does_nothing() -> None:
    """An out-of-bounds write changes no cell."""
    reg = Register("r", 8, 4)
    reg.write(4, 1)
    reg.write(-1, 1)
    assert reg.control_read(None) == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("width", "value", "stored"), [(1, 1, 1), (1, 2, 0), (2, 5, 1), (8, -1, 255)]
)
def test_values_are_truncated_to_the_width(width: int, value: int, stored: int) -> None:
    """Writes keep only the register's width (negative values in two's complement)."""
    reg = Register("r", width, 2)
    reg.control_write(0, value)
    reg.write(1, value)
    assert reg.control_read(None) == [stored, stored]


def test_control_range_write_and_reset() -> None:
    """A [start, end) list writes a range, end excluded; reset zeroes all."""
    reg = Register("r", 4, 6)
    reg.control_write([1, 4], 3)
    assert reg.control_read(None) == [0, 3, 3, 3, 0, 0]
    reg.reset()
    assert reg.control_read(None) == [0] * 6


@pytest.mark.parametrize(
    ("index", "message"),
    [
        (6, "out of range"),
        (-1, "out of range"),
        ("1", "out of range"),
        ([1], "range must be"),
        ([4, 9], "bad range"),
    ],
)
def test_control_plane_bad_index_raises(index: object, message: str) -> None:
    """The control plane gets SwitchError for bad indices (BMv2's INVALID_INDEX)."""
    reg = Register("r", 4, 6)
    with pytest.raises(SwitchError, match=message):
        reg.control_write(index, 1)  # type: ignore[arg-type]


def test_control_plane_read_out_of_range_raises() -> None:
    """Reading a cell past the end raises."""
    with pytest.raises(SwitchError, match="INVALID_INDEX"):
        Register("r", 4, 6).control_read(6)
