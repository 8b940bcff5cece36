"""Primary/backup arbitration of P4Runtime clients, per role (pure: streams are plain keys).

The live stream with the highest election id of a role is its primary, as in BMv2's P4Runtime
server (p4lang/PI): when the primary's stream ends the next highest becomes primary and every
stream of the role is told. (P4Runtime 1.1+ says the switch then stays without primary until a
client claims an id at least as high as any seen; BMv2, our field target, promotes, and our
controller is written against BMv2.) Advisories follow the spec: the primary gets OK, backups
ALREADY_EXISTS, and NOT_FOUND when there is no primary; `election_id` is the primary's, else the
highest seen, else unset. A stream without an election id is a backup that may read.
"""

from __future__ import annotations

from dataclasses import dataclass

from p4model.p4runtime_codec import Code, P4RuntimeError


@dataclass(frozen=True)
class Advisory:
    """A MasterArbitrationUpdate to send on one stream."""

    stream: int
    role: str
    election_id: int | None
    code: Code


@dataclass
class _Client:
    role: str
    election_id: int | None


class Arbitration:
    """The live streams of one device and who is primary for each role."""

    def __init__(self) -> None:
        """No streams yet."""
        self._clients: dict[int, _Client] = {}
        self._highest: dict[str, int] = {}

    def update(self, stream: int, role: str, election_id: int | None) -> list[Advisory]:
        """Handle a MasterArbitrationUpdate from `stream`; the advisories to send.

        Raises P4RuntimeError: FAILED_PRECONDITION when a stream changes role, INVALID_ARGUMENT
        when another live stream of the role holds the same election id."""
        known = self._clients.get(stream)
        if known is not None and known.role != role:
            raise P4RuntimeError(
                Code.FAILED_PRECONDITION,
                f"this stream has role {known.role!r}; open a new stream for role {role!r}",
            )
        if election_id is not None and any(
            c.role == role and c.election_id == election_id
            for s, c in self._clients.items()
            if s != stream
        ):
            raise P4RuntimeError(
                Code.INVALID_ARGUMENT,
                f"election id {election_id} is already used by another client of role {role!r}",
            )
        before = self.primary(role)
        if known is None:
            self._clients[stream] = _Client(role, election_id)
        else:
            known.election_id = election_id
        if election_id is not None:
            self._highest[role] = max(self._highest.get(role, election_id), election_id)
        after = self.primary(role)
        if before != after:
            return self._advise_all(role)
        return [self._advice(stream, role, after)]

    def remove(self, stream: int) -> list[Advisory]:
        """The stream ended; the advisories to send to the others (all of its role, when it was
        their primary)."""
        client = self._clients.get(stream)
        if client is None:
            return []
        was_primary = self.primary(client.role) == stream
        del self._clients[stream]
        return self._advise_all(client.role) if was_primary else []

    def primary(self, role: str) -> int | None:
        """The primary stream of `role`, or None."""
        candidates = [
            (c.election_id, stream)
            for stream, c in self._clients.items()
            if c.role == role and c.election_id is not None
        ]
        return max(candidates)[1] if candidates else None

    def primaries(self) -> list[int]:
        """The primary stream of every role that has one."""
        roles = {c.role for c in self._clients.values()}
        return [s for s in (self.primary(r) for r in sorted(roles)) if s is not None]

    def is_primary(self, role: str, election_id: int | None) -> bool:
        """Whether a Write with this role and election id comes from the primary."""
        stream = self.primary(role)
        return (
            election_id is not None
            and stream is not None
            and self._clients[stream].election_id == election_id
        )

    def is_live(self, stream: int) -> bool:
        """Whether the stream has sent an accepted arbitration update."""
        return stream in self._clients

    def _advise_all(self, role: str) -> list[Advisory]:
        primary = self.primary(role)
        streams = sorted(s for s, c in self._clients.items() if c.role == role)
        return [self._advice(s, role, primary) for s in streams]

    def _advice(self, stream: int, role: str, primary: int | None) -> Advisory:
        if primary is None:
            return Advisory(stream, role, self._highest.get(role), Code.NOT_FOUND)
        election_id = self._clients[primary].election_id
        code = Code.OK if stream == primary else Code.ALREADY_EXISTS
        return Advisory(stream, role, election_id, code)
