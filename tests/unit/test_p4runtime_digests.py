"""Digest list buffering, list ids and the unacknowledged-sample cache (P4Runtime's rules)."""

from __future__ import annotations

from p4model.p4runtime_digests import DigestBuffer, DigestConfig
from p4src.contract import Digest

MS = 1_000_000


def sample(sport: int) -> Digest:
    """A new_conn digest sample from this source port."""
    return Digest("new_conn", "10.0.1.2", "10.0.0.100", sport, 80, 6, 0, "10.0.2.2", 8080)


def test_a_zero_timeout_sends_every_sample_at_once() -> None:
    buffer = DigestBuffer(DigestConfig(0, 10, 0))
    first, second = buffer.offer(sample(1), 0), buffer.offer(sample(2), 0)
    assert first is not None and second is not None
    assert (first.samples, second.samples) == ((sample(1),), (sample(2),))
    assert second.list_id == first.list_id + 1


def test_a_full_buffer_is_sent_and_duplicates_in_it_count_once() -> None:
    buffer = DigestBuffer(DigestConfig(10 * MS, 2, 0))
    assert buffer.offer(sample(1), 0) is None
    assert buffer.offer(sample(1), 1) is None
    ready = buffer.offer(sample(2), 2)
    assert ready is not None and ready.samples == (sample(1), sample(2))


def test_the_buffer_is_sent_when_its_first_sample_waited_max_timeout() -> None:
    buffer = DigestBuffer(DigestConfig(10 * MS, 0, 0))
    buffer.offer(sample(1), 5 * MS)
    assert buffer.next_deadline() == 15 * MS
    assert buffer.due(14 * MS) is None
    ready = buffer.due(15 * MS)
    assert ready is not None and ready.samples == (sample(1),)
    assert buffer.next_deadline() is None


def test_an_unacked_sample_is_held_back_until_ack() -> None:
    buffer = DigestBuffer(DigestConfig(0, 1, 100 * MS))
    first = buffer.offer(sample(1), 0)
    assert first is not None
    assert buffer.offer(sample(1), 1) is None
    buffer.ack(first.list_id)
    assert buffer.offer(sample(1), 2) is not None


def test_an_unacked_sample_comes_again_after_ack_timeout() -> None:
    buffer = DigestBuffer(DigestConfig(0, 1, 100 * MS))
    buffer.offer(sample(1), 0)
    assert buffer.next_deadline() == 100 * MS
    assert buffer.due(99 * MS) is None
    assert buffer.offer(sample(1), 99 * MS) is None
    buffer.due(100 * MS)
    assert buffer.offer(sample(1), 100 * MS) is not None


def test_with_zero_ack_timeout_nothing_is_held_back() -> None:
    buffer = DigestBuffer(DigestConfig(0, 1, 0))
    assert buffer.offer(sample(1), 0) is not None
    assert buffer.offer(sample(1), 0) is not None


def test_clearing_the_cache_releases_held_samples() -> None:
    buffer = DigestBuffer(DigestConfig(0, 1, 10**12))
    buffer.offer(sample(1), 0)
    buffer.clear_cache()
    assert buffer.offer(sample(1), 1) is not None


def test_an_unknown_ack_is_ignored() -> None:
    buffer = DigestBuffer(DigestConfig(0, 1, 10**12))
    buffer.offer(sample(1), 0)
    buffer.ack(99)
    assert buffer.offer(sample(1), 1) is None
