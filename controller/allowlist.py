"""The load feed's CURVE allow-list: which agent keys may report, and for which DIPs (pure).

File format (TOML), one `[[agent]]` table per agent key::

    # p4lb load-feed allow-list
    [[agent]]
    name = "web1"                                   # optional, shown in logs
    key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"  # the agent's CURVE public key (Z85)
    dips = ["10.0.2.1:8080"]                        # the DIPs this key may report for

`key` is the `public-key` value of the agent's `NAME.key` file (`p4lb-agent --make-keys` prints
it). A key may appear once; a DIP may be bound to several keys (e.g. while rotating keys).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from agent.wire import ProtocolError, parse_dip
from controller.config import ConfigError

Z85_ALPHABET: Final = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
)
Z85_KEY_LENGTH: Final = 40
"""A 32-byte CURVE key in Z85."""


@dataclass(frozen=True)
class AllowedAgent:
    """One `[[agent]]` entry."""

    name: str
    """Label for logs (defaults to `agent[i]`)."""
    key: str
    """The agent's CURVE public key, Z85."""
    dips: frozenset[str]
    """DIPs ("ip:port") this key may report for."""


@dataclass(frozen=True)
class AllowList:
    """Agent keys and the DIPs each may report for."""

    agents: Mapping[str, AllowedAgent]
    """By Z85 public key."""

    def permits(self, key: str, dip: str) -> bool:
        """Whether the agent holding `key` may report for `dip`."""
        agent = self.agents.get(key)
        return agent is not None and dip in agent.dips


def load_allow_list(path: Path) -> AllowList:
    """Read and validate an allow-list file; raise ConfigError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    return parse_allow_list(text, str(path))


def parse_allow_list(text: str, source: str = "<allow-list>") -> AllowList:
    """Validate allow-list TOML text; raise ConfigError listing every problem."""
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ConfigError([f"{source}: TOML syntax: {exc}"]) from None
    problems: list[str] = []
    agents: dict[str, AllowedAgent] = {}
    unknown = sorted(set(data) - {"agent"})
    if unknown:
        problems.append(f"{source}: unknown keys {unknown!r} (expected [[agent]] tables)")
    raw = data.get("agent", [])
    if not isinstance(raw, list):
        problems.append(f"{source}: agent: {raw!r} is not an array of [[agent]] tables")
        raw = []
    for i, item in enumerate(raw):
        agent = _agent(f"{source}: agent[{i}]", item, problems)
        if agent is None:
            continue
        if agent.key in agents:
            problems.append(f"{source}: agent[{i}].key: {agent.key!r} is listed twice")
        agents[agent.key] = agent
    if problems:
        raise ConfigError(problems)
    return AllowList(agents)


def _agent(where: str, item: Any, problems: list[str]) -> AllowedAgent | None:
    if not isinstance(item, dict):
        problems.append(f"{where}: {item!r} is not a table")
        return None
    before = len(problems)
    for key in sorted(set(item) - {"name", "key", "dips"}):
        problems.append(f"{where}.{key}: unknown key")
    name = item.get("name", where.rpartition(": ")[2])
    if not isinstance(name, str) or not name:
        problems.append(f"{where}.name: {name!r} is not a non-empty string")
    key = item.get("key")
    if not (isinstance(key, str) and len(key) == Z85_KEY_LENGTH and set(key) <= Z85_ALPHABET):
        problems.append(f"{where}.key: {key!r} is not a Z85 CURVE public key (40 characters)")
    dips = item.get("dips")
    if not isinstance(dips, list) or not dips:
        problems.append(f"{where}.dips: {dips!r} is not a non-empty list of 'ip:port'")
        dips = []
    for j, dip in enumerate(dips):
        try:
            parse_dip(dip if isinstance(dip, str) else repr(dip))
        except ProtocolError:
            problems.append(f"{where}.dips[{j}]: {dip!r} is not a DIP 'a.b.c.d:port'")
    if len(problems) != before:
        return None
    return AllowedAgent(str(name), str(key), frozenset(dips))
