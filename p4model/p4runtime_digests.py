"""Digest lists for P4Runtime: buffering, list ids and the cache of unacknowledged samples
(the DigestEntry rules of the P4Runtime spec; pure, `now_ns` is passed in).

A sample waits in the buffer until `max_list_size` distinct samples are there or the first has
waited `max_timeout_ns` (0 or a size of 1: every sample goes at once). A sent list stays in the
cache until the client acknowledges it or `ack_timeout_ns` passes; meanwhile a sample equal to
one in the cache (or already buffered) is dropped, so a flow's repeated packets do not flood the
stream. With `ack_timeout_ns` 0 the cache stays empty. `encode_digest` gives a sample's P4Data.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass

from finsy.proto import p4d

from p4model.p4runtime_codec import encode_bits
from p4src.contract import KIND_CODES, Digest

_KIND_NUMBERS = {kind: code for code, kind in KIND_CODES.items()}


@dataclass(frozen=True)
class DigestConfig:
    """A DigestEntry's config."""

    max_timeout_ns: int
    max_list_size: int
    ack_timeout_ns: int


@dataclass(frozen=True)
class ReadyList:
    """A digest list to send now."""

    list_id: int
    samples: tuple[Digest, ...]


class DigestBuffer:
    """The buffer and cache of one digest instance."""

    def __init__(self, config: DigestConfig) -> None:
        """An empty buffer with this config."""
        self.config = config
        self._buffer: list[Digest] = []
        self._buffered: set[Digest] = set()
        self._first_at = 0
        self._next_list_id = 1
        self._sent: dict[int, tuple[int, tuple[Digest, ...]]] = {}  # list id -> (sent at, samples)
        self._cached: Counter[Digest] = Counter()

    def offer(self, sample: Digest, now_ns: int) -> ReadyList | None:
        """Take one sample from the data plane; the list to send if the buffer became full."""
        if sample in self._buffered or sample in self._cached:
            return None
        if not self._buffer:
            self._first_at = now_ns
        self._buffer.append(sample)
        self._buffered.add(sample)
        size, timeout = self.config.max_list_size, self.config.max_timeout_ns
        if timeout == 0 or (size > 0 and len(self._buffer) >= size):
            return self._flush(now_ns)
        return None

    def due(self, now_ns: int) -> ReadyList | None:
        """Expire old cache entries; the buffered list if its first sample waited long enough."""
        ack_timeout = self.config.ack_timeout_ns
        for list_id, (sent_at, _) in list(self._sent.items()):
            if now_ns - sent_at >= ack_timeout:
                self.ack(list_id)
        if self._buffer and now_ns - self._first_at >= self.config.max_timeout_ns:
            return self._flush(now_ns)
        return None

    def next_deadline(self) -> int | None:
        """When `due` has work next (ns on the caller's clock), or None."""
        times = [sent_at + self.config.ack_timeout_ns for sent_at, _ in self._sent.values()]
        if self._buffer:
            times.append(self._first_at + self.config.max_timeout_ns)
        return min(times) if times else None

    def ack(self, list_id: int) -> None:
        """The client acknowledged a list (unknown or expired ids are ignored)."""
        sent = self._sent.pop(list_id, None)
        if sent is not None:
            self._cached.subtract(sent[1])
            for sample in sent[1]:
                if self._cached[sample] <= 0:
                    del self._cached[sample]

    def clear_cache(self) -> None:
        """Forget every unacknowledged list (the primary changed)."""
        self._sent.clear()
        self._cached.clear()

    def _flush(self, now_ns: int) -> ReadyList:
        samples = tuple(self._buffer)
        self._buffer.clear()
        self._buffered.clear()
        list_id = self._next_list_id
        self._next_list_id += 1
        if self.config.ack_timeout_ns > 0:
            self._sent[list_id] = (now_ns, samples)
            self._cached.update(samples)
        return ReadyList(list_id, samples)


def encode_digest(digest: Digest) -> p4d.P4Data:
    """One digest sample as the P4Data struct of `digest_t` (members in program order)."""
    values = (
        _KIND_NUMBERS[digest.kind],
        int(ipaddress.IPv4Address(digest.src_ip)),
        int(ipaddress.IPv4Address(digest.dst_ip)),
        digest.src_port,
        digest.dst_port,
        digest.protocol,
        digest.version,
        int(ipaddress.IPv4Address(digest.dip_ip)),
        digest.dip_port,
    )
    data = p4d.P4Data()
    for value in values:
        data.struct.members.add().bitstring = encode_bits(value)
    return data
