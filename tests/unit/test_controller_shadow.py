"""Shadow tables: plan() is the minimal diff, and applying it reproduces the desired slot."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from controller.core.shadow import BucketKey, DipShadow, DipTarget, WriteKind

TARGETS = [DipTarget("10.1.0.1", 80), DipTarget("10.1.0.2", 80), DipTarget("10.1.0.3", 81)]
keys = st.builds(
    BucketKey, st.integers(0, 2), st.integers(0, 7).map(lambda v: v << 13), st.integers(0, 3)
)
contents = st.dictionaries(keys, st.sampled_from(TARGETS), max_size=12)


def apply_all(shadow: DipShadow, slot: int, desired: dict[BucketKey, DipTarget], start: int) -> int:
    handle = start
    for write in shadow.plan(slot, desired):
        handle += 1
        shadow.applied(write, handle if write.kind is WriteKind.ADD else None)
    return handle


@given(contents, contents)
def test_plan_is_minimal_and_reaches_the_desired_content(
    before: dict[BucketKey, DipTarget], after: dict[BucketKey, DipTarget]
) -> None:
    shadow = DipShadow(4)
    apply_all(shadow, 2, before, 0)
    writes = shadow.plan(2, after)
    changed = sum(1 for k in before.keys() & after.keys() if before[k] != after[k])
    assert len(writes) == len(before.keys() ^ after.keys()) + changed
    assert [w.kind for w in writes if w.kind is WriteKind.DELETE] == [
        w.kind for w in writes[: sum(w.kind is WriteKind.DELETE for w in writes)]
    ]
    apply_all(shadow, 2, after, 100)
    assert shadow.content(2) == after
    assert shadow.content(1) == {}


def test_modify_keeps_the_handle_and_delete_uses_it() -> None:
    shadow = DipShadow(4)
    key_a, key_b = BucketKey(0, 0, 1), BucketKey(0, 0x8000, 1)
    apply_all(shadow, 1, {key_a: TARGETS[0], key_b: TARGETS[1]}, 10)
    handles = {k: e.handle for k, e in shadow.entries(1).items()}
    writes = shadow.plan(1, {key_a: TARGETS[2]})
    assert [(w.kind, w.handle) for w in writes] == [
        (WriteKind.DELETE, handles[key_b]),
        (WriteKind.MODIFY, handles[key_a]),
    ]
    assert writes[1].match_keys() == ("1", "0", "0/1")
    assert writes[1].action_params() == ("10.1.0.3", "81")


def test_failed_write_leaves_the_shadow_unless_the_handle_is_gone() -> None:
    shadow = DipShadow(4)
    key = BucketKey(0, 0, 0)
    apply_all(shadow, 0, {key: TARGETS[0]}, 0)
    (modify,) = shadow.plan(0, {key: TARGETS[1]})
    shadow.failed(modify, entry_missing=False)
    assert shadow.content(0) == {key: TARGETS[0]}
    shadow.failed(modify, entry_missing=True)
    assert shadow.content(0) == {}


def test_json_round_trip() -> None:
    shadow = DipShadow(4)
    apply_all(shadow, 3, {BucketKey(1, 0x4000, 2): TARGETS[1]}, 41)
    again = DipShadow.from_json(shadow.to_json())
    assert again.entries(3) == shadow.entries(3) and again.size() == 1
