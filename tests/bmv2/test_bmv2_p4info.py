"""The model's P4Info against p4c's for p4src/loadbalancer.p4: equal but for IDs and annotations."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from finsy.proto import p4i
from google.protobuf import text_format

from p4model import Switch
from p4model.p4info import build_p4info, id_prefix_errors, program_shape, shape_differences
from p4src.contract import PROGRAM_PATH

pytestmark = [
    pytest.mark.bmv2,
    pytest.mark.skipif(shutil.which("p4c") is None, reason="not on PATH: p4c"),
]


def test_the_model_p4info_matches_p4c(tmp_path: Path) -> None:
    out = tmp_path / "lb.p4info.txt"
    command = ["p4c", "--target", "bmv2", "--arch", "v1model", "-o", str(tmp_path)]
    subprocess.run(
        [*command, "--p4runtime-files", str(out), str(PROGRAM_PATH)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    theirs = text_format.Parse(out.read_text(), p4i.P4Info())
    switch = Switch()
    ours = build_p4info(switch.tables(), switch.registers())
    assert shape_differences(program_shape(ours), program_shape(theirs)) == []
    assert id_prefix_errors(theirs) == []  # p4c's IDs obey the rules ours are checked against
