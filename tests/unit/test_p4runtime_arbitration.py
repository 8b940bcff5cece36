"""Primary/backup arbitration: who is primary, who is told what, what is refused."""

from __future__ import annotations

import pytest

from p4model.p4runtime_arbitration import Advisory, Arbitration
from p4model.p4runtime_codec import Code, P4RuntimeError


def test_the_first_client_with_an_id_is_primary() -> None:
    arb = Arbitration()
    assert arb.update(1, "", 10) == [Advisory(1, "", 10, Code.OK)]
    assert arb.is_primary("", 10) and not arb.is_primary("", 9) and not arb.is_primary("", None)


def test_a_lower_client_is_told_only_itself_that_it_is_a_backup() -> None:
    arb = Arbitration()
    arb.update(1, "", 10)
    assert arb.update(2, "", 5) == [Advisory(2, "", 10, Code.ALREADY_EXISTS)]


def test_a_higher_client_takes_over_and_everyone_is_told() -> None:
    arb = Arbitration()
    arb.update(1, "", 10)
    assert arb.update(2, "", 20) == [
        Advisory(1, "", 20, Code.ALREADY_EXISTS),
        Advisory(2, "", 20, Code.OK),
    ]


def test_when_the_primary_leaves_the_next_highest_is_promoted() -> None:
    arb = Arbitration()
    arb.update(1, "", 10)
    arb.update(2, "", 5)
    arb.update(3, "", None)
    assert arb.remove(1) == [Advisory(2, "", 5, Code.OK), Advisory(3, "", 5, Code.ALREADY_EXISTS)]
    assert arb.primary("") == 2


def test_a_backup_leaving_tells_nobody() -> None:
    arb = Arbitration()
    arb.update(1, "", 10)
    arb.update(2, "", 5)
    assert arb.remove(2) == []
    assert arb.remove(7) == []


def test_without_any_election_id_there_is_no_primary() -> None:
    arb = Arbitration()
    assert arb.update(1, "", None) == [Advisory(1, "", None, Code.NOT_FOUND)]
    arb.update(2, "", 4)
    assert arb.remove(2) == [Advisory(1, "", 4, Code.NOT_FOUND)]


def test_roles_are_separate() -> None:
    arb = Arbitration()
    arb.update(1, "a", 10)
    assert arb.update(2, "b", 5) == [Advisory(2, "b", 5, Code.OK)]
    assert sorted(arb.primaries()) == [1, 2]


def test_a_duplicate_id_in_the_role_is_invalid_and_a_role_change_refused() -> None:
    arb = Arbitration()
    arb.update(1, "", 10)
    with pytest.raises(P4RuntimeError) as caught:
        arb.update(2, "", 10)
    assert caught.value.code is Code.INVALID_ARGUMENT
    with pytest.raises(P4RuntimeError) as caught:
        arb.update(1, "other", 10)
    assert caught.value.code is Code.FAILED_PRECONDITION
    assert arb.update(1, "", 10) == [Advisory(1, "", 10, Code.OK)]  # re-sending is fine


def test_a_primary_lowering_its_id_below_a_backup_is_demoted() -> None:
    arb = Arbitration()
    arb.update(1, "", 10)
    arb.update(2, "", 5)
    advisories = arb.update(1, "", 3)
    assert Advisory(2, "", 5, Code.OK) in advisories and arb.primary("") == 2
