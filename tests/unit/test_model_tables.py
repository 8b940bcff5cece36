"""Table semantics: exact, LPM, ternary, size limits, duplicates, handles, bad input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p4model import SwitchError
from p4model.keys import NameIndex
from p4model.tables import ActionSpec, KeyField, MatchKind, Table

SET = ActionSpec("Ingress.set", (("value", 8),))
NOP = ActionSpec("NoAction")


def _table(*kinds: MatchKind, size: int = 8, width: int = 8) -> Table:
    keys = [KeyField(f"k{i}", width, kind) for i, kind in enumerate(kinds)]
    return Table("Ingress.t", keys, [SET, NOP], size, ("NoAction", ()))


def _result(table: Table, key: tuple[int, ...]) -> int | None:
    entry = table.lookup(key)
    return None if entry is None else entry.params[0]


@pytest.mark.parametrize(
    ("case", "kinds", "entries", "key", "expected"),
    [
        ("exact hit", [MatchKind.EXACT], [(["5"], 0, "1")], (5,), 1),
        ("exact miss", [MatchKind.EXACT], [(["5"], 0, "1")], (6,), None),
        ("exact two fields", [MatchKind.EXACT] * 2, [(["1", "2"], 0, "3")], (1, 2), 3),
        (
            "lpm longest wins",
            [MatchKind.LPM],
            [(["0x80/1"], 0, "1"), (["0xC0/2"], 0, "2")],
            (0xC1,),
            2,
        ),
        (
            "lpm shorter when longer misses",
            [MatchKind.LPM],
            [(["0x80/1"], 0, "1"), (["0xC0/2"], 0, "2")],
            (0x81,),
            1,
        ),
        ("lpm /0 matches everything", [MatchKind.LPM], [(["0/0"], 0, "9")], (0x17,), 9),
        ("lpm host bits are ignored", [MatchKind.LPM], [(["0xFF/4"], 0, "4")], (0xF0,), 4),
        ("lpm miss", [MatchKind.LPM], [(["0x80/1"], 0, "1")], (0x7F,), None),
        (
            "lpm with exact fields",
            [MatchKind.EXACT, MatchKind.LPM],
            [(["1", "0/0"], 0, "1"), (["2", "0/0"], 0, "2"), (["2", "0x80/1"], 0, "3")],
            (2, 0x90),
            3,
        ),
        (
            "ternary smallest priority wins",
            [MatchKind.TERNARY],
            [(["0&&&0"], 5, "1"), (["0x10&&&0xF0"], 2, "2")],
            (0x12,),
            2,
        ),
        (
            "ternary tie goes to lowest handle",
            [MatchKind.TERNARY],
            [(["0&&&0"], 1, "1"), (["1&&&1"], 1, "2")],
            (1,),
            1,
        ),
        ("ternary mask", [MatchKind.TERNARY], [(["0x0F&&&0x0F"], 1, "7")], (0xAF,), 7),
        ("ternary miss", [MatchKind.TERNARY], [(["0x0F&&&0x0F"], 1, "7")], (0xA0,), None),
        (
            "exact field in a ternary table",
            [MatchKind.EXACT, MatchKind.TERNARY],
            [(["3", "0&&&0"], 1, "5")],
            (3, 0x44),
            5,
        ),
    ],
)
def test_lookup(
    case: str,
    kinds: list[MatchKind],
    entries: list[tuple[list[str], int, str]],
    key: tuple[int, ...],
    expected: int | None,
) -> None:
    """Table-driven lookups: which entry wins for which key."""
    table = _table(*kinds)
    for keys, prio, value in entries:
        table.add(keys, "set", [value], prio)
    assert _result(table, key) == expected, case


_BAD_INPUT = [
    ("too few keys", [MatchKind.EXACT] * 2, ["1"], "set", ["1"], "expected 2 match keys"),
    ("keys as a string", [MatchKind.EXACT], "1", "set", ["1"], "expected 1 match keys"),
    ("not a number", [MatchKind.EXACT], ["abc"], "set", ["1"], "cannot parse 'abc'"),
    ("too wide", [MatchKind.EXACT], ["256"], "set", ["1"], "does not fit in 8 bits"),
    ("negative", [MatchKind.EXACT], ["-1"], "set", ["1"], "does not fit"),
    ("lpm without length", [MatchKind.LPM], ["5"], "set", ["1"], "value/prefix_len"),
    (
        "lpm length too long",
        [MatchKind.LPM],
        ["5/9"],
        "set",
        ["1"],
        "prefix length 9 not in 0..8",
    ),
    ("lpm length not a number", [MatchKind.LPM], ["5/x"], "set", ["1"], "bad prefix length"),
    ("ternary without mask", [MatchKind.TERNARY], ["5"], "set", ["1"], "value&&&mask"),
    (
        "unknown action",
        [MatchKind.EXACT],
        ["1"],
        "nope",
        ["1"],
        "unknown action of Ingress.t 'nope'",
    ),
    ("too many params", [MatchKind.EXACT], ["1"], "set", ["1", "2"], "takes 1 parameters"),
    ("param too wide", [MatchKind.EXACT], ["1"], "set", ["300"], "does not fit in 8 bits"),
    ("param not a string", [MatchKind.EXACT], ["1"], "set", [1], "expected a string"),
]


@pytest.mark.parametrize(
    ("kinds", "keys", "action", "params", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in _BAD_INPUT],
)
def test_bad_input_raises_switch_error(
    kinds: list[MatchKind], keys: list[str], action: str, params: list[str], message: str
) -> None:
    """Malformed keys, names and parameters raise SwitchError with the bad value shown."""
    table = _table(*kinds)
    with pytest.raises(SwitchError, match=message):
        table.add(keys, action, params, 1)
    assert table.num_entries() == 0


def test_full_table_raises_table_full() -> None:
    """Adding past the size raises TABLE_FULL and leaves the table as it was."""
    table = _table(MatchKind.EXACT, size=2)
    table.add(["1"], "set", ["1"])
    table.add(["2"], "set", ["2"])
    with pytest.raises(SwitchError, match="TABLE_FULL"):
        table.add(["3"], "set", ["3"])
    assert table.num_entries() == 2 and table.lookup((3,)) is None


@pytest.mark.parametrize(
    ("kinds", "first", "second", "duplicate"),
    [
        ([MatchKind.EXACT], (["1"], 0), (["1"], 0), True),
        ([MatchKind.LPM], (["0x80/1"], 0), (["0xFF/1"], 0), True),  # same prefix after masking
        ([MatchKind.LPM], (["0x80/1"], 0), (["0x80/2"], 0), False),
        ([MatchKind.TERNARY], (["1&&&1"], 3), (["1&&&1"], 3), True),
        ([MatchKind.TERNARY], (["1&&&1"], 3), (["1&&&1"], 4), False),
    ],
)
def test_duplicates(
    kinds: list[MatchKind],
    first: tuple[list[str], int],
    second: tuple[list[str], int],
    duplicate: bool,
) -> None:
    """The same key (and priority, for ternary) twice raises DUPLICATE_ENTRY."""
    table = _table(*kinds)
    table.add(first[0], "set", ["1"], first[1])
    if duplicate:
        with pytest.raises(SwitchError, match="DUPLICATE_ENTRY"):
            table.add(second[0], "set", ["2"], second[1])
    else:
        table.add(second[0], "set", ["2"], second[1])
        assert table.num_entries() == 2


@pytest.mark.parametrize("kind", [MatchKind.EXACT, MatchKind.LPM, MatchKind.TERNARY])
def test_modify_delete_clear_and_default(kind: MatchKind) -> None:
    """Handles address entries; deleted entries miss; clear keeps the default action."""
    table = _table(kind)
    key = {"exact": "4", "lpm": "4/8", "ternary": "4&&&0xFF"}[kind.value]
    handle = table.add([key], "set", ["1"], 1)
    table.modify(handle, "set", ["2"])
    assert _result(table, (4,)) == 2
    table.delete(handle)
    assert table.lookup((4,)) is None
    for bad in (handle, 99, "0"):
        with pytest.raises(SwitchError, match="INVALID_HANDLE"):
            table.delete(bad)  # type: ignore[arg-type]
    second = table.add([key], "set", ["3"], 1)
    assert second != handle
    table.set_default("Ingress.set", ["8"])
    table.clear()
    assert table.num_entries() == 0 and table.default.params == (8,)


def test_const_table_refuses_changes() -> None:
    """A table with const entries cannot be written by the control plane."""
    table = Table(
        "Ingress.c",
        [KeyField("k", 2, MatchKind.EXACT)],
        [SET],
        4,
        ("Ingress.set", (0,)),
        const=True,
    )
    table.add_const((1,), "Ingress.set", (5,))
    assert _result(table, (1,)) == 5
    with pytest.raises(SwitchError, match="const entries"):
        table.add(["2"], "set", ["1"])
    with pytest.raises(SwitchError, match="const entries"):
        table.clear()


def test_two_lpm_keys_are_refused() -> None:
    """BMv2 allows one lpm key per table."""
    with pytest.raises(SwitchError, match="one lpm key"):
        _table(MatchKind.LPM, MatchKind.LPM)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Ingress.conn_table", "Ingress.conn_table"),
        ("conn_table", "Ingress.conn_table"),
        ("a.b.c", "a.b.c"),
        ("b.c", "a.b.c"),
        ("NoAction", "NoAction"),
        ("c", None),  # ambiguous: a.b.c and x.c
        ("table", None),  # not a whole dotted component
        ("nope", None),
    ],
)
def test_name_suffixes(query: str, expected: str | None) -> None:
    """Full names and unique dotted suffixes resolve; ambiguous or partial ones do not."""
    index = NameIndex("table", ["Ingress.conn_table", "a.b.c", "x.c", "NoAction"])
    if expected is None:
        with pytest.raises(SwitchError, match="unknown table"):
            index.resolve(query)
    else:
        assert index.resolve(query) == expected


@given(
    prefixes=st.lists(st.tuples(st.integers(0, 255), st.integers(0, 8)), max_size=12),
    key=st.integers(0, 255),
)
def test_lpm_equals_brute_force_longest_match(prefixes: list[tuple[int, int]], key: int) -> None:
    """An LPM lookup returns the longest installed prefix covering the key."""
    table = _table(MatchKind.LPM, size=16)
    installed: dict[tuple[int, int], int] = {}
    for value, length in prefixes:
        masked = value & (0xFF << (8 - length)) & 0xFF
        if (masked, length) not in installed:
            installed[(masked, length)] = table.add([f"{value}/{length}"], "set", [str(length)])
    covering = [
        length for (masked, length) in installed if key >> (8 - length) == masked >> (8 - length)
    ]
    assert _result(table, (key,)) == (max(covering) if covering else None)
