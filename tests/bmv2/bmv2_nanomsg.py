"""nanomsg through ctypes (BMv2's own libnanomsg, so no Python binding is needed) and the
decoding of BMv2 learning notifications into p4model digests."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import ipaddress
import time
from collections.abc import Sequence
from typing import Any

from p4model.digest import KIND_CODES, Digest

_AF_SP = 1
NN_PAIR = 16
NN_SUB = 33
_NN_SUB_SUBSCRIBE = 1
_NN_SOL_SOCKET = 0
_NN_RCVTIMEO = 5
_MAX_MSG = 1 << 17
_NN_STAT_CURRENT_CONNECTIONS = 201
CONNECT_LIMIT = 10.0


class NanoError(RuntimeError):
    """A nanomsg call failed, or a notification is malformed."""


class NanoSocket:
    """A nanomsg socket (PAIR or SUB) through ctypes on BMv2's own libnanomsg."""

    def __init__(self, protocol: int, address: str) -> None:
        """Create the socket and connect it to `address`."""
        name = ctypes.util.find_library("nanomsg")
        if name is None:
            raise NanoError("libnanomsg not found")
        self._lib = ctypes.CDLL(name)
        lib = self._lib
        lib.nn_socket.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.nn_setsockopt.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_size_t,
        ]
        lib.nn_connect.argtypes = [ctypes.c_int, ctypes.c_char_p]
        lib.nn_send.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
        lib.nn_recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        lib.nn_strerror.restype = ctypes.c_char_p
        self._fd = self._check(lib.nn_socket(_AF_SP, protocol))
        if protocol == NN_SUB:
            self._check(lib.nn_setsockopt(self._fd, NN_SUB, _NN_SUB_SUBSCRIBE, None, 0))
        self._check(lib.nn_connect(self._fd, address.encode()))
        lib.nn_get_statistic.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.nn_get_statistic.restype = ctypes.c_uint64
        deadline = time.monotonic() + CONNECT_LIMIT
        while lib.nn_get_statistic(self._fd, _NN_STAT_CURRENT_CONNECTIONS) < 1:
            # nn_connect is asynchronous: a SUB socket misses what is published before it is up
            if time.monotonic() > deadline:
                raise NanoError(f"nanomsg: no connection to {address} in {CONNECT_LIMIT} s")
            time.sleep(0.005)
        self._buffer = ctypes.create_string_buffer(_MAX_MSG)

    def _check(self, rc: int) -> int:
        if rc < 0:
            code = self._lib.nn_errno()
            raise NanoError(f"nanomsg: {self._lib.nn_strerror(code).decode()}")
        return rc

    def send(self, data: bytes) -> None:
        """Send one message."""
        self._check(self._lib.nn_send(self._fd, data, len(data), 0))

    def recv(self, timeout: float) -> bytes | None:
        """One message, or None if none arrives within `timeout` seconds."""
        ms = ctypes.c_int(max(1, int(timeout * 1000)))
        self._check(
            self._lib.nn_setsockopt(
                self._fd, _NN_SOL_SOCKET, _NN_RCVTIMEO, ctypes.byref(ms), ctypes.sizeof(ms)
            )
        )
        size = self._lib.nn_recv(self._fd, self._buffer, len(self._buffer), 0)
        if size < 0:
            if self._lib.nn_errno() in (errno.ETIMEDOUT, errno.EAGAIN):
                return None
            self._check(size)
        return self._buffer.raw[:size]

    def close(self) -> None:
        """Close the socket."""
        self._lib.nn_close(self._fd)


def digest_widths(program: dict[str, Any]) -> list[int]:
    """Bit widths of the digest fields, in order, from the BMv2 JSON."""
    lists = program["learn_lists"]
    if len(lists) != 1:
        raise NanoError(f"expected one learn list, found {len(lists)}")
    header_type = {h["name"]: h["header_type"] for h in program["headers"]}
    fields = {t["name"]: {f[0]: int(f[1]) for f in t["fields"]} for t in program["header_types"]}
    widths = []
    for element in lists[0]["elements"]:
        header, field = element["value"]
        widths.append(fields[header_type[header]][field])
    return widths


def decode_samples(data: bytes, count: int, widths: Sequence[int]) -> list[Digest]:
    """Digest samples: each field in ceil(width/8) big-endian bytes, byte-aligned per field."""
    sizes = [(w + 7) // 8 for w in widths]
    if len(sizes) != 9 or len(data) != count * sum(sizes):
        raise NanoError(f"digest of {len(data)} bytes for {count} samples of {sizes}")
    out = []
    pos = 0
    for _ in range(count):
        values = []
        for size in sizes:
            values.append(int.from_bytes(data[pos : pos + size], "big"))
            pos += size
        kind, src, dst, sport, dport, proto, version, dip, dip_port = values
        out.append(
            Digest(
                KIND_CODES[kind],
                str(ipaddress.IPv4Address(src)),
                str(ipaddress.IPv4Address(dst)),
                sport,
                dport,
                proto,
                version,
                str(ipaddress.IPv4Address(dip)),
                dip_port,
            )
        )
    return out
