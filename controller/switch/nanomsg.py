"""nanomsg sockets through ctypes on BMv2's own libnanomsg (no Python binding such as nnpy).

simple_switch links libnanomsg and publishes its notifications (learning digests `LEA|`, entry
ageing `AGE|`) on a nanomsg PUB socket; with `--packet-in` it also exchanges frames over a PAIR
socket. Wherever BMv2 runs, its libnanomsg is there, so calling it through ctypes needs nothing
else installed. Every failure is raised as `SwitchError`.

`nn_connect` is asynchronous and nanomsg has no "connected" event: a SUB socket drops whatever is
published before its connection is up, so the constructor of a connecting socket polls the
socket's connection count until the peer is there, bounded by `connect_timeout` (which also turns
a wrong address into an error instead of silence).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import threading
import time

from controller.switch.api import SwitchError

LIBRARY_HINT = (
    "receiving BMv2's notifications (digests, ageing) needs BMv2's libnanomsg "
    "(libnanomsg.so.5, installed with simple_switch; on Debian/Ubuntu `apt-get install "
    "libnanomsg5`)"
)

AF_SP = 1
PAIR = 16  # NN_PAIR
PUB = 32  # NN_PUB
SUB = 33  # NN_SUB
_SUB_SUBSCRIBE = 1
_SOL_SOCKET = 0
_SNDTIMEO = 4
_RCVTIMEO = 5
_NN_MSG = ctypes.c_size_t(-1).value  # nn_recv allocates the message (no size limit)
_STAT_CURRENT_CONNECTIONS = 201
_STAT_ERROR = ctypes.c_uint64(-1).value
_RETRY_ERRNOS = frozenset({errno.ETIMEDOUT, errno.EAGAIN, errno.EINTR})

CONNECT_TIMEOUT = 5.0
RECEIVE_TIMEOUT = 0.25
SEND_TIMEOUT = 10.0
_CONNECT_POLL = 0.005


@functools.cache
def load_library(name: str | None = None) -> ctypes.CDLL:
    """libnanomsg (`name`, or the system's), with argument types declared; SwitchError if absent."""
    if name is not None:
        candidates = [name]
    else:
        found = ctypes.util.find_library("nanomsg")
        candidates = [c for c in (found, "libnanomsg.so.5", "libnanomsg.so") if c]
    problems: list[str] = []
    for candidate in candidates:
        try:
            lib = ctypes.CDLL(candidate)
        except OSError as exc:
            problems.append(str(exc))
            continue
        _declare(lib)
        return lib
    raise SwitchError(f"cannot load libnanomsg ({'; '.join(problems)}): {LIBRARY_HINT}")


def _declare(lib: ctypes.CDLL) -> None:
    c_int, c_size_t, c_void_p = ctypes.c_int, ctypes.c_size_t, ctypes.c_void_p
    lib.nn_socket.argtypes = [c_int, c_int]
    lib.nn_close.argtypes = [c_int]
    lib.nn_setsockopt.argtypes = [c_int, c_int, c_int, c_void_p, c_size_t]
    lib.nn_connect.argtypes = [c_int, ctypes.c_char_p]
    lib.nn_bind.argtypes = [c_int, ctypes.c_char_p]
    lib.nn_send.argtypes = [c_int, ctypes.c_char_p, c_size_t, c_int]
    lib.nn_recv.argtypes = [c_int, c_void_p, c_size_t, c_int]
    lib.nn_freemsg.argtypes = [c_void_p]
    lib.nn_errno.argtypes = []
    lib.nn_strerror.argtypes = [c_int]
    lib.nn_strerror.restype = ctypes.c_char_p
    lib.nn_get_statistic.argtypes = [c_int, c_int]
    lib.nn_get_statistic.restype = ctypes.c_uint64


class NanomsgSocket:
    """One nanomsg socket (PAIR, SUB or PUB) connected (or bound) to `address`.

    A SUB socket subscribes to every topic. `receive()` without a timeout uses
    `receive_timeout`, so the socket also serves as the thrift client's `NotificationSocket`.
    """

    def __init__(
        self,
        protocol: int,
        address: str,
        *,
        bind: bool = False,
        connect_timeout: float = CONNECT_TIMEOUT,
        receive_timeout: float = RECEIVE_TIMEOUT,
        send_timeout: float = SEND_TIMEOUT,
        library: str | None = None,
    ) -> None:
        self.address = address
        self._lib = load_library(library)
        self._receive_timeout = receive_timeout
        self._timeout_set: float | None = None
        self._lock = threading.Lock()  # close() may come from another thread than receive()
        self._closed = False
        self._fd = self._check(self._lib.nn_socket(AF_SP, protocol), "nn_socket")
        try:
            if protocol == SUB:
                self._check(
                    self._lib.nn_setsockopt(self._fd, SUB, _SUB_SUBSCRIBE, None, 0), "subscribe"
                )
            self._set_timeout(_SNDTIMEO, send_timeout)
            if bind:
                self._check(self._lib.nn_bind(self._fd, address.encode()), f"bind {address}")
            else:
                self._check(self._lib.nn_connect(self._fd, address.encode()), f"connect {address}")
                self.wait_for_peer(connect_timeout)
        except BaseException:
            self.close()
            raise

    def _error(self, what: str, code: int | None = None) -> SwitchError:
        code = self._lib.nn_errno() if code is None else code
        text = self._lib.nn_strerror(code).decode(errors="replace")
        return SwitchError(f"nanomsg {what} ({self.address}): {text}")

    def _check(self, rc: int, what: str) -> int:
        if rc < 0:
            raise self._error(what)
        return rc

    def _set_timeout(self, option: int, seconds: float) -> None:
        ms = ctypes.c_int(max(1, round(seconds * 1000)))
        rc = self._lib.nn_setsockopt(
            self._fd, _SOL_SOCKET, option, ctypes.byref(ms), ctypes.sizeof(ms)
        )
        self._check(rc, "setsockopt")

    def connections(self) -> int:
        """Number of peers currently connected to this socket."""
        count = int(self._lib.nn_get_statistic(self._fd, _STAT_CURRENT_CONNECTIONS))
        if count == _STAT_ERROR:
            raise self._error("get_statistic")
        return count

    def wait_for_peer(self, timeout: float) -> None:
        """Block until at least one peer is connected; SwitchError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.connections() < 1:
            if time.monotonic() >= deadline:
                raise SwitchError(
                    f"nanomsg: no connection to {self.address} within {timeout:g} s "
                    "(is simple_switch running with this socket address?)"
                )
            time.sleep(_CONNECT_POLL)  # no event for "connected" in nanomsg's API

    def send(self, data: bytes) -> None:
        """Send one message (SwitchError after the send timeout)."""
        if self._closed:
            raise SwitchError(f"nanomsg send ({self.address}): socket is closed")
        self._check(self._lib.nn_send(self._fd, data, len(data), 0), "send")

    def receive(self, timeout: float | None = None) -> bytes | None:
        """The next message, or None if none arrives within `timeout` (default: receive_timeout)."""
        if self._closed:
            raise SwitchError(f"nanomsg receive ({self.address}): socket is closed")
        seconds = self._receive_timeout if timeout is None else timeout
        if seconds != self._timeout_set:
            self._set_timeout(_RCVTIMEO, seconds)
            self._timeout_set = seconds
        message = ctypes.c_void_p()
        size = self._lib.nn_recv(self._fd, ctypes.byref(message), _NN_MSG, 0)
        if size < 0:
            code = self._lib.nn_errno()
            if code in _RETRY_ERRNOS and not self._closed:
                return None
            raise self._error("receive", code)
        try:
            return ctypes.string_at(message, size)
        finally:
            self._lib.nn_freemsg(message)

    def close(self) -> None:
        """Close the socket (idempotent; a receive blocked in another thread ends with an error)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if getattr(self, "_fd", -1) >= 0:
            self._lib.nn_close(self._fd)


def subscribe(
    address: str,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    receive_timeout: float = RECEIVE_TIMEOUT,
    library: str | None = None,
) -> NanomsgSocket:
    """A SUB socket on BMv2's notifications `address`, connected and subscribed to everything."""
    return NanomsgSocket(
        SUB,
        address,
        connect_timeout=connect_timeout,
        receive_timeout=receive_timeout,
        library=library,
    )
