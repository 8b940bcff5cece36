"""BMv2 notification decoding: LEA| digests and AGE| handles, from hand-built messages."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.switch.api import Digest
from controller.switch.notifications import (
    AgeingMessage,
    LearnMessage,
    NotificationError,
    check_layout,
    decode_notification,
    encode_ageing,
    encode_learn,
    learn_list_ids,
    learn_list_widths,
)

NEW = Digest("new_conn", "10.0.1.2", "10.0.0.100", 40000, 80, 6, 3, "10.1.3.2", 8080)
DOWN = Digest("teardown", "10.0.1.3", "10.0.0.100", 1234, 53, 17, 0, "10.1.4.2", 5353)


def lea_header(count: int, list_id: int = 1, buffer_id: int = 7) -> bytes:
    """The 32-byte header as BMv2 lays it out (little-endian, packed)."""
    return b"LEA|" + struct.pack("<QIiQI", 0, 0, list_id, buffer_id, count)


# Samples written out byte by byte: kind, src, dst, sport, dport, proto, version, dip, dport.
NEW_SAMPLE = bytes.fromhex("010a0001020a0000649c40005006030a0103021f90")
DOWN_SAMPLE = bytes.fromhex("020a0001030a00006404d2003511000a01040214e9")


@pytest.mark.parametrize(
    ("name", "message", "expected"),
    [
        ("one new_conn", lea_header(1) + NEW_SAMPLE, (NEW,)),
        ("two samples in order", lea_header(2) + NEW_SAMPLE + DOWN_SAMPLE, (NEW, DOWN)),
        ("empty batch", lea_header(0), ()),
    ],
)
def test_learn_messages_decode_to_digests(
    name: str, message: bytes, expected: tuple[Digest, ...]
) -> None:
    decoded = decode_notification(message)
    assert isinstance(decoded, LearnMessage), name
    assert decoded.digests == expected
    assert (decoded.list_id, decoded.buffer_id) == (1, 7)


@pytest.mark.parametrize(
    ("name", "message", "needle"),
    [
        ("header cut short", lea_header(1)[:20], "truncated LEA|"),
        ("sample missing", lea_header(2) + NEW_SAMPLE, "2 samples"),
        ("extra bytes", lea_header(1) + NEW_SAMPLE + b"\x00", "1 samples"),
        ("unknown kind", lea_header(1) + b"\x07" + NEW_SAMPLE[1:], "kind code 7"),
        ("ageing cut short", b"AGE|" + bytes(10), "truncated AGE|"),
        ("ageing body odd", b"AGE|" + struct.pack("<QIQiI", 0, 0, 1, 3, 2) + bytes(5), "2 handles"),
        ("tiny", b"LE", "too short"),
    ],
)
def test_malformed_notifications_raise(name: str, message: bytes, needle: str) -> None:
    with pytest.raises(NotificationError, match=needle):
        decode_notification(message)


def test_ageing_message_lists_handles() -> None:
    message = b"AGE|" + struct.pack("<QIQiI", 0, 0, 5, 3, 3) + struct.pack("<III", 4, 9, 70000)
    decoded = decode_notification(message)
    assert decoded == AgeingMessage(0, 0, 5, 3, (4, 9, 70000))


def test_port_events_are_ignored() -> None:
    assert decode_notification(b"PRT|" + bytes(28)) is None


@given(
    st.lists(
        st.builds(
            Digest,
            kind=st.sampled_from(["new_conn", "teardown"]),
            src_ip=st.ip_addresses(v=4).map(str),
            dst_ip=st.ip_addresses(v=4).map(str),
            src_port=st.integers(0, 65535),
            dst_port=st.integers(0, 65535),
            protocol=st.integers(0, 255),
            version=st.integers(0, 3),
            dip_ip=st.ip_addresses(v=4).map(str),
            dip_port=st.integers(0, 65535),
        ),
        max_size=16,
    ),
    st.integers(0, 2**63),
)
def test_encoded_batches_decode_to_the_same_digests(digests: list[Digest], buffer_id: int) -> None:
    message = LearnMessage(1, 0, 2, buffer_id, tuple(digests))
    assert decode_notification(encode_learn(message)) == message


def test_encoded_ageing_decodes_back() -> None:
    message = AgeingMessage(0, 0, 12, 4, (1, 2, 3))
    assert decode_notification(encode_ageing(message)) == message


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"learn_lists": [{"id": 2, "name": "b"}, {"id": 1, "name": "a"}]}, [1, 2]),
        ({"learn_lists": []}, []),
        ({}, []),
    ],
)
def test_learn_list_ids_come_from_the_switch_config(
    config: dict[str, object], expected: list[int]
) -> None:
    assert learn_list_ids(json.dumps(config)) == expected


def test_unreadable_switch_config_raises() -> None:
    with pytest.raises(NotificationError, match="learn_lists"):
        learn_list_ids("{not json")


def bmv2_config(widths: list[int]) -> str:
    """A BMv2 JSON config fragment with one learn list over scalar metadata fields."""
    fields = [[f"_digest_f{i}", w, False] for i, w in enumerate(widths)]
    return json.dumps(
        {
            "header_types": [{"name": "scalars_0", "id": 0, "fields": fields}],
            "headers": [{"name": "scalars", "id": 0, "header_type": "scalars_0"}],
            "learn_lists": [
                {
                    "id": 1,
                    "name": "digest_t",
                    "elements": [{"type": "field", "value": ["scalars", f[0]]} for f in fields],
                }
            ],
        }
    )


def test_learn_list_widths_are_read_from_the_config() -> None:
    assert learn_list_widths(bmv2_config([8, 32, 16])) == {1: (8, 32, 16)}


@pytest.mark.parametrize(
    ("widths", "ok"),
    [
        ([8, 32, 32, 16, 16, 8, 8, 32, 16], True),
        ([8, 32, 32, 16, 16, 8, 2, 32, 16], True),  # bit<2> still takes one byte
        ([8, 32, 32, 16, 16, 8, 16, 32, 16], False),
        ([8, 32, 32, 16, 16, 8, 8, 32], False),
    ],
)
def test_a_switch_digest_layout_must_match_the_decoder(widths: list[int], ok: bool) -> None:
    (layout,) = learn_list_widths(bmv2_config(widths)).values()
    if ok:
        check_layout(layout)
    else:
        with pytest.raises(NotificationError, match="controller expects"):
            check_layout(layout)
