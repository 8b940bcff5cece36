"""Arbitrary, mostly malformed table and digest entities: the device either applies them or
refuses them with a P4RuntimeError, never anything else, and reads stay consistent."""

from __future__ import annotations

import contextlib

from finsy.proto import p4r
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p4model import Switch
from p4model.p4runtime_codec import P4RuntimeError
from p4model.p4runtime_device import P4RuntimeDevice

DEVICE = P4RuntimeDevice(Switch())
_CONFIG = p4r.ForwardingPipelineConfig()
_CONFIG.p4info.CopyFrom(DEVICE.own_p4info)
DEVICE.set_pipeline(p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT, _CONFIG)
TABLE_IDS = [t.preamble.id for t in DEVICE.own_p4info.tables]
ACTION_IDS = [a.preamble.id for a in DEVICE.own_p4info.actions]
DIGEST_IDS = [d.preamble.id for d in DEVICE.own_p4info.digests]

small_bytes = st.binary(min_size=0, max_size=7)
ids = st.one_of(st.sampled_from(TABLE_IDS), st.integers(0, 2**32 - 1))


@st.composite
def field_matches(draw: st.DrawFn) -> p4r.FieldMatch:
    """FieldMatch messages of any kind with short arbitrary bytes."""
    m = p4r.FieldMatch(field_id=draw(st.integers(0, 7)))
    kind = draw(st.sampled_from(["exact", "lpm", "ternary", "range", "optional"]))
    if kind == "exact":
        m.exact.value = draw(small_bytes)
    elif kind == "lpm":
        m.lpm.value = draw(small_bytes)
        m.lpm.prefix_len = draw(st.integers(-3, 40))
    elif kind == "ternary":
        m.ternary.value = draw(small_bytes)
        m.ternary.mask = draw(small_bytes)
    elif kind == "range":
        m.range.low = draw(small_bytes)
        m.range.high = draw(small_bytes)
    else:
        m.optional.value = draw(small_bytes)
    return m


@st.composite
def table_entries(draw: st.DrawFn) -> p4r.TableEntry:
    """TableEntry messages, valid ids mixed with arbitrary ones."""
    entry = p4r.TableEntry(table_id=draw(ids))
    for m in draw(st.lists(field_matches(), max_size=6)):
        entry.match.append(m)
    if draw(st.booleans()):
        call = entry.action.action
        call.action_id = draw(st.one_of(st.sampled_from(ACTION_IDS), st.integers(0, 2**32 - 1)))
        for _ in range(draw(st.integers(0, 6))):
            call.params.add(param_id=draw(st.integers(0, 6)), value=draw(small_bytes))
    elif draw(st.booleans()):
        entry.action.action_profile_member_id = draw(st.integers(0, 5))
    entry.priority = draw(st.integers(-2, 2**31 - 1))
    entry.is_default_action = draw(st.booleans())
    entry.idle_timeout_ns = draw(st.integers(0, 2**62))
    if draw(st.booleans()):
        entry.time_since_last_hit.elapsed_ns = 1
    return entry


@st.composite
def digest_entries(draw: st.DrawFn) -> p4r.DigestEntry:
    """DigestEntry messages with arbitrary configs."""
    entry = p4r.DigestEntry(
        digest_id=draw(st.one_of(st.sampled_from(DIGEST_IDS), st.integers(0, 2**32 - 1)))
    )
    entry.config.max_list_size = draw(st.integers(-5, 100))
    entry.config.max_timeout_ns = draw(st.integers(-5, 10**12))
    entry.config.ack_timeout_ns = draw(st.integers(-5, 10**12))
    return entry


updates = st.builds(
    lambda kind, entity: p4r.Update(type=kind, entity=entity),
    st.integers(0, 4),
    st.one_of(
        table_entries().map(lambda e: p4r.Entity(table_entry=e)),
        digest_entries().map(lambda e: p4r.Entity(digest_entry=e)),
    ),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(updates)
def test_any_update_is_applied_or_refused_with_a_p4runtime_error(update: p4r.Update) -> None:
    try:
        DEVICE.write(update)
    except P4RuntimeError as exc:
        assert exc.message
    if update.entity.WhichOneof("entity") == "table_entry":
        query = p4r.TableEntry(table_id=update.entity.table_entry.table_id)
        with contextlib.suppress(P4RuntimeError):
            DEVICE.read(p4r.Entity(table_entry=query))
