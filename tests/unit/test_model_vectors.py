"""The conformance vector format: parsing, wildcards, and mismatch reports."""

from __future__ import annotations

import pytest

from p4model import Switch
from p4model.vectors import (
    ExpectedFrame,
    PacketCase,
    TableAdd,
    VectorError,
    parse_vector,
    play_vector,
)


def test_parse_add_with_priority_and_params() -> None:
    """`add` lines give the table, keys, action, parameters and priority."""
    vector = parse_vector("add t prio=3 1 0x10/4 a&&&b act(1, 00:11:22:33:44:55)  # comment\n")
    assert vector.steps == (
        TableAdd("t", "act", ("1", "0x10/4", "a&&&b"), ("1", "00:11:22:33:44:55"), 3),
    )


def test_expectations_attach_to_the_previous_packet() -> None:
    """expect and digest lines belong to the packet line before them."""
    text = (
        "packet 1 00 11\nexpect 2 0011\nexpect 3 00**\n"
        "digest teardown 1.1.1.1 2.2.2.2 1 2 6 0 3.3.3.3 4\n"
    )
    (case,) = parse_vector(text).steps
    assert isinstance(case, PacketCase)
    assert case.frame == b"\x00\x11"
    assert case.outputs == (ExpectedFrame(2, "0011"), ExpectedFrame(3, "00**"))
    assert case.digests[0].kind == "teardown" and case.digests[0].dip_port == 4


@pytest.mark.parametrize(
    ("port", "frame", "matches"),
    [
        (3, b"\x00\xab", True),
        (3, b"\x01\xab", False),
        (2, b"\x00\xab", False),
        (3, b"\x00\xab\x00", False),
    ],
)
def test_wildcards_match_any_nibble_but_not_length_or_port(
    port: int, frame: bytes, matches: bool
) -> None:
    """`*` matches any nibble; port and length must match."""
    assert ExpectedFrame(3, "00**").matches(port, frame) is matches


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("expect 1 00\n", "must follow a packet"),
        ("packet 1 0g\n", "bad hex"),
        ("packet 1 001\n", "bad hex"),
        ("frobnicate\n", "unknown command"),
        ("packet 1 00\ndigest new_conn 1\n", "digest needs kind and 8 fields"),
        ("register_write r x 1\n", "not an integer"),
        ("add t 1 act\n", "bad add line"),
    ],
)
def test_malformed_vectors_raise(text: str, message: str) -> None:
    """Malformed lines raise VectorError naming the line's problem."""
    with pytest.raises(VectorError, match=message):
        parse_vector(text)


def test_mismatches_are_reported_not_raised() -> None:
    """play_vector lists every mismatch: frames, digests and registers."""
    text = (
        "register_write bloom_1 0 1\n"
        "expect_register bloom_1 0 2\n"
        "packet 1 000000000001000000000002 0800\n"
        "expect 1 00\n"
        "digest new_conn 1.1.1.1 2.2.2.2 1 2 6 0 3.3.3.3 4\n"
    )
    failures = play_vector(parse_vector(text, "case"), Switch())
    assert len(failures) == 3
    assert failures[0].startswith("case:2: bloom_1[0] = 1, expected 2")
