"""The one exception the model's runtime API and pipeline raise, with BMv2-style error codes."""

from __future__ import annotations

from enum import Enum


class ErrorCode(Enum):
    """Why a runtime call failed; the table codes carry BMv2's `TableOperationErrorCode` names."""

    TABLE_FULL = "TABLE_FULL"
    DUPLICATE_ENTRY = "DUPLICATE_ENTRY"
    INVALID_HANDLE = "INVALID_HANDLE"
    BAD_REQUEST = "BAD_REQUEST"
    """Unknown name, malformed key or parameter, unsupported operation."""


class SwitchError(Exception):
    """A runtime API call failed; `code` says why (BAD_REQUEST unless a table said otherwise)."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> None:
        super().__init__(message)
        self.code = code
