"""Time series of the controller's life as JSON lines, read back by `p4lb-plot`.

One JSON object per line: {"t": now, "kind": KIND, ...fields}. Kinds and their fields:
"load" {dip, cpu, conns, state}, "weights" {pool, weights: {dip: w}}, "rollout" {slot, version,
duration_ms, entries_written}, "learn" {count}, "expire" {count}, "fault" {what, detail},
"share" {pool, shares: {dip: fraction of new conns}}, "phase" {name}.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

EVENT_KINDS = frozenset(
    {"load", "weights", "rollout", "learn", "expire", "fault", "share", "phase"}
)
RESERVED_FIELDS = frozenset({"t", "kind"})
log = logging.getLogger("controller")


def _plain(value: Any) -> Any:
    """JSON fallback for numpy scalars/arrays and other values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _finite(value: Any) -> Any:
    # JSON has no NaN/Infinity: record them as null so every line stays standard JSON.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def encode_event(now: float, kind: str, fields: dict[str, Any]) -> str:
    """One JSON line (without newline) for an event."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown record kind {kind!r}; known: {sorted(EVENT_KINDS)}")
    clash = RESERVED_FIELDS & fields.keys()
    if clash:
        raise ValueError(f"record fields {sorted(clash)!r} are reserved")
    plain = json.loads(json.dumps(fields, default=_plain))
    return json.dumps({"t": now, "kind": kind, **_finite(plain)}, allow_nan=False)


class Recorder:
    """Appends events to a JSON-lines file, flushed per line; `Recorder(None)` records nothing."""

    def __init__(self, path: str | Path | None) -> None:
        self._file: IO[str] | None = None
        if path is not None:
            # Owner-only (0600), also when the file existed: records show clients and servers.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.fchmod(fd, 0o600)
            except OSError:
                os.close(fd)
                raise
            self._file = os.fdopen(fd, "w", encoding="utf-8")
        self.path = None if path is None else Path(path)
        self.write_failures = 0
        """Events lost because the file could not be written (logged once, then counted)."""

    @property
    def enabled(self) -> bool:
        """Whether events are written anywhere."""
        return self._file is not None

    def event(self, now: float, kind: str, **fields: Any) -> None:
        """Record one event of `kind` at time `now`."""
        if self._file is None:
            if kind not in EVENT_KINDS:  # same check as when recording, without the encoding
                raise ValueError(f"unknown record kind {kind!r}; known: {sorted(EVENT_KINDS)}")
            return
        line = encode_event(now, kind, fields) + "\n"
        try:
            self._file.write(line)
            self._file.flush()
        except OSError as exc:  # e.g. disk full: lose the record, never the controller
            self.write_failures += 1
            if self.write_failures == 1:
                log.error("event=record_write_failed path=%s error=%s", self.path, exc)

    def close(self) -> None:
        """Close the file (further events are dropped)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_events(
    path: str | Path, on_skip: Callable[[int, str], None] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield the events of a JSON-lines record; blank lines are ignored and malformed ones
    skipped, each reported to `on_skip(line_number, reason)` when given."""
    # errors="replace": a corrupt byte spoils its line only, not the whole file.
    with Path(path).open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                event = json.loads(text)
            except ValueError:  # e.g. a line cut short by a crash
                if on_skip is not None:
                    on_skip(number, "not JSON")
                continue
            if isinstance(event, dict) and "t" in event and "kind" in event:
                yield event
            elif on_skip is not None:
                on_skip(number, "not an event object")
