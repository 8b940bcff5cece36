"""Shared output for benchmarks: an aligned text table on stdout and an optional JSON file."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def format_table(title: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """Render rows (dicts sharing keys) as a Markdown-compatible table under a title."""
    if not rows:
        return f"{title}\n(no rows)\n"
    columns = list(rows[0].keys())
    cells = [[_cell(row.get(col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    lines = [
        title,
        "| " + " | ".join(col.ljust(w) for col, w in zip(columns, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    return "\n".join(lines) + "\n"


def emit(title: str, rows: Sequence[Mapping[str, Any]], json_path: Path | None = None) -> None:
    """Print the table and, when asked, write {title, rows} as JSON."""
    print(format_table(title, rows), flush=True)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"title": title, "rows": list(rows)}, indent=2) + "\n")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)
