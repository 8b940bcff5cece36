"""The load report schema: round trips, every rejection, fuzzing (only ProtocolError escapes)."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.wire import (
    MAX_REPORT_BYTES,
    SCHEMA_VERSION,
    LoadReport,
    ProtocolError,
    decode_report,
    encode_report,
    parse_decimal,
    parse_dip,
    parse_host_port,
)

VALID: dict[str, Any] = {
    "v": 1,
    "dip": "10.1.3.2:8080",
    "seq": 7,
    "ts": 1764216000.25,
    "cpu": 0.42,
    "conns": 12,
    "conn_rate": 3.5,
    "state": "up",
}

fractions = st.floats(min_value=0.0, max_value=1.0)
reports = st.builds(
    LoadReport,
    dip=st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 65535)).map(
        lambda t: f"{t[0] >> 24}.{(t[0] >> 16) & 255}.{(t[0] >> 8) & 255}.{t[0] & 255}:{t[1]}"
    ),
    seq=st.integers(0, 2**63 - 1),
    ts=st.floats(min_value=0.0, max_value=1e12),
    cpu=fractions,
    conns=st.integers(0, 10**9),
    conn_rate=st.none() | st.floats(min_value=0.0, max_value=1e9),
    state=st.sampled_from(["up", "drain", "down"]),
)


def _encode(**changes: Any) -> bytes:
    obj = {**VALID, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not _MISSING}).encode()


_MISSING = object()


@given(reports)
def test_encode_then_decode_returns_the_same_report(report: LoadReport) -> None:
    data = encode_report(report)
    assert len(data) <= MAX_REPORT_BYTES
    assert decode_report(data) == report


def test_valid_report_decodes_with_all_fields() -> None:
    report = decode_report(_encode())
    assert report == LoadReport("10.1.3.2:8080", 7, 1764216000.25, 0.42, 12, 3.5, "up")


def test_optional_fields_default_and_unknown_keys_are_ignored() -> None:
    # An older agent's "memory" is one such key.
    data = _encode(conn_rate=_MISSING, state=_MISSING, extra={"x": 1}, memory=0.31)
    report = decode_report(data)
    assert (report.conn_rate, report.state) == (None, "up")


def test_integral_numbers_are_accepted_for_float_fields() -> None:
    assert decode_report(_encode(cpu=1, ts=5, conn_rate=0)).cpu == 1


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty", b"", "not_json"),
        ("not json", b"hello", "not_json"),
        ("invalid utf-8", b'{"v": 1, "dip": "\xff"}', "not_json"),
        ("json array", b"[1, 2]", "not_json"),
        ("json number", b"1", "not_json"),
        ("NaN literal", _encode(cpu=_MISSING)[:-1] + b', "cpu": NaN}', "not_json"),
        ("Infinity literal", _encode(ts=_MISSING)[:-1] + b', "ts": Infinity}', "not_json"),
        ("deep nesting", b"[" * 3000 + b"]" * 3000, "oversized"),
        ("recursion", b"[" * 2000 + b"]" * 2000, "not_json"),
        ("oversized", _encode(pad="x" * MAX_REPORT_BYTES), "oversized"),
        ("no version", _encode(v=_MISSING), "bad_version"),
        ("future version", _encode(v=SCHEMA_VERSION + 1), "bad_version"),
        ("version as string", _encode(v="1"), "bad_version"),
        ("version as bool", _encode(v=True), "bad_version"),
        ("missing dip", _encode(dip=_MISSING), "missing_field"),
        ("missing seq", _encode(seq=_MISSING), "missing_field"),
        ("missing cpu", _encode(cpu=_MISSING), "missing_field"),
        ("dip without port", _encode(dip="10.0.0.1"), "bad_dip"),
        ("dip with name", _encode(dip="server:80"), "bad_dip"),
        ("dip port zero", _encode(dip="10.0.0.1:0"), "bad_dip"),
        ("dip port too big", _encode(dip="10.0.0.1:65536"), "bad_dip"),
        ("dip leading zero", _encode(dip="10.0.0.01:80"), "bad_dip"),
        ("dip port leading zero", _encode(dip="10.0.0.1:080"), "bad_dip"),
        ("dip ipv6", _encode(dip="::1:80"), "bad_dip"),
        ("dip as number", _encode(dip=5), "bad_dip"),
        ("dip as list", _encode(dip=["10.0.0.1:80"]), "bad_dip"),
        ("negative seq", _encode(seq=-1), "bad_field"),
        ("float seq", _encode(seq=1.0), "bad_field"),
        ("bool seq", _encode(seq=True), "bad_field"),
        ("huge seq", _encode(seq=2**63), "bad_field"),
        ("string ts", _encode(ts="now"), "bad_field"),
        ("negative ts", _encode(ts=-1.0), "bad_field"),
        ("overflowing ts", _encode(ts=_MISSING)[:-1] + b', "ts": 1e999}', "bad_field"),
        ("cpu above 1", _encode(cpu=1.01), "bad_field"),
        ("negative cpu", _encode(cpu=-0.1), "bad_field"),
        ("cpu as string", _encode(cpu="0.5"), "bad_field"),
        ("cpu null", _encode(cpu=None), "bad_field"),
        ("negative conns", _encode(conns=-3), "bad_field"),
        ("float conns", _encode(conns=2.5), "bad_field"),
        ("negative conn_rate", _encode(conn_rate=-1), "bad_field"),
        ("conn_rate as bool", _encode(conn_rate=False), "bad_field"),
        ("unknown state", _encode(state="sleeping"), "bad_field"),
        ("state as list", _encode(state=["up"]), "bad_field"),
    ],
)
def test_malformed_reports_are_rejected_with_a_reason(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_report(data)
    assert caught.value.reason == reason, name


def test_non_bytes_input_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        decode_report("{}")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields",
    [
        {"cpu": math.nan},
        {"cpu": 1.5},
        {"ts": math.inf},
        {"conns": -1},
        {"dip": "10.0.0.1"},
        {"state": "gone"},
        {"conn_rate": math.inf},
    ],
)
def test_constructing_an_invalid_report_raises(fields: dict[str, Any]) -> None:
    base: dict[str, Any] = {"dip": "10.0.0.1:80", "seq": 0, "ts": 1.0, "cpu": 0.5, "conns": 0}
    with pytest.raises(ProtocolError):
        LoadReport(**{**base, **fields})


def test_parse_dip_splits_canonical_names() -> None:
    assert parse_dip("192.168.0.10:443") == ("192.168.0.10", 443)


@settings(max_examples=500)
@given(st.binary(max_size=MAX_REPORT_BYTES + 64))
def test_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_report(data)


@settings(max_examples=500)
@given(reports, st.data())
def test_mutated_valid_reports_raise_only_protocol_error(
    report: LoadReport, data: st.DataObject
) -> None:
    raw = bytearray(encode_report(report))
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        pos = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "delete" and raw:
            del raw[pos]
        elif op == "insert":
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del raw[pos:]
    try:
        decoded = decode_report(bytes(raw))
    except ProtocolError:
        return
    assert isinstance(decoded, LoadReport)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=500)
@given(st.sampled_from(sorted(VALID)), json_values)
def test_any_json_value_in_any_field_raises_only_protocol_error(key: str, value: Any) -> None:
    data = json.dumps({**VALID, key: value}).encode()  # NaN/Infinity allowed here on purpose
    try:
        report = decode_report(data)
    except ProtocolError:
        return
    assert 0.0 <= report.cpu <= 1.0 and report.conns >= 0


@pytest.mark.parametrize(
    ("text", "low", "high", "expected"),
    [
        ("0", 0, 9, 0),
        ("65535", 1, 65535, 65535),
        ("007", 0, 999, 7),
        ("007", 0, 9, None),  # longer than any number in range
        ("\u00b2", 0, 9, None),  # superscript two: isdigit() but not a number int() reads
        ("\u0663", 0, 9, None),  # Arabic-Indic three: int() would read it
        ("\uff11", 0, 9, None),  # fullwidth one
        ("+1", 0, 9, None),
        ("-1", -5, 9, None),
        (" 1", 0, 9, None),
        ("1_0", 0, 99, None),
        ("", 0, 9, None),
        ("10", 0, 9, None),
        ("9" * 5000, 0, 9, None),  # refused by length before int() is asked
        (5, 0, 9, None),
    ],
)
def test_parse_decimal_reads_ascii_digits_only(
    text: object, low: int, high: int, expected: int | None
) -> None:
    if expected is None:
        with pytest.raises(ValueError):
            parse_decimal(text, low, high)
    else:
        assert parse_decimal(text, low, high) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9100", ("127.0.0.1", 9100)),
        ("[::1]:80", ("::1", 80)),
        ("switch.lab:9090", ("switch.lab", 9090)),
        ("10.1.3.2:\u00b2", None),
        (":80", None),
        ("host:", None),
        ("host:0", None),
        ("host:65536", None),
        ("host", None),
        (None, None),
    ],
)
def test_parse_host_port(text: object, expected: tuple[str, int] | None) -> None:
    if expected is None:
        with pytest.raises(ValueError):
            parse_host_port(text)
    else:
        assert parse_host_port(text) == expected


def test_a_unicode_digit_dip_port_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_report(_encode(dip="10.1.3.2:\u00b2"))
    assert info.value.reason == "bad_dip"
