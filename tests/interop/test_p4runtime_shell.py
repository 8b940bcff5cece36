"""Interop: p4runtime-shell 0.0.6, a P4Runtime client nobody here wrote, against p4lb-switch.

It pins protobuf<3.21 and p4runtime 1.4.1, which cannot share our venv: it lives in its own
(`.venv-p4sh`, made by `make p4sh`, which `make test` runs; or the one P4LB_P4SH_PYTHON names)
and runs tests/interop/p4sh_client.py as a subprocess against a p4lb-switch process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import text_format

from p4model import Switch
from p4model.p4info import build_p4info

ROOT = Path(__file__).resolve().parents[2]
P4SH_PYTHON = Path(os.environ.get("P4LB_P4SH_PYTHON", ROOT / ".venv-p4sh" / "bin" / "python"))
SCRIPT = Path(__file__).resolve().parent / "p4sh_client.py"
LIMIT = 120.0

pytestmark = pytest.mark.skipif(
    not P4SH_PYTHON.exists(), reason=f"no p4runtime-shell venv at {P4SH_PYTHON} (make p4sh)"
)


@pytest.fixture
def switch_address() -> Iterator[str]:
    """A p4lb-switch process with P4Runtime on an ephemeral loopback port; its address."""
    process = subprocess.Popen(
        [sys.executable, "-m", "p4model", "--p4runtime", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the ready line, or "" if it died
        assert line.startswith("p4lb-switch ready"), f"p4lb-switch did not start: {line!r}"
        fields = dict(f.split("=", 1) for f in line.split()[2:])
        yield fields["p4runtime"]
    finally:
        process.terminate()
        process.wait(LIMIT)


def test_p4runtime_shell_sets_the_pipeline_writes_reads_and_is_refused_as_backup(
    switch_address: str, tmp_path: Path
) -> None:
    switch = Switch()
    p4info = tmp_path / "lb.p4info.txt"
    p4info.write_text(
        text_format.MessageToString(build_p4info(switch.tables(), switch.registers()))
    )
    device_config = tmp_path / "lb.json"
    device_config.write_text("{}")  # BMv2 JSON would go here; p4lb-switch ignores it
    run = subprocess.run(
        [str(P4SH_PYTHON), str(SCRIPT), switch_address, str(p4info), str(device_config)],
        capture_output=True,
        text=True,
        timeout=LIMIT,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    before, _, after = run.stdout.partition("second client:")
    assert "not the primary" not in before
    assert "You are not the primary client" in after  # the shell read our backup advisory
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert "vip_table" in result["tables"] and "conn_table" in result["tables"]
    assert result["read_match"] == [["0a000064", "50", "06"]]  # canonical: port 80 is 0x50
    assert result["read_params"] == [["07", "01"]]
    assert result["backup_write"] == "PERMISSION_DENIED"
    assert result["after_delete"] == 0
