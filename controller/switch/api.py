"""The controller's switch interface: errors, digests, the async client protocol and shared helpers.

Every switch client (in-process model, P4Runtime, BMv2 over Thrift, fault injection) implements
`SwitchClient` and raises `SwitchError` with an `ErrorKind` it read from its target's own error
codes. Controller code outside `controller/switch/` sees only this module and `execute`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, ParamSpec, Protocol, TypeVar

from twisted.internet import defer

from controller.core.ops import DefaultEntry, ErrorKind, Outcome, SwitchOp
from p4src.contract import Digest

_P = ParamSpec("_P")
_R = TypeVar("_R")
_T = TypeVar("_T")

__all__ = ["DefaultEntry", "Digest", "ErrorKind", "SwitchClient", "SwitchError"]


class SwitchError(Exception):
    """A switch operation failed; `kind` says how (set by the client from its target's codes)."""

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.UNKNOWN) -> None:
        super().__init__(message)
        self.kind = kind


DigestCallback = Callable[[Digest], None]
AgedCallback = Callable[[Sequence[int]], None]


class SwitchClient(Protocol):
    """Asynchronous runtime API of one switch; every method raises `SwitchError` on failure,
    except `apply`, which reports each operation's failure in its outcome.

    All control-plane state lives in tables (default actions included): there are no register
    calls, since BMv2's P4Runtime server cannot read or write registers.
    """

    @property
    def primary(self) -> bool:
        """Whether this controller may write: false only for a P4Runtime backup (a higher
        election ID is connected), whose writes fail as `ErrorKind.NOT_PRIMARY`."""
        ...

    async def apply(self, ops: Sequence[SwitchOp]) -> list[Outcome]:
        """Carry out the core's operations in order; one outcome each, in the same order."""
        ...

    async def table_add(
        self, table: str, action: str, keys: Sequence[str], params: Sequence[str], prio: int = 0
    ) -> int:
        """Add an entry and return its handle."""
        ...

    async def table_modify(
        self, table: str, action: str, handle: int, params: Sequence[str]
    ) -> None:
        """Change the action and parameters of the entry `handle`."""
        ...

    async def table_delete(self, table: str, handle: int) -> None:
        """Delete the entry `handle`."""
        ...

    async def table_clear(self, table: str) -> None:
        """Delete every entry of `table` (the default action stays)."""
        ...

    async def table_set_default(self, table: str, action: str, params: Sequence[str]) -> None:
        """Set the default action of `table`."""
        ...

    async def table_set_timeout(self, table: str, handle: int, ms: int) -> None:
        """Give the entry `handle` an idle timeout (the table must support timeouts)."""
        ...

    async def table_num_entries(self, table: str) -> int:
        """Return the number of entries in `table`."""
        ...

    async def table_get_default(self, table: str) -> DefaultEntry:
        """Return the default action of `table` and its parameter values."""
        ...

    async def subscribe(self, on_digest: DigestCallback, on_aged: AgedCallback) -> None:
        """Deliver digests and aged conn_table handles to the callbacks, in the reactor thread."""
        ...

    async def close(self) -> None:
        """Stop deliveries and release the connection; later calls raise `SwitchError`."""
        ...


class TimeReactor(Protocol):
    """The part of a Twisted reactor (or `task.Clock`) the switch clients schedule with."""

    def seconds(self) -> float:
        """Current reactor time."""
        ...

    def callLater(self, delay: float, callable: Callable[..., Any], /, *args: Any) -> Any:
        """Call `callable(*args)` after `delay` seconds; returns an IDelayedCall."""
        ...


class ThreadReactor(TimeReactor, Protocol):
    """A reactor that accepts calls from other threads."""

    def callFromThread(self, callable: Callable[..., Any], /, *args: Any) -> Any:
        """Run `callable(*args)` in the reactor thread soon."""
        ...


def describe_call(operation: str, *args: object) -> str:
    """Render a runtime call for error messages, e.g. "table_delete('conn_table', 7)"."""
    shown = ", ".join(repr(list(a) if isinstance(a, tuple) else a) for a in args)
    return f"{operation}({shown})"


def guarded(
    what: Callable[[], str], call: Callable[[], _T], kind_of: Callable[[Exception], ErrorKind]
) -> _T:
    """Run `call`; any exception becomes a `SwitchError` naming the call (`what()`, built only
    on failure) with the kind `kind_of` reads from it."""
    try:
        return call()
    except SwitchError as exc:
        raise SwitchError(f"{what()}: {exc}", exc.kind) from exc
    except Exception as exc:
        name = type(exc).__name__
        shown = str(exc) if name == "SwitchError" else f"{name}: {exc}"  # e.g. p4model's
        raise SwitchError(f"{what()}: {shown}", kind_of(exc)) from exc


class WorkerThread:
    """Runs blocking calls on ONE dedicated thread, strictly in submission order.

    Results come back to the reactor thread through `callFromThread`. BMv2's Thrift client and
    ZeroMQ sockets must not be used from several threads at once; this keeps them on one.
    """

    def __init__(self, reactor: ThreadReactor, name: str, executor: Executor | None = None) -> None:
        self._reactor = reactor
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._name = name
        self._stopped = False

    def run(self, fn: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> defer.Deferred[_R]:
        """Queue `fn(*args, **kwargs)`; the Deferred fires in the reactor thread."""
        if self._stopped:
            return defer.fail(SwitchError(f"{self._name}: client is closed"))
        result: defer.Deferred[_R] = defer.Deferred()

        def settle(future: Future[_R]) -> None:
            exc = future.exception()
            if exc is None:
                result.callback(future.result())
            else:
                result.errback(exc)

        future = self._executor.submit(fn, *args, **kwargs)
        future.add_done_callback(lambda f: self._reactor.callFromThread(settle, f))
        return result

    def stop(self) -> None:
        """Refuse new calls; queued calls still run, then the thread ends."""
        self._stopped = True
        self._executor.shutdown(wait=False)


class PollingThread:
    """Calls a blocking `receive()` in a loop on its own thread; hands results to the reactor.

    `receive` should return within about a second (a timeout) so that `stop` takes effect;
    it returns None or an empty list when nothing arrived. An exception from `receive` ends the
    loop and is passed to `on_error` in the reactor thread.
    """

    def __init__(
        self,
        reactor: ThreadReactor,
        name: str,
        receive: Callable[[], _T | None],
        deliver: Callable[[_T], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._reactor = reactor
        self._receive = receive
        self._deliver = deliver
        self._on_error = on_error
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        """Start the receiving thread."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the loop to end after the current `receive` returns."""
        self._stopping.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (call from a worker thread, not the reactor)."""
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                item = self._receive()
            except Exception as exc:
                if not self._stopping.is_set():
                    self._reactor.callFromThread(self._on_error, exc)
                return
            if item is not None and not self._stopping.is_set():
                self._reactor.callFromThread(self._deliver, item)
