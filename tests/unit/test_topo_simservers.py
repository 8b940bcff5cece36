"""Simulated servers of the in-process demo: a FIFO CPU queue with a quota."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topo.simservers import SimServer


def test_server_serves_requests_at_its_quota_in_order() -> None:
    server = SimServer("10.1.3.2:8080", cpu=0.1, work=0.01)  # 10 requests per second
    for conn in range(30):
        server.connect(conn)
        server.request(conn)
    done = [c for _ in range(100) for c in server.advance(0.01)]  # one second
    assert done == list(range(10))
    reading = server.reading(1.0)
    assert reading.cpu == pytest.approx(1.0)
    assert reading.conns == 30
    assert reading.conn_rate == pytest.approx(30.0)


def test_connections_count_until_closed_and_readings_reset() -> None:
    server = SimServer("a", cpu=0.5, work=0.01)
    server.connect(1)
    server.request(1)
    assert server.advance(1.0) == [1]
    first = server.reading(1.0)
    assert first.cpu == pytest.approx(0.02)
    assert first.conns == 1
    server.close(1)
    second = server.reading(2.0)
    assert (second.cpu, second.conns, second.conn_rate) == (0.0, 0, 0.0)


@given(st.integers(0, 50), st.floats(0.01, 1.0), st.floats(0.001, 0.05))
def test_cpu_spent_never_exceeds_the_quota(requests: int, cpu: float, work: float) -> None:
    server = SimServer("a", cpu=cpu, work=work)
    server.connect(0)
    for _ in range(requests):
        server.request(0)
    served = sum(len(server.advance(0.1)) for _ in range(10))
    assert served <= cpu / work + 1
    assert 0.0 <= server.reading(1.0).cpu <= 1.0


@pytest.mark.parametrize(("cpu", "work"), [(0.0, 0.01), (0.1, 0.0), (-1.0, 1.0)])
def test_bad_server_parameters_are_rejected(cpu: float, work: float) -> None:
    with pytest.raises(ValueError):
        SimServer("a", cpu, work)
