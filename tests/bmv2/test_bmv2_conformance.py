"""The BMv2 tier: compile p4src/loadbalancer.p4 with p4c and play every conformance vector on
simple_switch (skipped unless `p4c` and `simple_switch` are on PATH)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bmv2_harness import Bmv2Error, Bmv2Switch, Compiled, add_bmv2_python_path, compile_once

from p4model.vectors import PacketCase, load_vector, play_vector
from p4src.contract import EPOCH_BITS, load_settings

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ROOT / "p4src" / "loadbalancer.p4"
VECTORS = sorted((ROOT / "tests" / "conformance").glob("*.vec"))
MISSING = [tool for tool in ("p4c", "simple_switch") if shutil.which(tool) is None]
add_bmv2_python_path()
NO_PYTHON = [m for m in ("runtime_CLI", "bm_runtime", "thrift") if not importlib.util.find_spec(m)]

pytestmark = [
    pytest.mark.bmv2,
    pytest.mark.skipif(bool(MISSING), reason=f"not on PATH: {', '.join(MISSING)}"),
    pytest.mark.skipif(bool(NO_PYTHON), reason=f"BMv2 Python modules missing: {NO_PYTHON}"),
]

#: DESIGN §2 contract: table -> (key match types in order, actions).
TABLES = {
    "conn_table": (["exact"] * 5, {"rewrite_dst", "NoAction"}),
    "vip_table": (["exact"] * 3, {"set_pool", "NoAction"}),
    "affinity_table": (["exact"] * 4, {"rewrite_dst", "NoAction"}),
    "version_config": ([], {"set_versions"}),
    "dip_table": (["exact", "exact", "lpm"], {"rewrite_dst", "drop"}),
    "dip_reverse": (["exact"] * 3, {"rewrite_src", "NoAction"}),
    "ipv4_lpm": (["lpm"], {"forward", "drop"}),
}


@pytest.fixture(scope="session")
def compiled() -> Compiled:
    """The program compiled once per session."""
    result = compile_once(PROGRAM)
    assert result.returncode == 0, result.output
    return result


@pytest.fixture(scope="session")
def program(compiled: Compiled) -> dict[str, Any]:
    """The BMv2 JSON."""
    loaded: dict[str, Any] = json.loads(compiled.json_path.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture
def switch(compiled: Compiled, tmp_path: Path) -> Iterator[Bmv2Switch]:
    """A fresh simple_switch (empty tables, zeroed registers) for one test."""
    with Bmv2Switch(compiled.json_path, tmp_path) as sw:
        yield sw


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def test_compiles_without_warnings(compiled: Compiled) -> None:
    """p4c accepts the program and prints no warning."""
    assert "warning" not in compiled.output.lower(), compiled.output


@pytest.mark.parametrize("table", sorted(TABLES))
def test_table_contract(program: dict[str, Any], table: str) -> None:
    """Each contract table exists with its key match kinds in order and its actions."""
    tables = {_short(t["name"]): t for pipe in program["pipelines"] for t in pipe["tables"]}
    kinds, actions = TABLES[table]
    assert [k["match_type"] for k in tables[table]["key"]] == kinds
    assert {_short(a) for a in tables[table]["actions"]} == actions


def test_register_contract(program: dict[str, Any]) -> None:
    """The only registers are the Bloom slots, of epoch-wide cells, BLOOM_BITS each."""
    settings = load_settings()
    registers = {_short(r["name"]): (r["bitwidth"], r["size"]) for r in program["register_arrays"]}
    assert registers == {
        f"bloom_{slot}": (EPOCH_BITS, settings.bloom_bits) for slot in range(settings.version_slots)
    }


def test_version_config_default_is_settable(program: dict[str, Any]) -> None:
    """version_config's default action is set_versions and not const (the controller writes it)."""
    tables = {_short(t["name"]): t for pipe in program["pipelines"] for t in pipe["tables"]}
    table = tables["version_config"]
    assert [_short(a) for a in table["actions"]] == ["set_versions"]
    assert table["default_entry"]["action_const"] is False
    assert len(table["default_entry"]["action_data"]) == 5


def test_conn_table_supports_ageing(program: dict[str, Any]) -> None:
    """conn_table has support_timeout (the controller sets entry timeouts on it)."""
    tables = {_short(t["name"]): t for pipe in program["pipelines"] for t in pipe["tables"]}
    assert tables["conn_table"]["support_timeout"] is True


def test_vectors_exist() -> None:
    """The vector files are present (a glob that finds nothing would pass vacuously)."""
    assert len(VECTORS) >= 7


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_vector_on_bmv2(switch: Bmv2Switch, path: Path) -> None:
    """Every packet of the vector leaves BMv2 as expected, with exactly the expected digests."""
    vector = load_vector(path)
    assert any(isinstance(step, PacketCase) for step in vector.steps)
    failures = play_vector(vector, switch)
    assert not failures, "\n".join(failures)


def test_harness_sees_a_drop_and_a_frame(switch: Bmv2Switch) -> None:
    """The harness reports no frame for an unrouted packet and one for a routed one."""
    frame = bytes.fromhex(
        "00010a00010100000a00010208004500001c000100004011656e0a0001020a0002649c40005000080000"
    )
    assert switch.process(1, frame) == []
    switch.table_add("ipv4_lpm", "forward", ["10.0.2.0/24"], ["2", "00:00:00:00:00:01", "0"])
    [(port, out)] = switch.process(1, frame)
    assert port == 2
    assert out[:6] == bytes(6) and out[22] == 0x3F  # new dst MAC, TTL 64 -> 63
    assert switch.pop_digests() == []


def test_harness_reports_bad_requests(switch: Bmv2Switch) -> None:
    """Unknown tables and duplicate entries raise Bmv2Error, as the model raises SwitchError."""
    with pytest.raises(Bmv2Error):
        switch.table_add("no_such_table", "drop", [], [])
    switch.table_add("vip_table", "set_pool", ["10.0.0.100", "80", "6"], ["0", "0"])
    with pytest.raises(Bmv2Error):
        switch.table_add("vip_table", "set_pool", ["10.0.0.100", "80", "6"], ["1", "0"])
