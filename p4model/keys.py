"""String formats of the runtime API (p4-utils / BMv2 CLI): values, match keys, names.

Values: IPv4 dotted quads, MACs `aa:bb:cc:dd:ee:ff`, or anything `int(s, 0)` reads. Match keys:
exact `v`, lpm `v/len`, ternary `v&&&mask`. Names may be given in full (`LbIngress.conn_table`)
or as any unique dotted suffix (`conn_table`), as p4-utils allows.
"""

from __future__ import annotations

import functools
import re
import socket
from collections.abc import Iterable

from p4model.errors import SwitchError

_MAC = re.compile(r"^[0-9a-fA-F]{1,2}(:[0-9a-fA-F]{1,2}){5}$")
_IPV4 = re.compile(r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$")


def _ipv4(text: str) -> int:
    """A dotted quad's value (as `ipaddress` reads it: no octet above 255, no leading zeros),
    without ipaddress's cost on the control path."""
    value = 0
    for octet in text.split("."):
        if len(octet) > 1 and octet[0] == "0":
            raise ValueError(f"leading zero in {text!r}")
        number = int(octet)
        if number > 255:
            raise ValueError(f"octet {number} > 255 in {text!r}")
        value = value << 8 | number
    return value


def is_decimal(text: str) -> bool:
    """Whether `text` is ASCII digits only (`str.isdigit()` alone also passes "²", which `int()`
    refuses, and other scripts' digits, which `int()` reads)."""
    return text.isascii() and text.isdigit()


def parse_value(text: str, width: int, what: str) -> int:
    """Parse one value of `width` bits; raise SwitchError if malformed or too wide."""
    if not isinstance(text, str):
        raise SwitchError(f"{what}: expected a string, got {text!r}")
    return _parse_text(text, width, what)


@functools.lru_cache(maxsize=8192)
def _parse_text(text: str, width: int, what: str) -> int:
    # Cached: a control plane writes the same addresses and ports over and over.
    stripped = text.strip()
    if not stripped.isascii():  # int() would read other scripts' digits
        raise SwitchError(f"{what}: cannot parse {text!r} as a value")
    try:
        if _IPV4.match(stripped):
            value = _ipv4(stripped)
        elif _MAC.match(stripped):
            value = int(stripped.replace(":", ""), 16)
        else:
            value = int(stripped, 0)
    except ValueError:
        raise SwitchError(f"{what}: cannot parse {text!r} as a value") from None
    if value < 0 or value >> width:
        raise SwitchError(f"{what}: {text!r} does not fit in {width} bits")
    return value


def parse_lpm(text: str, width: int, what: str) -> tuple[int, int]:
    """Parse `value/prefix_len`; return (value masked to the prefix, prefix_len)."""
    value_text, sep, len_text = text.partition("/")
    if not sep:
        raise SwitchError(f"{what}: lpm key must be 'value/prefix_len', got {text!r}")
    value = parse_value(value_text, width, what)
    if not is_decimal(len_text) or len(len_text) > 3:
        raise SwitchError(f"{what}: bad prefix length in {text!r}")
    prefix_len = int(len_text)
    if not 0 <= prefix_len <= width:
        raise SwitchError(f"{what}: prefix length {prefix_len} not in 0..{width} in {text!r}")
    return value & prefix_mask(prefix_len, width), prefix_len


def parse_ternary(text: str, width: int, what: str) -> tuple[int, int]:
    """Parse `value&&&mask`; return (value & mask, mask)."""
    value_text, sep, mask_text = text.partition("&&&")
    if not sep:
        raise SwitchError(f"{what}: ternary key must be 'value&&&mask', got {text!r}")
    mask = parse_value(mask_text, width, what)
    return parse_value(value_text, width, what) & mask, mask


def prefix_mask(prefix_len: int, width: int) -> int:
    """The mask of the first `prefix_len` bits of a `width`-bit field."""
    return ((1 << prefix_len) - 1) << (width - prefix_len)


@functools.lru_cache(maxsize=1 << 16)
def format_ipv4(value: int) -> str:
    """A 32-bit value as a dotted quad (cached: a digest formats three, mostly seen before)."""
    return socket.inet_ntoa(value.to_bytes(4, "big"))  # twice as fast as str.format


class NameIndex:
    """Resolves full names and their unique dotted suffixes (`a.b.c` answers to `b.c` and `c`)."""

    def __init__(self, kind: str, names: Iterable[str]) -> None:
        """Index `names` (full names) of things of `kind` (for error messages)."""
        self._kind = kind
        self._lookup: dict[str, str] = {}
        ambiguous: set[str] = set()
        for name in names:
            self._lookup[name] = name
        for name in list(self._lookup):
            parts = name.split(".")
            for i in range(1, len(parts)):
                suffix = ".".join(parts[i:])
                if suffix in self._lookup and self._lookup[suffix] != name:
                    ambiguous.add(suffix)
                else:
                    self._lookup[suffix] = name
        for suffix in ambiguous:
            if self._lookup.get(suffix) != suffix:
                self._lookup.pop(suffix, None)

    def resolve(self, name: str) -> str:
        """The full name for `name`; SwitchError if unknown or ambiguous."""
        try:
            return self._lookup[name]
        except (KeyError, TypeError):
            known = sorted(n for n in self._lookup if "." not in n)
            raise SwitchError(
                f"unknown {self._kind} {name!r} (known: {', '.join(known)})"
            ) from None
