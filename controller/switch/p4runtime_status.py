"""P4Runtime / gRPC status codes read as error kinds, and per-update errors of a batch Write.

Pure. A Write whose updates did not all succeed fails with gRPC UNKNOWN and carries, in the
`grpc-status-details-bin` trailer, a `google.rpc.Status` whose details hold one `p4.v1.Error`
per update, in order (code OK for those that succeeded). Kinds come from the canonical codes
only: nothing reads the servers' message text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from finsy.proto import p4r, rpc_status
from google.protobuf.message import DecodeError

from controller.core.ops import ErrorKind

# google.rpc.Code values
OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED = 0, 1, 2, 3, 4
NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, RESOURCE_EXHAUSTED = 5, 6, 7, 8
FAILED_PRECONDITION, OUT_OF_RANGE, UNIMPLEMENTED, UNAVAILABLE = 9, 11, 12, 14

STATUS_DETAILS_KEY = "grpc-status-details-bin"

CODE_KINDS: Mapping[int, ErrorKind] = {
    ALREADY_EXISTS: ErrorKind.DUPLICATE,
    NOT_FOUND: ErrorKind.NOT_FOUND,
    RESOURCE_EXHAUSTED: ErrorKind.TABLE_FULL,
    INVALID_ARGUMENT: ErrorKind.INVALID,
    OUT_OF_RANGE: ErrorKind.INVALID,
    UNIMPLEMENTED: ErrorKind.INVALID,
    FAILED_PRECONDITION: ErrorKind.INVALID,
    UNAVAILABLE: ErrorKind.UNAVAILABLE,
    DEADLINE_EXCEEDED: ErrorKind.UNAVAILABLE,
    CANCELLED: ErrorKind.UNAVAILABLE,
    PERMISSION_DENIED: ErrorKind.NOT_PRIMARY,
}


def kind_of_code(code: int) -> ErrorKind:
    """The error kind of a canonical (google.rpc) status code of one update."""
    return CODE_KINDS.get(code, ErrorKind.UNKNOWN)


def kind_of_rpc_code(code: int) -> ErrorKind:
    """The error kind of a whole RPC's status: RESOURCE_EXHAUSTED there is gRPC refusing a
    message over a size limit (whether the switch applied the writes is unknown), not a full
    table."""
    return ErrorKind.UNKNOWN if code == RESOURCE_EXHAUSTED else kind_of_code(code)


@dataclass(frozen=True, slots=True)
class UpdateError:
    """How one update of a Write failed: its canonical code, the server's message, the kind."""

    code: int
    message: str
    kind: ErrorKind

    @classmethod
    def of(cls, code: int, message: str) -> UpdateError:
        """The error the switch reported for one update."""
        return cls(code, message, kind_of_code(code))


def update_errors(details: bytes | None, count: int) -> list[UpdateError | None] | None:
    """Each update's error (None where it succeeded) from a failed Write's status details;
    None when the details are absent, unreadable or not one per update."""
    if not details:
        return None
    try:
        status = rpc_status.Status.FromString(details)
    except DecodeError:
        return None
    if len(status.details) != count:
        return None
    errors: list[UpdateError | None] = []
    for detail in status.details:
        error = p4r.Error()
        if not detail.Unpack(error):
            return None
        ok = error.canonical_code == OK
        errors.append(None if ok else UpdateError.of(error.canonical_code, error.message))
    return errors


def trailer(metadata: Sequence[tuple[str, str | bytes]] | None, key: str) -> bytes | None:
    """A binary trailer's value from gRPC trailing metadata."""
    for name, value in metadata or ():
        if name == key and isinstance(value, bytes):
            return value
    return None
