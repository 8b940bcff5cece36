"""Version-slot selection rule of the P4 program's `version_select` const table."""

from __future__ import annotations

SLOTS = 4


def oldest_match(active: int, match_mask: int) -> tuple[int, bool]:
    """(slot, insert) for the active slot and a Bloom match mask (bit i: slot i matches).

    The oldest matching slot in activation order active+1, active+2, active+3, active wins;
    with no match the packet uses the active slot and its 5-tuple is inserted there.
    """
    for step in (1, 2, 3, 0):
        slot = (active + step) % SLOTS
        if match_mask >> slot & 1:
            return slot, False
    return active, True


def version_select_entries() -> list[tuple[int, int, int, int]]:
    """All (active, match_mask, version, insert) rows of the const table, in program order."""
    rows = []
    for active in range(SLOTS):
        for mask in range(1 << SLOTS):
            version, insert = oldest_match(active, mask)
            rows.append((active, mask, version, int(insert)))
    return rows
