"""Switch access for scripts and tests that work step by step, without a reactor: the topology's
checks (topo/lab.py), bench/model_veth.py and the tests of the switch process.

`BlockingSwitch` is a `SwitchClient` (P4Runtime, the model, Thrift: any `--switch` spec) run on a
`ThreadedClock`: each call waits, with a deadline, for the client's worker thread and returns its
result; digests are kept until `wait_digest` takes them. `count_entries` reads a table's fill over
P4Runtime without a stream, so it takes no part in the arbitration of a running controller.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import grpc
from finsy.proto import p4r
from finsy.proto.p4.v1.p4runtime_pb2_grpc import P4RuntimeStub
from twisted.internet import defer
from twisted.python.failure import Failure

from controller.switch.api import ErrorKind, SwitchError
from controller.switch.connect import connect_switch
from controller.switch.p4info_index import P4InfoIndex
from controller.switch.p4runtime_pipeline import current_p4info, rpc_error
from controller.switch.testing import ThreadedClock
from p4src.contract import Digest

_T = TypeVar("_T")


class BlockingSwitch:
    """A switch client whose calls block until their result (or raise `SwitchError`)."""

    def __init__(
        self, spec: str, *, timeout: float = 10.0, p4rt_options: dict[str, Any] | None = None
    ) -> None:
        """Connect to `spec` (a `--switch` value); `timeout` bounds every call, in seconds."""
        self.clock = ThreadedClock()
        self.client = connect_switch(spec, self.clock, p4rt_options=p4rt_options)
        self.timeout = timeout
        self.digests: deque[Digest] = deque()
        self.aged: list[int] = []

    def __enter__(self) -> BlockingSwitch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run one of the client's coroutines to its end; TimeoutError past the deadline."""
        done = defer.ensureDeferred(coroutine)
        deadline = time.monotonic() + self.timeout
        while not done.called:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer from the switch within {self.timeout} s")
            self.clock.run_from_threads(1, timeout=remaining)
        results: list[_T] = []
        failures: list[Failure] = []
        done.addCallbacks(results.append, failures.append)
        if failures:
            failures[0].raiseException()
        return results[0]

    def table_add(self, table: str, action: str, keys: Sequence[str], params: Sequence[str]) -> int:
        """Add an entry (runtime strings, as p4-utils takes them); its handle."""
        return self.call(self.client.table_add(table, action, keys, params))

    def table_delete(self, table: str, handle: int) -> None:
        """Delete the entry `handle`."""
        self.call(self.client.table_delete(table, handle))

    def table_num_entries(self, table: str) -> int:
        """How many entries `table` holds."""
        return self.call(self.client.table_num_entries(table))

    def subscribe(self) -> None:
        """Start keeping the switch's digests (and idle conn_table handles) for `wait_digest`."""
        self.call(self.client.subscribe(self.digests.append, self.aged.extend))

    def wait_digest(self, match: Callable[[Digest], bool], timeout: float | None = None) -> Digest:
        """The first kept digest `match` accepts, waiting for it up to `timeout` (default: the
        call timeout); the digests before it are dropped."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            while self.digests:
                digest = self.digests.popleft()
                if match(digest):
                    return digest
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no matching digest arrived")
            try:
                self.clock.run_from_threads(1, timeout=remaining)
            except TimeoutError:
                continue  # the loop raises with its own message

    def close(self) -> None:
        """Close the client (ends its stream and worker thread)."""
        self.call(self.client.close())


def count_entries(address: str, table: str, *, device_id: int = 1, timeout: float = 5.0) -> int:
    """How many entries `table` holds on the P4Runtime target at `address` (HOST:PORT)."""
    with grpc.insecure_channel(address) as channel:
        stub = P4RuntimeStub(channel)
        info = current_p4info(stub, device_id, timeout)
        if info is None:
            raise SwitchError(f"{address}: no forwarding pipeline", ErrorKind.UNAVAILABLE)
        table_id = P4InfoIndex(info).table(table).id
        query = p4r.Entity(table_entry=p4r.TableEntry(table_id=table_id))
        request = p4r.ReadRequest(device_id=device_id, entities=[query])
        try:
            return sum(len(reply.entities) for reply in stub.Read(request, timeout=timeout))
        except grpc.RpcError as exc:
            raise rpc_error(f"{address}: Read of {table}", exc) from exc
