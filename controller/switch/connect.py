"""Choose and build a switch client from a `--switch` spec: "model", "thrift://HOST:PORT" or
"p4rt://HOST:PORT[?device_id=N][&election_id=M]" (P4Runtime: `p4lb-switch`, simple_switch_grpc,
...)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from agent.wire import parse_host_port
from controller.switch.api import SwitchClient, SwitchError, ThreadReactor

SpecKind = Literal["model", "thrift", "p4rt"]
SPEC_FORMS = '"model", "thrift://HOST:PORT" or "p4rt://HOST:PORT[?device_id=N][&election_id=M]"'
DEFAULT_DEVICE_ID = 1
"""The P4Runtime device ID when the spec names none (p4lb-switch's; simple_switch_grpc's
`--device-id` defaults to 0)."""


class SwitchSpecError(SwitchError, ValueError):
    """A `--switch` spec that cannot be parsed."""


@dataclass(frozen=True)
class SwitchSpec:
    """A parsed switch spec; host and port are empty/0 for "model"."""

    kind: SpecKind
    host: str = ""
    port: int = 0
    device_id: int = DEFAULT_DEVICE_ID
    """The P4Runtime device ID (p4rt only)."""
    election_id: int | None = None
    """The P4Runtime election ID, when the spec gives one (p4rt only)."""


def parse_switch_spec(spec: str) -> SwitchSpec:
    """Parse a `--switch` value, raising `SwitchSpecError` with the bad spec shown."""
    text = spec.strip()
    if text == "model":
        return SwitchSpec("model")
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("thrift", "p4rt"):
        raise SwitchSpecError(f"switch spec {spec!r} is not one of {SPEC_FORMS}")
    rest, _, query = rest.partition("?")
    if query and scheme != "p4rt":
        raise SwitchSpecError(f"switch spec {spec!r}: only p4rt:// takes options")
    options = _p4rt_options(spec, query)
    try:
        host, port = parse_host_port(rest)
    except ValueError:
        raise SwitchSpecError(
            f"switch spec {spec!r} needs HOST:PORT with a port in 1..65535"
        ) from None
    kind: SpecKind = "thrift" if scheme == "thrift" else "p4rt"
    device_id = options.get("device_id", DEFAULT_DEVICE_ID)
    return SwitchSpec(kind, host, port, device_id, options.get("election_id"))


# option -> (lowest, highest allowed value)
_P4RT_OPTIONS = {"device_id": (0, (1 << 64) - 1), "election_id": (1, (1 << 128) - 1)}


def _p4rt_options(spec: str, query: str) -> dict[str, int]:
    options: dict[str, int] = {}
    for item in query.split("&") if query else ():
        name, sep, value = item.partition("=")
        if name not in _P4RT_OPTIONS or name in options or not sep or not value.isdecimal():
            raise SwitchSpecError(
                f"switch spec {spec!r}: options are device_id=N (N >= 0) and election_id=M "
                "(M >= 1), each at most once"
            )
        low, high = _P4RT_OPTIONS[name]
        if not low <= int(value) <= high:
            raise SwitchSpecError(f"switch spec {spec!r}: {name} {value} is out of range")
        options[name] = int(value)
    return options


def connect_switch(
    spec: str,
    reactor: ThreadReactor,
    *,
    model_clock: Callable[[], float] | None = None,
    model_settings: Any = None,
    thrift_options: dict[str, Any] | None = None,
    p4rt_options: dict[str, Any] | None = None,
) -> SwitchClient:
    """Build the client for `spec`.

    "model" creates a fresh in-process `p4model.Switch` (its ageing clock defaults to the
    reactor's time). Thrift and P4Runtime connect in the background: errors surface on the
    first call (or await `ThriftSwitchClient.connected()` to check early). `p4rt_options` go to
    `P4RuntimeSwitchClient` (election_id, pipeline, ...).
    """
    parsed = parse_switch_spec(spec)
    if parsed.kind == "model":
        import p4model  # noqa: PLC0415 - only the in-process model needs it
        from controller.switch.model_client import ModelSwitchClient  # noqa: PLC0415

        clock = model_clock if model_clock is not None else reactor.seconds
        switch = p4model.Switch(model_settings, clock=clock)
        return ModelSwitchClient(switch, reactor)
    if parsed.kind == "thrift":
        from controller.switch.thrift_client import ThriftSwitchClient  # noqa: PLC0415

        return ThriftSwitchClient(reactor, parsed.host, parsed.port, **(thrift_options or {}))
    from controller.switch.p4runtime_client import P4RuntimeSwitchClient  # noqa: PLC0415

    options: dict[str, Any] = {"device_id": parsed.device_id}
    if parsed.election_id is not None:
        options["election_id"] = parsed.election_id
    options.update(p4rt_options or {})
    return P4RuntimeSwitchClient(reactor, parsed.host, parsed.port, **options)
