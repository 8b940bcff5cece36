"""Validation shared by the policies' frozen parameter dataclasses."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, TypeVar

from policy.base import PolicyError

P = TypeVar("P")


def check_range(owner: object, name: str, low: float, high: float = math.inf) -> None:
    """Raise PolicyError unless `owner.name` is a finite-or-inf float within [low, high]."""
    value = getattr(owner, name)
    if not isinstance(value, int | float) or math.isnan(value) or not low <= value <= high:
        raise PolicyError(
            f"{type(owner).__name__}.{name} must be in [{low}, {high}], got {value!r}"
        )


def build_params(cls: type[P], values: Mapping[str, Any] | None) -> P:
    """Instantiate params dataclass `cls` from a mapping, rejecting unknown names and bad values."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise PolicyError(
            f"unknown parameter(s) {unknown!r} for {cls.__name__}; known: {sorted(known)!r}"
        )
    clean: dict[str, float] = {}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PolicyError(f"parameter {name!r} must be a number, got {value!r}")
        clean[name] = float(value)
    return cls(**clean)


def defaults(cls: type[Any]) -> dict[str, float]:
    """Default value of every field of a params dataclass."""
    return {f.name: float(f.default) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
