"""The load feed's allow-list file: keys bound to DIPs, every problem reported with its place."""

from __future__ import annotations

import pytest

from controller.allowlist import parse_allow_list
from controller.config import ConfigError
from controller.validation import is_local_endpoint

KEY = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
OTHER = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"


def test_each_key_may_report_only_for_its_dips() -> None:
    allowed = parse_allow_list(
        f'[[agent]]\nname = "web1"\nkey = "{KEY}"\ndips = ["10.0.2.1:8080", "10.0.2.1:53"]\n'
        f'[[agent]]\nkey = "{OTHER}"\ndips = ["10.0.2.2:8080"]\n'
    )
    assert allowed.permits(KEY, "10.0.2.1:8080") and allowed.permits(KEY, "10.0.2.1:53")
    assert not allowed.permits(KEY, "10.0.2.2:8080")
    assert not allowed.permits("unknown", "10.0.2.1:8080")
    assert allowed.agents[OTHER].name == "agent[1]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[agent]]\nkey = 'short'\ndips = ['10.0.2.1:80']", "agent[0].key: 'short' is not"),
        (f"[[agent]]\nkey = '{KEY}'\ndips = []", "agent[0].dips: [] is not a non-empty list"),
        (f"[[agent]]\nkey = '{KEY}'\ndips = ['10.0.2.1:\u00b2']", "agent[0].dips[0]:"),
        (f"[[agent]]\nkey = '{KEY}'\ndips = [5]", "agent[0].dips[0]: 5 is not a DIP"),
        (f"[[agent]]\nkey = '{KEY}'\ndips = ['10.0.2.1:80']\nrole = 1", "agent[0].role: unknown"),
        (
            f"[[agent]]\nkey = '{KEY}'\ndips = ['10.0.2.1:80']\n" * 2,
            "agent[1].key: '" + KEY + "' is listed twice",
        ),
        ("agent = 5", "agent: 5 is not an array"),
        ("keys = []", "unknown keys ['keys']"),
        ("a = " + "[" * 5000 + "]" * 5000, "TOML syntax"),
    ],
)
def test_bad_allow_lists_are_refused_with_the_place(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_allow_list(text)
    assert any(expected in problem for problem in info.value.problems), info.value.problems


@pytest.mark.parametrize(
    ("endpoint", "local"),
    [
        ("tcp://127.0.0.1:5555", True),
        ("tcp://127.9.9.9:*", True),
        ("tcp://[::1]:5555", True),
        ("tcp://localhost:5555", True),
        ("ipc:///run/p4lb/load.sock", True),
        ("inproc://load", True),
        ("tcp://0.0.0.0:5555", False),
        ("tcp://*:5555", False),
        ("tcp://eth0:5555", False),
        ("tcp://10.0.0.1:5555", False),
        ("tcp://[::]:5555", False),
    ],
)
def test_only_loopback_ipc_and_inproc_count_as_local(endpoint: str, local: bool) -> None:
    assert is_local_endpoint(endpoint) is local
