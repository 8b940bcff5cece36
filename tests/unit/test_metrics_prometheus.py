"""Metrics: Prometheus text rendering and the HTTP resource serving it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
from twisted.internet import defer, task
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyRequest

from controller.config import Config, ControllerSettings, DipConfig, VipConfig
from controller.shell.app import ControllerService
from controller.shell.exports import help_text
from controller.shell.metrics import (
    MAX_BODY,
    BoundedHTTPFactory,
    HTTPLimits,
    Metrics,
    MetricsResource,
    listen_metrics,
    metrics_site,
    parse_listen,
)
from controller.switch.model_client import ModelSwitchClient
from p4model import Switch


def test_rendering_follows_the_text_format() -> None:
    metrics = Metrics()
    metrics.declare("rollouts_total", "counter", "Completed rollouts.")
    metrics.inc("rollouts_total")
    metrics.inc("rollouts_total", 2)
    metrics.declare("dip_weight", "gauge", "Current weight per DIP.")
    metrics.set("dip_weight", 96, dip="10.1.3.2:8080", pool="web")
    metrics.set("dip_weight", 0.5, dip='we"ird\\', pool="web")
    assert metrics.render() == (
        "# HELP p4lb_dip_weight Current weight per DIP.\n"
        "# TYPE p4lb_dip_weight gauge\n"
        'p4lb_dip_weight{dip="10.1.3.2:8080",pool="web"} 96\n'
        'p4lb_dip_weight{dip="we\\"ird\\\\",pool="web"} 0.5\n'
        "# HELP p4lb_rollouts_total Completed rollouts.\n"
        "# TYPE p4lb_rollouts_total counter\n"
        "p4lb_rollouts_total 3\n"
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [(float("nan"), "NaN"), (float("inf"), "+Inf"), (-float("inf"), "-Inf"), (1e20, "1e+20")],
)
def test_special_values_render(value: float, shown: str) -> None:
    metrics = Metrics()
    metrics.set("g", value)
    assert metrics.render().splitlines()[-1] == f"p4lb_g {shown}"


def test_undeclared_metrics_are_declared_on_first_use() -> None:
    metrics = Metrics()
    metrics.inc("digests_total", kind="new_conn")
    assert metrics.value("digests_total", kind="new_conn") == 1
    assert "# TYPE p4lb_digests_total counter" in metrics.render()


@pytest.mark.parametrize(
    ("action", "needle"),
    [
        (lambda m: m.inc("c", -1), "cannot decrease"),
        (lambda m: (m.inc("c"), m.set("c", 1)), "is a counter"),
        (lambda m: m.declare("bad-name", "gauge", ""), "bad metric name"),
        (lambda m: m.inc("c", **{"__x": 1}), "bad metric label"),
    ],
)
def test_misuse_is_refused(action: Callable[[Metrics], object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        action(Metrics())


def test_resource_answers_get_with_the_exposition() -> None:
    metrics = Metrics()
    metrics.inc("learned_total", 5)
    request = DummyRequest([b""])
    # DummyRequest is Twisted's test stand-in for Request but does not subclass it.
    body = MetricsResource(metrics).render_GET(cast(Request, request))
    assert b"p4lb_learned_total 5" in body
    assert request.responseHeaders.getRawHeaders(b"content-type") == [
        b"text/plain; version=0.0.4; charset=utf-8"
    ]


def http_factory(served: object) -> BoundedHTTPFactory:
    """The factory a reactor recorded; typed `object` because Twisted's stubs give the zope
    interface IProtocolFactory, whose methods mypy reads without `self`."""
    assert isinstance(served, BoundedHTTPFactory)
    return served


def test_listening_serves_http_on_localhost() -> None:
    reactor = MemoryReactorClock()
    metrics = Metrics()
    metrics.inc("rollouts_total")
    listen_metrics(reactor, metrics, "127.0.0.1:9100")
    ((port, served, _, interface),) = reactor.tcpServers
    assert (port, interface) == (9100, "127.0.0.1")
    factory = http_factory(served)
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
    response = transport.value()
    assert response.startswith(b"HTTP/1.1 200 OK")
    assert b"p4lb_rollouts_total 1" in response
    metrics.inc("rollouts_total")
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert b"p4lb_rollouts_total 2" in transport.value()


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9100", ("127.0.0.1", 9100)),
        (":9100", ("127.0.0.1", 9100)),
        ("[::1]:80", ("::1", 80)),
    ],
)
def test_listen_addresses_parse(address: str, expected: tuple[str, int]) -> None:
    assert parse_listen(address) == expected


@pytest.mark.parametrize("address", ["9100", "host:", "host:port", "h:70000"])
def test_bad_listen_addresses_are_refused(address: str) -> None:
    with pytest.raises(ValueError, match=repr(address).replace("[", r"\[")):
        parse_listen(address)


def _connect(limits: HTTPLimits | None = None) -> tuple[MemoryReactorClock, Any, StringTransport]:
    reactor = MemoryReactorClock()
    factory = metrics_site(reactor, Metrics(), limits or HTTPLimits())
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return reactor, protocol, transport


@pytest.mark.parametrize(
    "body_headers",
    [
        f"Content-Length: {MAX_BODY + 1}\r\n",
        f"Content-Length: {1 << 30}\r\n",
        "Transfer-Encoding: chunked\r\n",
    ],
    ids=["just-over", "one-gigabyte", "chunked"],
)
def test_a_body_over_64_kib_is_refused_without_being_kept(body_headers: str) -> None:
    _, protocol, transport = _connect()
    protocol.dataReceived(f"POST / HTTP/1.1\r\nHost: x\r\n{body_headers}\r\n".encode())
    chunk = b"x" * 4096
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk) if "chunked" in body_headers else chunk
    for _ in range(MAX_BODY // len(chunk) + 2):
        if transport.disconnecting:
            break
        protocol.dataReceived(framed)
    assert transport.value().startswith(b"HTTP/1.1 413")
    assert transport.disconnecting


def test_a_small_body_is_fine() -> None:
    _, protocol, transport = _connect()
    protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    assert b" 413 " not in transport.value() and not transport.disconnecting


def test_a_slow_client_is_cut_off_at_the_deadline() -> None:
    reactor, protocol, transport = _connect(HTTPLimits(deadline=10.0, idle_timeout=5.0))
    for _ in range(30):  # one header byte every 0.5 s never lets the idle timeout fire
        protocol.dataReceived(b"X")
        reactor.advance(0.5)
    assert transport.disconnecting


def test_an_idle_client_is_closed() -> None:
    reactor, _, transport = _connect(HTTPLimits(deadline=100.0, idle_timeout=5.0))
    reactor.advance(6.0)
    assert transport.disconnecting


def test_connections_beyond_the_cap_are_refused() -> None:
    reactor = MemoryReactorClock()
    factory = metrics_site(reactor, Metrics(), HTTPLimits(max_connections=2))
    for _ in range(2):
        factory.buildProtocol(None).makeConnection(StringTransport())
    assert factory.buildProtocol(None) is None
    assert factory.refused == 1


def test_every_counter_explains_itself_and_per_dip_series_carry_vip_and_dip() -> None:
    clock = task.Clock()
    dips = (DipConfig("10.0.2.2", 8080, 1), DipConfig("10.0.3.2", 8080, 1))
    config = Config(ControllerSettings(), (VipConfig("web", "10.0.0.100", 80, "tcp", dips),))
    client = ModelSwitchClient(Switch(clock=clock.seconds), clock)
    service = ControllerService(clock, config, client)
    started = defer.ensureDeferred(service.start())
    clock.advance(1.5)
    assert started.called
    assert [n for n in service.counters() if help_text(n) == n.replace("_", " ")] == []
    text = service.metrics.render()
    assert 'p4lb_dip_weight{dip="10.0.3.2:8080",vip="web"}' in text
    assert 'p4lb_vip_new_connections_total{vip="web"} 0' in text  # there from the start
    assert "# HELP p4lb_vip_new_connections_total Connections learned per VIP." in text
    assert "p4lb_rollouts_aborted_total 0" in text
