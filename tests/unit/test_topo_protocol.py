"""Wire format of the demo's server and load generator."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topo.apps.protocol import (
    MAX_PAYLOAD,
    AppProtocolError,
    RequestHeader,
    ResponseHeader,
    encode_request,
    encode_response,
    parse_request_datagram,
    parse_request_header,
    parse_response_datagram,
    parse_response_header,
    payload_for,
)


@given(st.integers(0, 2**40), st.binary(max_size=3000))
def test_request_round_trips(seq: int, payload: bytes) -> None:
    data = encode_request(seq, payload)
    line, _, rest = data.partition(b"\n")
    assert parse_request_header(line + b"\n") == RequestHeader(seq, len(payload))
    assert rest == payload
    assert parse_request_datagram(data) == (RequestHeader(seq, len(payload)), payload)


@given(
    st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=64),
    st.integers(0, 2**40),
    st.binary(max_size=3000),
)
def test_response_round_trips(server: str, seq: int, payload: bytes) -> None:
    data = encode_response(server, seq, payload)
    header, echoed = parse_response_datagram(data)
    assert header == ResponseHeader(server, seq, len(payload))
    assert echoed == payload


@pytest.mark.parametrize(
    "line",
    [
        b"REQ 1 2",  # no newline
        b"REQ 1\n",  # too few fields
        b"REQ 1 2 3\n",  # too many
        b"RSP 1 2\n",  # wrong tag
        b"REQ -1 2\n",  # sign
        b"REQ 1 0x10\n",  # not decimal
        b"REQ 1 %d\n" % (MAX_PAYLOAD + 1),  # too big
        b"REQ " + b"9" * 200 + b" 1\n",  # overlong header
        b"",
    ],
)
def test_bad_request_headers_are_rejected(line: bytes) -> None:
    with pytest.raises(AppProtocolError):
        parse_request_header(line)


@pytest.mark.parametrize(
    "line",
    [b"RSP a 1\n", b"RSP  1 2\n", b"RSP \xff 1 2\n", b"REQ a 1 2\n", b"RSP a 1 x\n"],
)
def test_bad_response_headers_are_rejected(line: bytes) -> None:
    with pytest.raises(AppProtocolError):
        parse_response_header(line)


@pytest.mark.parametrize(
    "data",
    [b"REQ 1 5\nabc", b"REQ 1 2\nabc", b"no header at all"],
)
def test_datagram_length_must_match_header(data: bytes) -> None:
    with pytest.raises(AppProtocolError):
        parse_request_datagram(data)


@pytest.mark.parametrize("server", ["", "has space", "x" * 65])
def test_server_id_must_be_one_token(server: str) -> None:
    with pytest.raises(AppProtocolError):
        encode_response(server, 1, b"")


def test_payload_is_deterministic_and_seed_dependent() -> None:
    assert payload_for(7, 1000) == payload_for(7, 1000)
    assert payload_for(7, 1000) != payload_for(8, 1000)
    assert len(payload_for(1, 0)) == 0 and len(payload_for(1, 5000)) == 5000
    assert payload_for(3, 10) == payload_for(3, 1000)[:10]
    with pytest.raises(AppProtocolError):
        payload_for(1, -1)
