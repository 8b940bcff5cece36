"""The control socket's wire format: requests, replies, notifications, default addresses."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p4model import Digest
from p4model.control_protocol import (
    SWITCH_METHODS,
    ControlProtocolError,
    Notification,
    Reply,
    check_args,
    decode_notification,
    decode_reply,
    decode_request,
    default_digest_address,
    encode_aged,
    encode_digests,
    encode_error,
    encode_ok,
    encode_request,
)

GOOD_REQUESTS: list[tuple[str, list[Any]]] = [
    ("table_add", ["ipv4_lpm", "forward", ["10.0.1.2/32"], ["1", "00:01:0a:00:01:01", "0"]]),
    ("table_add", ["dip_table", "rewrite_dst", ["1", "0", "0x8000/1"], ["10.0.2.2", "8080"], 3]),
    ("table_modify", ["conn_table", "rewrite_dst", 7, ["10.0.2.3", "80"]]),
    ("table_delete", ["conn_table", 7]),
    ("table_clear", ["dip_table"]),
    ("table_set_default", ["ipv4_lpm", "drop", []]),
    ("table_num_entries", ["conn_table"]),
    ("table_set_timeout", ["conn_table", 7, 120000]),
    ("register_read", ["bloom_0"]),
    ("register_read", ["bloom_0", 0]),
    ("register_read", ["bloom_0", None]),
    ("register_write", ["bloom_0", 0, 2]),
    ("register_write", ["bloom_1", [0, 65536], 0]),
    ("register_reset", ["bloom_2"]),
    ("info", []),
]


@pytest.mark.parametrize(("method", "args"), GOOD_REQUESTS)
def test_request_round_trips(method: str, args: list[Any]) -> None:
    request = decode_request(encode_request(method, args))
    assert request.method == method
    assert list(request.args) == args


def test_every_runtime_method_of_the_model_is_served() -> None:
    from p4model import Switch

    for method in SWITCH_METHODS:
        assert callable(getattr(Switch, method)), method


BAD_REQUESTS: list[tuple[str, bytes, str]] = [
    ("not json", b"{nope", "not JSON"),
    ("not utf-8", b"\xff\xfe", "not JSON"),
    ("not an object", b"[1, 2]", "JSON object"),
    ("method missing", b'{"args": []}', "method must be a string"),
    ("unknown method", b'{"method": "process", "args": [1, ""]}', "unknown method 'process'"),
    ("private method", b'{"method": "__init__", "args": []}', "unknown method"),
    ("args not a list", b'{"method": "table_clear", "args": "x"}', "args must be a list"),
    ("extra key", b'{"method": "info", "args": [], "kwargs": {}}', "unexpected request keys"),
    ("too few args", b'{"method": "table_delete", "args": ["t"]}', "takes 2 arguments"),
    ("too many args", b'{"method": "table_clear", "args": ["t", 1]}', "takes 1 arguments"),
    ("handle not int", b'{"method": "table_delete", "args": ["t", "7"]}', "argument 1 must be int"),
    ("bool as int", b'{"method": "table_delete", "args": ["t", true]}', "must be int"),
    ("keys not strs", b'{"method": "table_add", "args": ["t", "a", [1], []]}', "must be strs"),
    (
        "bad range",
        b'{"method": "register_write", "args": ["r", [1, 2, 3], 0]}',
        "argument 1 must be index",
    ),
    ("index str", b'{"method": "register_read", "args": ["r", "0"]}', "must be opt_int"),
]


@pytest.mark.parametrize(
    ("data", "message"), [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_requests_are_rejected_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(ControlProtocolError, match=message.replace("(", r"\(")):
        decode_request(data)


def test_client_side_check_matches_server_side() -> None:
    with pytest.raises(ControlProtocolError, match="unknown method"):
        encode_request("reset_state", [])
    with pytest.raises(ControlProtocolError, match=r"takes 4\.\.5 arguments"):
        check_args("table_add", ("t", "a", []))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (encode_ok(None), Reply(None, None)),
        (encode_ok(42), Reply(42, None)),
        (encode_ok([0, 1, 0]), Reply([0, 1, 0], None)),
        (encode_error("TABLE_FULL: conn_table"), Reply(None, "TABLE_FULL: conn_table")),
    ],
)
def test_reply_round_trips(data: bytes, expected: Reply) -> None:
    assert decode_reply(data) == expected


@pytest.mark.parametrize(
    "data", [b'{"ok": 1, "error": "x"}', b'{"error": 3}', b"{}", b'{"result": 1}', b"7"]
)
def test_malformed_replies_are_rejected(data: bytes) -> None:
    with pytest.raises(ControlProtocolError):
        decode_reply(data)


_ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
_port = st.integers(0, 65535)
digests = st.builds(
    Digest,
    kind=st.sampled_from(["new_conn", "teardown"]),
    src_ip=_ipv4,
    dst_ip=_ipv4,
    src_port=_port,
    dst_port=_port,
    protocol=st.sampled_from([6, 17]),
    version=st.integers(0, 3),
    dip_ip=_ipv4,
    dip_port=_port,
)


@given(st.lists(digests, max_size=20))
def test_digest_notifications_round_trip_in_order(batch: list[Digest]) -> None:
    assert decode_notification(encode_digests(batch)) == Notification(digests=tuple(batch))


@given(st.lists(st.integers(0, 2**31), max_size=50))
def test_aged_notifications_round_trip(handles: list[int]) -> None:
    assert decode_notification(encode_aged(handles)) == Notification(aged=tuple(handles))


@pytest.mark.parametrize(
    "data",
    [
        b'{"type": "digests", "digests": {}}',
        b'{"type": "digests", "digests": [{"kind": "new_conn"}]}',
        b'{"type": "aged", "handles": ["1"]}',
        b'{"type": "aged", "handles": [true]}',
        b'{"type": "stats"}',
        b"[]",
    ],
)
def test_malformed_notifications_are_rejected(data: bytes) -> None:
    with pytest.raises(ControlProtocolError):
        decode_notification(data)


def test_digest_with_a_wrongly_typed_field_is_rejected() -> None:
    good = Digest("new_conn", "10.0.1.2", "10.0.0.100", 40000, 80, 6, 0, "10.0.2.2", 8080)
    data = encode_digests([good]).replace(b'"dip_port":8080', b'"dip_port":"8080"')
    with pytest.raises(ControlProtocolError, match="dip_port"):
        decode_notification(data)


@pytest.mark.parametrize(
    ("control", "digests"),
    [
        ("tcp://127.0.0.1:9559", "tcp://127.0.0.1:9560"),
        ("tcp://[::1]:9559", "tcp://[::1]:9560"),
        ("tcp://0.0.0.0:*", "tcp://0.0.0.0:*"),
        ("ipc:///tmp/p4lb-switch", "ipc:///tmp/p4lb-switch.digests"),
    ],
)
def test_default_digest_address(control: str, digests: str) -> None:
    assert default_digest_address(control) == digests


@pytest.mark.parametrize(
    "control", ["tcp://127.0.0.1", "tcp://127.0.0.1:65535", "inproc://x", "tcp://h:port"]
)
def test_default_digest_address_needs_a_derivable_control_address(control: str) -> None:
    with pytest.raises(ControlProtocolError, match="give one"):
        default_digest_address(control)
