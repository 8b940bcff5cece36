"""Controller counters and gauges, rendered in the Prometheus text format and served over HTTP.

`Metrics` is a plain registry (no I/O). `MetricsResource` serves it with twisted.web;
`listen_metrics(reactor, metrics, "127.0.0.1:9100")` binds it (localhost by default) behind
`BoundedHTTPFactory`: request bodies over 64 KiB are refused (413) without being stored,
connections are capped and each lives at most `HTTPLimits.deadline` seconds, so slow or idle
clients (slowloris) cannot hold the endpoint.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from twisted.internet.interfaces import IAddress
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from agent.wire import parse_host_port

MetricKind = Literal["counter", "gauge"]
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
DEFAULT_PREFIX = "p4lb_"
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
LabelKey = tuple[tuple[str, str], ...]


@dataclass
class _Family:
    kind: MetricKind
    help: str
    samples: dict[LabelKey, float] = field(default_factory=dict)


def _label_key(labels: Mapping[str, object]) -> LabelKey:
    for name in labels:
        if not _LABEL.match(name) or name.startswith("__"):
            raise ValueError(f"bad metric label name {name!r}")
    return tuple(sorted((name, str(value)) for name, value in labels.items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(value)


class Metrics:
    """Named counters (only go up) and gauges (set to any value), each with optional labels."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self._prefix = prefix
        self._families: dict[str, _Family] = {}

    def declare(self, name: str, kind: MetricKind, help: str) -> None:
        """Declare a metric (idempotent for the same kind)."""
        full = self._prefix + name
        if not _NAME.match(full):
            raise ValueError(f"bad metric name {name!r}")
        existing = self._families.get(full)
        if existing is None:
            self._families[full] = _Family(kind, help)
        elif existing.kind != kind:
            raise ValueError(f"metric {name!r} is a {existing.kind}, not a {kind}")

    def _family(self, name: str, kind: MetricKind) -> _Family:
        family = self._families.get(self._prefix + name)
        if family is None:
            self.declare(name, kind, name.replace("_", " "))
            family = self._families[self._prefix + name]
        elif family.kind != kind:
            raise ValueError(f"metric {name!r} is a {family.kind}, not a {kind}")
        return family

    def inc(self, name: str, amount: float = 1.0, **labels: object) -> None:
        """Add `amount` (>= 0) to a counter."""
        if amount < 0:
            raise ValueError(f"counter {name!r} cannot decrease (amount {amount!r})")
        samples = self._family(name, "counter").samples
        key = _label_key(labels)
        samples[key] = samples.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: object) -> None:
        """Set a gauge."""
        self._family(name, "gauge").samples[_label_key(labels)] = float(value)

    def value(self, name: str, **labels: object) -> float | None:
        """Current value of one sample, None if never set."""
        family = self._families.get(self._prefix + name)
        return None if family is None else family.samples.get(_label_key(labels))

    def render(self) -> str:
        """The whole registry in Prometheus text exposition format 0.0.4."""
        lines: list[str] = []
        for full in sorted(self._families):
            family = self._families[full]
            lines.append(f"# HELP {full} {family.help.replace(chr(92), chr(92) * 2)}")
            lines.append(f"# TYPE {full} {family.kind}")
            for key in sorted(family.samples):
                labels = ",".join(f'{k}="{_escape(v)}"' for k, v in key)
                shown = f"{full}{{{labels}}}" if labels else full
                lines.append(f"{shown} {_number(family.samples[key])}")
        return "\n".join(lines) + "\n" if lines else ""


class MetricsResource(Resource):
    """twisted.web resource answering GET with `metrics.render()`."""

    isLeaf = True  # noqa: N815 - twisted.web attribute

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        """Serve the current counters."""
        request.setHeader(b"content-type", CONTENT_TYPE)
        return self._metrics.render().encode("utf-8")


MAX_BODY = 64 * 1024
"""Largest request body accepted (bytes); the endpoints take no input, so this is generous."""
_TOO_LARGE = b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


@dataclass(frozen=True)
class HTTPLimits:
    """Bounds on what HTTP clients may cost the controller."""

    max_connections: int = 16
    """Connections served at once; more are closed as soon as they are accepted."""
    deadline: float = 10.0
    """Seconds a connection may live, however slowly it sends."""
    idle_timeout: float = 5.0
    """Seconds without any byte before a connection is closed."""


class BoundedRequest(Request):
    """A request whose body is kept in memory up to MAX_BODY; beyond it: 413 and hang up."""

    too_large = False
    refusal: bytes = _TOO_LARGE
    """The whole response sent for an oversize body (subclasses give it a body)."""

    def gotLength(self, length: int | None) -> None:
        """Never spool to a temporary file (the default beyond 100 kB)."""
        self.content = io.BytesIO()
        if length is not None and length > MAX_BODY:
            self._refuse()

    def handleContentChunk(self, data: bytes) -> None:
        """Keep the body while it fits (chunked bodies declare no length up front)."""
        content: Any = self.content
        if self.too_large:
            return
        if content.tell() + len(data) > MAX_BODY:
            self._refuse()
            return
        content.write(data)

    def process(self) -> None:
        """Serve the request unless it was refused."""
        if not self.too_large:
            super().process()  # type: ignore[no-untyped-call]

    def _refuse(self) -> None:
        self.too_large = True
        transport: Any = self.channel.transport
        transport.write(self.refusal)
        transport.loseConnection()


class _DeadlineProtocol(ProtocolWrapper):
    """Closes its connection `deadline` seconds after it opened, whatever the client does."""

    factory: BoundedHTTPFactory
    _timer: Any = None

    def makeConnection(self, transport: Any) -> None:
        """Start the clock, then the wrapped protocol."""
        self._timer = self.factory.reactor.callLater(self.factory.limits.deadline, self._expire)
        super().makeConnection(transport)  # type: ignore[no-untyped-call]

    def _expire(self) -> None:
        self._timer = None
        self.factory.expired += 1
        transport: Any = self.transport
        transport.abortConnection()

    def connectionLost(self, reason: Any = None) -> None:
        """Stop the clock."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        super().connectionLost(reason)  # type: ignore[no-untyped-call]


class BoundedHTTPFactory(WrappingFactory):
    """A twisted.web Site behind a connection cap and a per-connection deadline."""

    protocol = _DeadlineProtocol

    def __init__(self, site: Site, reactor: Any, limits: HTTPLimits = HTTPLimits()) -> None:
        super().__init__(site)  # type: ignore[no-untyped-call]
        self.reactor = reactor
        self.limits = limits
        self.refused = 0
        """Connections closed at once because `max_connections` were open."""
        self.expired = 0
        """Connections closed at their deadline."""

    def buildProtocol(self, addr: IAddress | None) -> Any:
        """The wrapped HTTP protocol, or None (Twisted then closes the connection) when full."""
        if len(self.protocols) >= self.limits.max_connections:
            self.refused += 1
            return None
        return super().buildProtocol(addr)


def bounded_site(
    reactor: Any,
    resource: Resource,
    limits: HTTPLimits = HTTPLimits(),
    request_factory: type[BoundedRequest] = BoundedRequest,
) -> BoundedHTTPFactory:
    """`resource` served behind every bound: body size, idle timeout, deadline, connection cap."""
    site = Site(resource, timeout=limits.idle_timeout, reactor=reactor)
    site.requestFactory = request_factory
    return BoundedHTTPFactory(site, reactor, limits)


def metrics_site(
    reactor: Any, metrics: Metrics, limits: HTTPLimits = HTTPLimits()
) -> BoundedHTTPFactory:
    """The bounded HTTP factory serving `metrics` on every path."""
    return bounded_site(reactor, MetricsResource(metrics), limits)


class TCPReactor(Protocol):
    """The reactor methods `listen_metrics` needs."""

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        """Listen on `interface:port`; returns an IListeningPort."""
        ...

    def callLater(self, delay: float, f: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Schedule a call."""
        ...

    def seconds(self) -> float:
        """The reactor's clock."""
        ...


def parse_listen(address: str) -> tuple[str, int]:
    """Split "HOST:PORT" (HOST defaults to 127.0.0.1 when empty)."""
    try:
        host, port = parse_host_port(
            f"127.0.0.1{address}" if address.startswith(":") else address, low_port=0
        )
    except ValueError:
        raise ValueError(f"address {address!r} is not HOST:PORT") from None
    return host, port


def listen_metrics(reactor: TCPReactor, metrics: Metrics, address: str = "127.0.0.1:9100") -> Any:
    """Serve `metrics` over HTTP at `address` (every path answers); returns the listening port."""
    host, port = parse_listen(address)
    return reactor.listenTCP(port, metrics_site(reactor, metrics), interface=host)
