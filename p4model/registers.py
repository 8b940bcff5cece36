"""P4 register arrays with BMv2 semantics (values masked to the width; out-of-bounds data-plane
reads leave the destination unchanged and writes do nothing)."""

from __future__ import annotations

from p4model.errors import SwitchError


class Register:
    """A `register<bit<width>>(size)` array."""

    def __init__(self, name: str, width: int, size: int) -> None:
        """An all-zero register array."""
        self.name = name
        self.width = width
        self.size = size
        self.mask = (1 << width) - 1
        self.cells = [0] * size

    # data plane
    def read(self, index: int, current: int) -> int:
        """`reg.read(dst, index)`: the cell, or `current` (dst unchanged) out of bounds."""
        if 0 <= index < self.size:
            return self.cells[index]
        return current

    def write(self, index: int, value: int) -> None:
        """`reg.write(index, value)`: nothing happens out of bounds."""
        if 0 <= index < self.size:
            self.cells[index] = value & self.mask

    # control plane
    def control_read(self, index: int | None) -> int | list[int]:
        """One cell, or the whole array when `index` is None."""
        if index is None:
            return list(self.cells)
        self._check_index(index)
        return self.cells[index]

    def control_write(self, index: int | list[int], value: int) -> None:
        """Write one cell, or the cells [start, end) when `index` is a two-item list."""
        if not isinstance(value, int) or isinstance(value, bool):
            raise SwitchError(f"register {self.name}: value must be an int, got {value!r}")
        if isinstance(index, list):
            if len(index) != 2:
                raise SwitchError(
                    f"register {self.name}: range must be [start, end), got {index!r}"
                )
            start, end = index
            self._check_index(start)
            if not start <= end <= self.size:
                raise SwitchError(f"register {self.name}: bad range {index!r} (size {self.size})")
            self.cells[start:end] = [value & self.mask] * (end - start)
            return
        self._check_index(index)
        self.cells[index] = value & self.mask

    def reset(self) -> None:
        """Set every cell to 0."""
        self.cells = [0] * self.size

    def _check_index(self, index: object) -> None:
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < self.size:
            raise SwitchError(
                f"register {self.name}: index {index!r} out of range 0..{self.size - 1} "
                "(INVALID_INDEX)"
            )
