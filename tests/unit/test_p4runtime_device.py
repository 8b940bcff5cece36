"""The P4Runtime device without gRPC: pipeline config actions, state reset, limits, digests."""

from __future__ import annotations

import dataclasses

import pytest
from finsy.proto import p4r

from p4model import Switch
from p4model.p4runtime_codec import Code, P4RuntimeError
from p4model.p4runtime_device import P4RuntimeDevice
from p4src.contract import Digest, load_settings

Action = p4r.SetForwardingPipelineConfigRequest


def config(device: P4RuntimeDevice, cookie: int = 1) -> p4r.ForwardingPipelineConfig:
    """A ForwardingPipelineConfig with our P4Info."""
    out = p4r.ForwardingPipelineConfig(p4_device_config=b"bmv2 json, ignored")
    out.p4info.CopyFrom(device.own_p4info)
    out.cookie.cookie = cookie
    return out


def vip_insert(device: P4RuntimeDevice, port: int) -> p4r.Update:
    """An INSERT of a vip_table entry for VIP:port/TCP."""
    table = next(t for t in device.own_p4info.tables if t.preamble.alias == "vip_table")
    action = next(a for a in device.own_p4info.actions if a.preamble.alias == "set_pool")
    entry = p4r.TableEntry(table_id=table.preamble.id)
    for field, value in zip(
        table.match_fields, [b"\x0a\x00\x00\x64", port.to_bytes(2, "big"), b"\x06"], strict=True
    ):
        entry.match.add(field_id=field.id).exact.value = value
    entry.action.action.action_id = action.preamble.id
    for param in action.params:
        entry.action.action.params.add(param_id=param.id, value=b"\x01")
    return p4r.Update(type=p4r.Update.INSERT, entity=p4r.Entity(table_entry=entry))


def vip_count(device: P4RuntimeDevice) -> int:
    """Entries in vip_table."""
    return device.switch.table_num_entries("vip_table")


def test_the_program_runs_from_the_start_under_the_models_own_p4info() -> None:
    device = P4RuntimeDevice(Switch())
    running = device.get_pipeline(p4r.GetForwardingPipelineConfigRequest.ALL)
    assert running.p4info == device.own_p4info and running.p4_device_config == b""
    insert = vip_insert(device, 80)
    device.write(insert)
    assert vip_count(device) == 1
    query = p4r.TableEntry(table_id=insert.entity.table_entry.table_id)
    (read,) = device.read(p4r.Entity(table_entry=query))
    assert read.table_entry.match[1].exact.value == b"\x50"  # canonical: port 80


def test_verify_checks_without_activating() -> None:
    device = P4RuntimeDevice(Switch())
    device.set_pipeline(Action.VERIFY, config(device, cookie=5))
    running = device.get_pipeline(p4r.GetForwardingPipelineConfigRequest.COOKIE_ONLY)
    assert running.cookie.cookie == 0
    with pytest.raises(P4RuntimeError) as caught:
        device.set_pipeline(Action.VERIFY, p4r.ForwardingPipelineConfig())
    assert caught.value.code is Code.INVALID_ARGUMENT


def test_save_then_commit_activates_and_keeps_entries() -> None:
    device = P4RuntimeDevice(Switch())
    device.set_pipeline(Action.VERIFY_AND_COMMIT, config(device, 1))
    device.write(vip_insert(device, 80))
    device.set_pipeline(Action.VERIFY_AND_SAVE, config(device, 2))
    assert (
        device.get_pipeline(p4r.GetForwardingPipelineConfigRequest.COOKIE_ONLY).cookie.cookie == 1
    )
    device.set_pipeline(Action.COMMIT, p4r.ForwardingPipelineConfig())
    assert device.get_pipeline(p4r.GetForwardingPipelineConfigRequest.ALL).cookie.cookie == 2
    assert vip_count(device) == 1


def test_commit_without_a_saved_config_is_failed_precondition() -> None:
    device = P4RuntimeDevice(Switch())
    with pytest.raises(P4RuntimeError) as caught:
        device.set_pipeline(Action.COMMIT, p4r.ForwardingPipelineConfig())
    assert caught.value.code is Code.FAILED_PRECONDITION


def test_verify_and_commit_resets_state_and_reconcile_keeps_it() -> None:
    switch = Switch()
    device = P4RuntimeDevice(switch)
    device.set_pipeline(Action.VERIFY_AND_COMMIT, config(device))
    device.write(vip_insert(device, 80))
    switch.table_set_default("version_config", "set_versions", ["1", "2", "3", "4", "5"])
    switch.register_write("bloom_0", 3, 9)
    device.set_pipeline(Action.RECONCILE_AND_COMMIT, config(device))
    assert vip_count(device) == 1
    device.set_pipeline(Action.VERIFY_AND_COMMIT, config(device))
    assert vip_count(device) == 0
    assert switch.table_get_default("version_config") == ("LbIngress.set_versions", [0] * 5)
    assert switch.register_read("bloom_0", 3) == 0
    assert switch.table_num_entries("version_select") == 64  # const entries stay


def test_a_full_table_is_resource_exhausted() -> None:
    settings = dataclasses.replace(load_settings(), vip_table_size=1)
    device = P4RuntimeDevice(Switch(settings))
    device.set_pipeline(Action.VERIFY_AND_COMMIT, config(device))
    device.write(vip_insert(device, 80))
    with pytest.raises(P4RuntimeError) as caught:
        device.write(vip_insert(device, 81))
    assert caught.value.code is Code.RESOURCE_EXHAUSTED


def test_unsupported_entities_are_unimplemented() -> None:
    device = P4RuntimeDevice(Switch())
    device.set_pipeline(Action.VERIFY_AND_COMMIT, config(device))
    counter = p4r.Entity(counter_entry=p4r.CounterEntry(counter_id=1))
    with pytest.raises(P4RuntimeError) as caught:
        device.write(p4r.Update(type=p4r.Update.INSERT, entity=counter))
    assert caught.value.code is Code.UNIMPLEMENTED
    with pytest.raises(P4RuntimeError) as caught:
        device.read(counter)
    assert caught.value.code is Code.UNIMPLEMENTED


def test_digests_flow_only_once_a_digest_entry_enables_them() -> None:
    device = P4RuntimeDevice(Switch())
    device.set_pipeline(Action.VERIFY_AND_COMMIT, config(device))
    sample = Digest("new_conn", "10.0.1.2", "10.0.0.100", 1, 80, 6, 0, "10.0.2.2", 8080)
    assert device.offer_digests([sample], 0) == []
    digest_id = device.own_p4info.digests[0].preamble.id
    entry = p4r.DigestEntry(digest_id=digest_id)
    entry.config.max_list_size = 1
    device.write(p4r.Update(type=p4r.Update.INSERT, entity=p4r.Entity(digest_entry=entry)))
    (ready,) = device.offer_digests([sample], 0)
    assert ready.digest_id == digest_id and len(ready.data) == 1
