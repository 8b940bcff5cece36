"""The forwarding pipeline of a P4Runtime target: read its P4Info, or push ours when it differs.

Blocking calls, made on the client's worker thread. Without files the client adopts whatever
P4Info the target runs (another controller, or the operator, loaded the program); with a P4Info
and a device config (BMv2 JSON) it loads them (VERIFY_AND_COMMIT) when the target has no
pipeline or another P4Info, which only the primary may do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
from finsy.proto import p4i, p4r
from finsy.proto.p4.v1.p4runtime_pb2_grpc import P4RuntimeStub
from google.protobuf import json_format, text_format
from google.protobuf.message import DecodeError

from controller.switch.api import ErrorKind, SwitchError
from controller.switch.p4runtime_status import FAILED_PRECONDITION, UNKNOWN, kind_of_rpc_code
from controller.switch.p4runtime_writes import uint128

log = logging.getLogger(__name__)

LOAD_TIMEOUT = 60.0
"""Seconds a target may take to load a program (BMv2 takes well under one for ours)."""


@dataclass(frozen=True)
class PipelineFiles:
    """A P4Info file (text `.txt`, binary `.bin` or `.json`, as p4c writes them) and the target's
    device config (BMv2: the JSON p4c writes)."""

    p4info: Path
    device_config: Path


def load_p4info(path: Path) -> p4i.P4Info:
    """Read a P4Info file in the format its suffix names."""
    info = p4i.P4Info()
    try:
        if path.suffix == ".bin":
            info.ParseFromString(path.read_bytes())
        elif path.suffix == ".json":
            json_format.Parse(path.read_text(encoding="utf-8"), info)
        else:
            text_format.Parse(path.read_text(encoding="utf-8"), info)
    except OSError as exc:
        raise SwitchError(
            f"P4Info {str(path)!r}: {exc.strerror or exc}", ErrorKind.INVALID
        ) from exc
    except (text_format.ParseError, json_format.ParseError, DecodeError, ValueError) as exc:
        raise SwitchError(f"P4Info {str(path)!r} is malformed: {exc}", ErrorKind.INVALID) from exc
    return info


def rpc_code(exc: grpc.RpcError) -> int:
    """The canonical status code of a failed RPC."""
    code = exc.code()
    return int(code.value[0]) if isinstance(code, grpc.StatusCode) else UNKNOWN


def rpc_error(what: str, exc: grpc.RpcError) -> SwitchError:
    """A failed RPC as a SwitchError whose kind comes from the status code."""
    code = exc.code()
    name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    return SwitchError(f"{what}: {name}: {exc.details()}", kind_of_rpc_code(rpc_code(exc)))


def current_p4info(stub: P4RuntimeStub, device_id: int, timeout: float) -> p4i.P4Info | None:
    """The P4Info the target runs; None when it has no pipeline yet."""
    request = p4r.GetForwardingPipelineConfigRequest(
        device_id=device_id,
        response_type=p4r.GetForwardingPipelineConfigRequest.P4INFO_AND_COOKIE,
    )
    try:
        reply = stub.GetForwardingPipelineConfig(request, timeout=timeout)
    except grpc.RpcError as exc:
        if rpc_code(exc) == FAILED_PRECONDITION:
            return None
        raise rpc_error("GetForwardingPipelineConfig", exc) from exc
    info: p4i.P4Info = reply.config.p4info
    return info if info.tables or info.actions else None


@dataclass(frozen=True)
class Pipeline:
    """The P4Info to work with, and whether this client just loaded it (tables are empty)."""

    info: p4i.P4Info
    loaded: bool


def ensure_pipeline(
    stub: P4RuntimeStub,
    device_id: int,
    election_id: int,
    *,
    primary: bool,
    files: PipelineFiles | None,
    timeout: float,
) -> Pipeline:
    """The P4Info to work with: the target's, after loading `files` if it differs."""
    running = current_p4info(stub, device_id, timeout)
    if files is None:
        if running is None:
            raise SwitchError(
                "the target has no forwarding pipeline (load one, or give the client a P4Info "
                "and a device config)",
                ErrorKind.UNAVAILABLE,
            )
        return Pipeline(running, loaded=False)
    wanted = load_p4info(files.p4info)
    if running == wanted:
        return Pipeline(running, loaded=False)
    if not primary:
        raise SwitchError(
            "the target runs another pipeline (or none) and this client is a backup: only the "
            "primary may load one",
            ErrorKind.NOT_PRIMARY,
        )
    try:
        device_config = files.device_config.read_bytes()
    except OSError as exc:
        raise SwitchError(
            f"device config {str(files.device_config)!r}: {exc.strerror or exc}", ErrorKind.INVALID
        ) from exc
    request = p4r.SetForwardingPipelineConfigRequest(
        device_id=device_id,
        election_id=uint128(election_id),
        action=p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
        config=p4r.ForwardingPipelineConfig(p4info=wanted, p4_device_config=device_config),
    )
    try:
        stub.SetForwardingPipelineConfig(request, timeout=max(timeout, LOAD_TIMEOUT))
    except grpc.RpcError as exc:
        raise rpc_error("SetForwardingPipelineConfig", exc) from exc
    log.info("P4Runtime device %d: loaded pipeline %s", device_id, files.p4info)
    return Pipeline(wanted, loaded=True)
