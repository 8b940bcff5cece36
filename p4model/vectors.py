"""Conformance vectors: parse the text format of tests/conformance/*.vec and play it on a target.

The format (documented in tests/conformance/README.md) is line based, close to p4c's STF:

    # comment
    add <table> [prio=<n>] <key>... <action>(<param>, ...)
    setdefault <table> <action>(<param>, ...)
    register_write <register> <index> <value>
    packet <port> <hex>
    expect <port> <hex>            # `*` matches any nibble; frames must match in length
    expect_nothing
    digest <kind> <src_ip> <dst_ip> <sport> <dport> <protocol> <version> <dip_ip> <dip_port>
    expect_register <register> <index> <value>

`expect`, `expect_nothing` and `digest` lines belong to the `packet` line before them: that
packet must produce exactly the listed frames (in order) and exactly the listed digests.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from p4src.contract import KIND_CODES, Digest, DigestKind

_ADD = re.compile(
    r"^(?P<table>\S+)\s+(?:prio=(?P<prio>\d+)\s+)?(?P<keys>.*?)\s*(?P<call>\S+\(.*\))$"
)
_CALL = re.compile(r"^(?P<action>[A-Za-z_][\w.]*)\((?P<params>.*)\)$")


class VectorError(ValueError):
    """A vector file is malformed."""


class VectorTarget(Protocol):
    """What a vector needs of a switch (p4model.Switch satisfies it; so can a BMv2 adapter)."""

    def table_add(
        self, table: str, action: str, keys: Sequence[str], params: Sequence[str], prio: int = 0
    ) -> int:
        """Add a table entry."""

    def table_set_default(self, table: str, action: str, params: Sequence[str]) -> None:
        """Set a default action."""

    def register_write(self, name: str, index: int | list[int], value: int) -> None:
        """Write a register cell."""

    def register_read(self, name: str, index: int | None = None) -> int | list[int]:
        """Read a register cell."""

    def process(self, ingress_port: int, frame: bytes) -> list[tuple[int, bytes]]:
        """Send one frame; the frames that leave."""

    def pop_digests(self) -> list[Digest]:
        """Digests raised since the last call."""


@dataclass(frozen=True)
class TableAdd:
    """`add`: one table entry."""

    table: str
    action: str
    keys: tuple[str, ...]
    params: tuple[str, ...]
    prio: int = 0


@dataclass(frozen=True)
class SetDefault:
    """`setdefault`: a table's default action."""

    table: str
    action: str
    params: tuple[str, ...]


@dataclass(frozen=True)
class RegisterWrite:
    """`register_write`: one register cell."""

    name: str
    index: int
    value: int


@dataclass(frozen=True)
class ExpectRegister:
    """`expect_register`: a register cell's value at this point."""

    name: str
    index: int
    value: int
    line: int


@dataclass(frozen=True)
class ExpectedFrame:
    """`expect`: an output port and a hex pattern (`*` = any nibble)."""

    port: int
    pattern: str

    def matches(self, port: int, frame: bytes) -> bool:
        """Whether (port, frame) is this expected frame."""
        actual = frame.hex()
        if port != self.port or len(actual) != len(self.pattern):
            return False
        return all(e in ("*", a) for e, a in zip(self.pattern, actual, strict=True))


@dataclass(frozen=True)
class PacketCase:
    """`packet` with its expected frames and digests."""

    port: int
    frame: bytes
    line: int
    outputs: tuple[ExpectedFrame, ...] = ()
    digests: tuple[Digest, ...] = ()


Step = TableAdd | SetDefault | RegisterWrite | ExpectRegister | PacketCase


@dataclass(frozen=True)
class Vector:
    """A parsed vector file: its name and steps in order."""

    name: str
    steps: tuple[Step, ...] = field(default_factory=tuple)


def _hex(tokens: Sequence[str], line: int, wildcard: bool) -> str:
    text = "".join(tokens).lower()
    allowed = "0123456789abcdef*" if wildcard else "0123456789abcdef"
    if not text or len(text) % 2 or any(c not in allowed for c in text):
        raise VectorError(f"line {line}: bad hex {text!r}")
    return text


def _call(text: str, line: int) -> tuple[str, tuple[str, ...]]:
    match = _CALL.match(text.strip())
    if match is None:
        raise VectorError(f"line {line}: expected action(params...), got {text!r}")
    params = tuple(p.strip() for p in match.group("params").split(",") if p.strip())
    return match.group("action"), params


def _int(text: str, line: int) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise VectorError(f"line {line}: not an integer: {text!r}") from None


def _digest(args: Sequence[str], line: int) -> Digest:
    if len(args) != 9 or args[0] not in KIND_CODES.values():
        raise VectorError(f"line {line}: digest needs kind and 8 fields, got {list(args)!r}")
    kind: DigestKind = "new_conn" if args[0] == "new_conn" else "teardown"
    src_port, dst_port, proto, version, dip_port = (_int(args[i], line) for i in (3, 4, 5, 6, 8))
    return Digest(kind, args[1], args[2], src_port, dst_port, proto, version, args[7], dip_port)


def parse_vector(text: str, name: str = "<vector>") -> Vector:
    """Parse the text of a vector file."""
    steps: list[Step] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        command, _, rest = line.partition(" ")
        args = rest.split()
        if command == "add":
            match = _ADD.match(rest.strip())
            if match is None:
                raise VectorError(f"line {number}: bad add line {raw!r}")
            action, params = _call(match.group("call"), number)
            prio = int(match.group("prio") or 0)
            keys = tuple(match.group("keys").split())
            steps.append(TableAdd(match.group("table"), action, keys, params, prio))
        elif command == "setdefault":
            table, _, call = rest.strip().partition(" ")
            steps.append(SetDefault(table, *_call(call, number)))
        elif command in ("register_write", "expect_register"):
            if len(args) != 3:
                raise VectorError(f"line {number}: {command} <name> <index> <value>")
            index, value = _int(args[1], number), _int(args[2], number)
            if command == "register_write":
                steps.append(RegisterWrite(args[0], index, value))
            else:
                steps.append(ExpectRegister(args[0], index, value, number))
        elif command == "packet":
            if len(args) < 2:
                raise VectorError(f"line {number}: packet <port> <hex>")
            frame = bytes.fromhex(_hex(args[1:], number, wildcard=False))
            steps.append(PacketCase(_int(args[0], number), frame, number))
        elif command in ("expect", "expect_nothing", "digest"):
            if not steps or not isinstance(steps[-1], PacketCase):
                raise VectorError(f"line {number}: {command} must follow a packet line")
            case = steps[-1]
            if command == "expect":
                if len(args) < 2:
                    raise VectorError(f"line {number}: expect <port> <hex>")
                frame_pattern = ExpectedFrame(_int(args[0], number), _hex(args[1:], number, True))
                steps[-1] = _replace_outputs(case, (*case.outputs, frame_pattern))
            elif command == "digest":
                steps[-1] = _replace_digests(case, (*case.digests, _digest(args, number)))
        else:
            raise VectorError(f"line {number}: unknown command {command!r}")
    return Vector(name, tuple(steps))


def _replace_outputs(case: PacketCase, outputs: tuple[ExpectedFrame, ...]) -> PacketCase:
    return PacketCase(case.port, case.frame, case.line, outputs, case.digests)


def _replace_digests(case: PacketCase, digests: tuple[Digest, ...]) -> PacketCase:
    return PacketCase(case.port, case.frame, case.line, case.outputs, digests)


def load_vector(path: Path) -> Vector:
    """Read and parse one .vec file."""
    return parse_vector(path.read_text(encoding="utf-8"), path.name)


def play_vector(vector: Vector, target: VectorTarget) -> list[str]:
    """Run every step on `target`; return a description of each mismatch (empty: all passed)."""
    failures: list[str] = []
    for step in vector.steps:
        if isinstance(step, TableAdd):
            target.table_add(step.table, step.action, list(step.keys), list(step.params), step.prio)
        elif isinstance(step, SetDefault):
            target.table_set_default(step.table, step.action, list(step.params))
        elif isinstance(step, RegisterWrite):
            target.register_write(step.name, step.index, step.value)
        elif isinstance(step, ExpectRegister):
            actual = target.register_read(step.name, step.index)
            if actual != step.value:
                failures.append(
                    f"{vector.name}:{step.line}: {step.name}[{step.index}] = {actual!r}, "
                    f"expected {step.value}"
                )
        else:
            failures.extend(_check_packet(vector.name, step, target))
    return failures


def _check_packet(name: str, case: PacketCase, target: VectorTarget) -> list[str]:
    outputs = target.process(case.port, case.frame)
    digests = target.pop_digests()
    where = f"{name}:{case.line}"
    failures = []
    if len(outputs) != len(case.outputs) or not all(
        e.matches(port, frame) for e, (port, frame) in zip(case.outputs, outputs, strict=False)
    ):
        got = [(port, frame.hex()) for port, frame in outputs]
        want = [(e.port, e.pattern) for e in case.outputs]
        failures.append(f"{where}: frames {got!r}, expected {want!r}")
    if digests != list(case.digests):
        failures.append(f"{where}: digests {digests!r}, expected {list(case.digests)!r}")
    return failures
