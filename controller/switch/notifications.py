"""Decoding of BMv2 notification messages (learning digests `LEA|`, entry ageing `AGE|`).

Pure functions over bytes. Layout (BMv2 `learning.h` / `ageing.h`): a 32-byte little-endian
header, then the payload. Learning samples hold each digest field in ceil(width / 8) big-endian
bytes, byte-aligned per field; ageing payloads are little-endian u32 entry handles.
"""

from __future__ import annotations

import ipaddress
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from controller.switch.api import Digest, SwitchError
from p4src.contract import DIGEST_FIELDS, KIND_CODES

LEARN_TOPIC = b"LEA|"
AGEING_TOPIC = b"AGE|"
# topic, switch id u64, context id u32, list id i32, buffer id u64, sample count u32
LEARN_HEADER = struct.Struct("<4sQIiQI")
# topic, switch id u64, context id u32, buffer id u64, table id i32, entry count u32
AGEING_HEADER = struct.Struct("<4sQIQiI")
HANDLE = struct.Struct("<I")

_IP_FIELDS = frozenset({"src_ip", "dst_ip", "dip_ip"})


class NotificationError(SwitchError):
    """A notification message is malformed."""


@dataclass(frozen=True)
class LearnMessage:
    """A batch of digests; acknowledge it with (cxt_id, list_id, buffer_id)."""

    switch_id: int
    cxt_id: int
    list_id: int
    buffer_id: int
    digests: tuple[Digest, ...]


@dataclass(frozen=True)
class AgeingMessage:
    """Handles of idle entries in one table."""

    switch_id: int
    cxt_id: int
    buffer_id: int
    table_id: int
    handles: tuple[int, ...]


def sample_size(widths: Sequence[tuple[str, int]] = DIGEST_FIELDS) -> int:
    """Bytes one learning sample takes: each field rounded up to whole bytes."""
    return sum((bits + 7) // 8 for _, bits in widths)


def decode_sample(sample: bytes, widths: Sequence[tuple[str, int]] = DIGEST_FIELDS) -> Digest:
    """Decode one learning sample into a `Digest`."""
    if len(sample) != sample_size(widths):
        raise NotificationError(
            f"digest sample of {len(sample)} bytes, expected {sample_size(widths)}"
        )
    values: dict[str, object] = {}
    offset = 0
    for name, bits in widths:
        size = (bits + 7) // 8
        number = int.from_bytes(sample[offset : offset + size], "big")
        offset += size
        if name == "kind":
            if number not in KIND_CODES:
                raise NotificationError(f"unknown digest kind code {number!r}")
            values[name] = KIND_CODES[number]
        elif name in _IP_FIELDS:
            values[name] = str(ipaddress.IPv4Address(number))
        else:
            values[name] = number
    return Digest(**values)  # type: ignore[arg-type]


def decode_notification(
    data: bytes, widths: Sequence[tuple[str, int]] = DIGEST_FIELDS
) -> LearnMessage | AgeingMessage | None:
    """Decode one notification; None for topics the controller ignores (e.g. port events)."""
    topic = data[:4]
    if topic == LEARN_TOPIC:
        return _decode_learn(data, widths)
    if topic == AGEING_TOPIC:
        return _decode_ageing(data)
    if len(data) < 4:
        raise NotificationError(f"notification of {len(data)} bytes is too short")
    return None


def _decode_learn(data: bytes, widths: Sequence[tuple[str, int]]) -> LearnMessage:
    if len(data) < LEARN_HEADER.size:
        raise NotificationError(f"truncated LEA| header ({len(data)} bytes)")
    _, switch_id, cxt_id, list_id, buffer_id, count = LEARN_HEADER.unpack_from(data)
    size = sample_size(widths)
    body = data[LEARN_HEADER.size :]
    if len(body) != count * size:
        raise NotificationError(
            f"LEA| with {count} samples of {size} bytes has a {len(body)}-byte body"
        )
    digests = tuple(decode_sample(body[i * size : (i + 1) * size], widths) for i in range(count))
    return LearnMessage(switch_id, cxt_id, list_id, buffer_id, digests)


def _decode_ageing(data: bytes) -> AgeingMessage:
    if len(data) < AGEING_HEADER.size:
        raise NotificationError(f"truncated AGE| header ({len(data)} bytes)")
    _, switch_id, cxt_id, buffer_id, table_id, count = AGEING_HEADER.unpack_from(data)
    body = data[AGEING_HEADER.size :]
    if len(body) != count * HANDLE.size:
        raise NotificationError(f"AGE| with {count} handles has a {len(body)}-byte body")
    handles = tuple(h for (h,) in HANDLE.iter_unpack(body))
    return AgeingMessage(switch_id, cxt_id, buffer_id, table_id, handles)


def encode_learn(message: LearnMessage, widths: Sequence[tuple[str, int]] = DIGEST_FIELDS) -> bytes:
    """Encode a `LearnMessage` the way BMv2 sends it (for tests and fakes)."""
    codes = {kind: code for code, kind in KIND_CODES.items()}
    header = LEARN_HEADER.pack(
        LEARN_TOPIC,
        message.switch_id,
        message.cxt_id,
        message.list_id,
        message.buffer_id,
        len(message.digests),
    )
    samples = bytearray()
    for digest in message.digests:
        for name, bits in widths:
            raw = getattr(digest, name)
            if name == "kind":
                number = codes[raw]
            elif name in _IP_FIELDS:
                number = int(ipaddress.IPv4Address(raw))
            else:
                number = int(raw)
            samples += number.to_bytes((bits + 7) // 8, "big")
    return header + bytes(samples)


def encode_ageing(message: AgeingMessage) -> bytes:
    """Encode an `AgeingMessage` the way BMv2 sends it (for tests and fakes)."""
    header = AGEING_HEADER.pack(
        AGEING_TOPIC,
        message.switch_id,
        message.cxt_id,
        message.buffer_id,
        message.table_id,
        len(message.handles),
    )
    return header + b"".join(HANDLE.pack(h) for h in message.handles)


def learn_list_ids(config_json: str) -> list[int]:
    """The learn list ids declared in a BMv2 JSON config (`bm_get_config()`)."""
    return sorted(learn_list_widths(config_json))


def learn_list_widths(config_json: str) -> dict[int, tuple[int | None, ...]]:
    """Bit width of each field of each learn list in a BMv2 JSON config (None where unknown)."""
    try:
        config = json.loads(config_json)
        header_types = {t["name"]: t.get("fields", []) for t in config.get("header_types", [])}
        headers = {h["name"]: h.get("header_type") for h in config.get("headers", [])}
        layouts: dict[int, tuple[int | None, ...]] = {}
        for entry in config.get("learn_lists", []):
            widths: list[int | None] = []
            for element in entry.get("elements", []):
                header, field_name = (element.get("value") or [None, None])[:2]
                fields = header_types.get(headers.get(header), [])
                widths.append(next((int(f[1]) for f in fields if f[0] == field_name), None))
            layouts[int(entry["id"])] = tuple(widths)
        return layouts
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        raise NotificationError(f"cannot read learn_lists from the switch config: {exc}") from exc


def check_layout(
    switch_widths: Sequence[int | None], widths: Sequence[tuple[str, int]] = DIGEST_FIELDS
) -> None:
    """Raise if a learn list's field sizes (from the switch) differ from the decoder's layout."""
    if not switch_widths or None in switch_widths:
        return  # the config does not say: nothing to compare
    ours = [(bits + 7) // 8 for _, bits in widths]
    theirs = [((bits or 0) + 7) // 8 for bits in switch_widths]
    if ours != theirs:
        raise NotificationError(
            f"the switch's digest fields take {theirs!r} bytes, the controller expects {ours!r} "
            "(is the loaded P4 program p4src/loadbalancer.p4?)"
        )
