"""Choose and build a switch client from a `--switch` spec: "model", "thrift://HOST:PORT" or
"tcp://HOST:PORT" (a `p4lb-switch` control socket)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from agent.wire import parse_host_port
from controller.switch.api import SwitchClient, SwitchError, ThreadReactor

SpecKind = Literal["model", "thrift", "tcp"]
SPEC_FORMS = '"model", "thrift://HOST:PORT" or "tcp://HOST:PORT"'


class SwitchSpecError(SwitchError, ValueError):
    """A `--switch` spec that cannot be parsed."""


@dataclass(frozen=True)
class SwitchSpec:
    """A parsed switch spec; host and port are empty/0 for "model"."""

    kind: SpecKind
    host: str = ""
    port: int = 0


def parse_switch_spec(spec: str) -> SwitchSpec:
    """Parse a `--switch` value, raising `SwitchSpecError` with the bad spec shown."""
    text = spec.strip()
    if text == "model":
        return SwitchSpec("model")
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("thrift", "tcp"):
        raise SwitchSpecError(f"switch spec {spec!r} is not one of {SPEC_FORMS}")
    try:
        host, port = parse_host_port(rest)
    except ValueError:
        raise SwitchSpecError(
            f"switch spec {spec!r} needs HOST:PORT with a port in 1..65535"
        ) from None
    kind: SpecKind = "thrift" if scheme == "thrift" else "tcp"
    return SwitchSpec(kind, host, port)


def connect_switch(
    spec: str,
    reactor: ThreadReactor,
    *,
    model_clock: Callable[[], float] | None = None,
    model_settings: Any = None,
    thrift_options: dict[str, Any] | None = None,
) -> SwitchClient:
    """Build the client for `spec`.

    "model" creates a fresh in-process `p4model.Switch` (its ageing clock defaults to the
    reactor's time). Thrift connects in the background: errors surface on the first call, or
    await `ThriftSwitchClient.connected()` to check early.
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
    from controller.switch.remote_client import RemoteSwitchClient  # noqa: PLC0415

    return RemoteSwitchClient(reactor, f"tcp://{_bracketed(parsed.host)}:{parsed.port}")


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
