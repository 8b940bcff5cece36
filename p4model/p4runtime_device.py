"""The P4Runtime device behind p4lb-switch's gRPC service: pipeline config, table and digest
entity writes and reads, digest lists and idle-timeout notifications, on a `p4model.Switch`.

No gRPC, threads or clocks here: the service calls in under its lock and passes `now_ns`; every
refusal raises `P4RuntimeError` with the status the P4Runtime spec names. The switch runs one
program, which is loaded from the start: unlike BMv2's simple_switch_grpc, the device answers
GetForwardingPipelineConfig with the model's own P4Info (empty device config) before any Set.
A pushed config is accepted when its P4Info has the shape of ours (p4model.p4info); its IDs
then become the ones clients write with (a client may push p4c's P4Info). The device config
bytes (BMv2 JSON, say) are kept and returned, never interpreted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from finsy.proto import p4r

from p4model.errors import ErrorCode, SwitchError
from p4model.p4info import build_p4info, id_prefix_errors, program_shape, shape_differences
from p4model.p4runtime_codec import (
    Code,
    EntryExtras,
    ModelEntry,
    P4RuntimeError,
    ProgramIndex,
    TableInfo,
    decode_table_entry,
    encode_default,
    encode_record,
)
from p4model.p4runtime_digests import DigestBuffer, DigestConfig, ReadyList, encode_digest
from p4model.program import DIGEST_NAME
from p4model.switch import Switch
from p4model.tables import EntryRecord
from p4src.contract import Digest

_Action = p4r.SetForwardingPipelineConfigRequest.Action
_NO_EXTRAS = EntryExtras()
_Response = p4r.GetForwardingPipelineConfigRequest.ResponseType
_NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class _Row:
    """One table entry (or a table's default action) as read, not yet encoded."""

    table: TableInfo
    record: EntryRecord | None
    extras: EntryExtras
    idle_ns: int | None
    default: tuple[str, tuple[int, ...]] | None


@dataclass(frozen=True)
class ReadSnapshot:
    """The result of reading one entity, ready to encode without the switch."""

    index: ProgramIndex
    rows: list[_Row]
    ready: list[p4r.Entity]

    def entities(self) -> Iterator[p4r.Entity]:
        """The entities, encoded one by one."""
        yield from self.ready
        for row in self.rows:
            if row.default is not None:
                action, params = row.default
                entry = encode_default(self.index, row.table, action, params)
            else:
                assert row.record is not None
                entry = encode_record(self.index, row.table, row.record, row.extras)
                if row.idle_ns is not None:
                    entry.time_since_last_hit.elapsed_ns = row.idle_ns
            yield p4r.Entity(table_entry=entry)


class P4RuntimeDevice:
    """One P4Runtime device: the model switch plus what P4Runtime keeps beside it."""

    def __init__(self, switch: Switch, device_id: int = 1) -> None:
        """A device running the model's program under the model's own P4Info (the switch can
        run nothing else, so that is its pipeline from the start)."""
        self.switch = switch
        self.device_id = device_id
        self.own_p4info = build_p4info(switch.tables(), switch.registers())
        self._own_shape = program_shape(self.own_p4info)
        self.config = p4r.ForwardingPipelineConfig()
        self.config.p4info.CopyFrom(self.own_p4info)
        self.index = ProgramIndex(self.config.p4info)
        self._saved: p4r.ForwardingPipelineConfig | None = None
        self._extras: dict[tuple[str, int], EntryExtras] = {}
        self.digests: dict[int, DigestBuffer] = {}

    # ---- pipeline ---------------------------------------------------------------------------
    def set_pipeline(self, action: int, config: p4r.ForwardingPipelineConfig) -> None:
        """SetForwardingPipelineConfig with this action."""
        if action == _Action.COMMIT:
            if self._saved is None:
                raise P4RuntimeError(Code.FAILED_PRECONDITION, "COMMIT without a saved config")
            self._activate(self._saved, reset=False)
            self._saved = None
            return
        if action not in (
            _Action.VERIFY,
            _Action.VERIFY_AND_SAVE,
            _Action.VERIFY_AND_COMMIT,
            _Action.RECONCILE_AND_COMMIT,
        ):
            raise P4RuntimeError(Code.INVALID_ARGUMENT, f"unknown pipeline config action {action}")
        self.verify(config)
        if action == _Action.VERIFY_AND_SAVE:
            self._saved = p4r.ForwardingPipelineConfig()
            self._saved.CopyFrom(config)
        elif action == _Action.VERIFY_AND_COMMIT:
            self._activate(config, reset=True)
        elif action == _Action.RECONCILE_AND_COMMIT:
            self._activate(config, reset=False)  # one program: its state always carries over

    def verify(self, config: p4r.ForwardingPipelineConfig) -> None:
        """INVALID_ARGUMENT unless the config's P4Info describes our program."""
        if not config.HasField("p4info"):
            raise P4RuntimeError(Code.INVALID_ARGUMENT, "the config has no p4info")
        problems = id_prefix_errors(config.p4info) or shape_differences(
            self._own_shape, program_shape(config.p4info)
        )
        if problems:
            shown = "; ".join(problems[:5]) + (" …" if len(problems) > 5 else "")
            raise P4RuntimeError(
                Code.INVALID_ARGUMENT,
                f"p4lb-switch runs p4src/loadbalancer.p4 only, and this P4Info differs: {shown}",
            )

    def _activate(self, config: p4r.ForwardingPipelineConfig, *, reset: bool) -> None:
        kept = p4r.ForwardingPipelineConfig()
        kept.CopyFrom(config)
        self.config = kept
        self.index = ProgramIndex(kept.p4info)
        if reset:
            self._reset_state()

    def _reset_state(self) -> None:
        """Forwarding state as after loading the program: no entries, initial defaults, zeroed
        registers, no digest configs."""
        for table in self.switch.tables():
            if not table.const:
                self.switch.table_clear(table.name)
                action, params = table.initial_default
                table.set_default(action, [str(p) for p in params])
        for register in self.switch.registers():
            register.reset()
        self._extras.clear()
        self.digests.clear()

    def get_pipeline(self, response_type: int) -> p4r.ForwardingPipelineConfig:
        """GetForwardingPipelineConfig's config for this response type."""
        config = self.config
        out = p4r.ForwardingPipelineConfig()
        out.cookie.CopyFrom(config.cookie)
        if response_type in (_Response.ALL, _Response.P4INFO_AND_COOKIE):
            out.p4info.CopyFrom(config.p4info)
        if response_type in (_Response.ALL, _Response.DEVICE_CONFIG_AND_COOKIE):
            out.p4_device_config = config.p4_device_config
        return out

    # ---- writes -----------------------------------------------------------------------------
    def write(self, update: p4r.Update) -> None:
        """Apply one update of a Write batch."""
        index = self.index
        which = update.entity.WhichOneof("entity")
        if update.type not in (p4r.Update.INSERT, p4r.Update.MODIFY, p4r.Update.DELETE):
            raise P4RuntimeError(Code.INVALID_ARGUMENT, f"unknown update type {update.type}")
        if which == "table_entry":
            self._write_table(index, update.type, update.entity.table_entry)
        elif which == "digest_entry":
            self._write_digest(index, update.type, update.entity.digest_entry)
        else:
            raise P4RuntimeError(Code.UNIMPLEMENTED, f"writing {which} is not supported")

    def _write_table(self, index: ProgramIndex, kind: int, message: p4r.TableEntry) -> None:
        with_action = kind == p4r.Update.INSERT or (
            kind == p4r.Update.MODIFY and not message.is_default_action
        )
        entry = decode_table_entry(index, message, with_action=with_action)
        table = entry.table
        if entry.is_default:
            self._write_default(kind, entry)
            return
        if table.const:
            raise P4RuntimeError(Code.PERMISSION_DENIED, f"{table.name} has const entries")
        if kind == p4r.Update.INSERT:
            assert entry.action is not None
            try:  # the model refuses a duplicate itself: no lookup before (half an insert's cost)
                handle = self.switch.table_add(
                    table.name, entry.action, entry.keys, entry.params, entry.priority
                )
            except SwitchError as exc:
                if exc.code is ErrorCode.DUPLICATE_ENTRY:
                    raise P4RuntimeError(
                        Code.ALREADY_EXISTS, f"{table.name}: the entry exists"
                    ) from None
                code = (
                    Code.RESOURCE_EXHAUSTED if exc.code is ErrorCode.TABLE_FULL else Code.INTERNAL
                )
                raise P4RuntimeError(code, str(exc)) from None
            self._keep_extras(table, handle, entry)
            return
        found = self.switch.table(table.name).find(entry.keys, entry.priority)
        if found is None:
            raise P4RuntimeError(Code.NOT_FOUND, f"{table.name}: no such entry")
        if kind == p4r.Update.MODIFY:
            assert entry.action is not None
            self.switch.table_modify(table.name, entry.action, found, entry.params)
            self._keep_extras(table, found, entry)
        else:
            self.switch.table_delete(table.name, found)
            self._extras.pop((table.name, found), None)

    def _keep_extras(self, table: TableInfo, handle: int, entry: ModelEntry) -> None:
        extras = EntryExtras(entry.idle_timeout_ns, entry.controller_metadata, entry.metadata)
        self._extras[(table.name, handle)] = extras
        if table.idle_timeout:
            # The model ages in whole milliseconds: round up, so no entry ages early.
            ms = math.ceil(entry.idle_timeout_ns / _NS_PER_MS)
            self.switch.table_set_timeout(table.name, handle, ms)

    def _write_default(self, kind: int, entry: ModelEntry) -> None:
        table = entry.table
        if kind != p4r.Update.MODIFY:
            raise P4RuntimeError(
                Code.INVALID_ARGUMENT, f"{table.name}: a default entry can only be modified"
            )
        if table.const_default:
            raise P4RuntimeError(Code.PERMISSION_DENIED, f"{table.name}: the default is const")
        model = self.switch.table(table.name)
        if entry.action is None:  # reset to the program's default
            action, params = model.initial_default
            model.set_default(action, [str(p) for p in params])
        else:
            model.set_default(entry.action, entry.params)

    def _write_digest(self, index: ProgramIndex, kind: int, message: p4r.DigestEntry) -> None:
        if message.digest_id not in index.digest_ids.values():
            raise P4RuntimeError(Code.INVALID_ARGUMENT, f"unknown digest id {message.digest_id}")
        exists = message.digest_id in self.digests
        c = message.config
        config = DigestConfig(c.max_timeout_ns, c.max_list_size, c.ack_timeout_ns)
        if min(config.max_timeout_ns, config.max_list_size, config.ack_timeout_ns) < 0:
            raise P4RuntimeError(Code.INVALID_ARGUMENT, f"negative digest config {config!r}")
        if kind == p4r.Update.INSERT:
            if exists:
                raise P4RuntimeError(Code.ALREADY_EXISTS, "the digest is already configured")
            self.digests[message.digest_id] = DigestBuffer(config)
        elif not exists:
            raise P4RuntimeError(Code.NOT_FOUND, "the digest is not configured")
        elif kind == p4r.Update.MODIFY:
            self.digests[message.digest_id].config = config
        else:
            del self.digests[message.digest_id]

    # ---- reads ------------------------------------------------------------------------------
    def read(self, entity: p4r.Entity) -> list[p4r.Entity]:
        """The entities matching one entity of a ReadRequest."""
        return list(self.snapshot(entity).entities())

    def snapshot(self, entity: p4r.Entity) -> ReadSnapshot:
        """What one entity of a ReadRequest matches, taken quickly (the caller holds the switch
        lock); encoding it into messages, the slow part, can follow without the lock."""
        index = self.index
        which = entity.WhichOneof("entity")
        if which == "table_entry":
            return ReadSnapshot(index, self._table_rows(index, entity.table_entry), [])
        if which == "digest_entry":
            digests = [p4r.Entity(digest_entry=e) for e in self._read_digest(entity.digest_entry)]
            return ReadSnapshot(index, [], digests)
        raise P4RuntimeError(Code.UNIMPLEMENTED, f"reading {which} is not supported")

    def _table_rows(self, index: ProgramIndex, query: p4r.TableEntry) -> list[_Row]:
        tables = (
            list(index.tables.values()) if query.table_id == 0 else [index.table(query.table_id)]
        )
        rows: list[_Row] = []
        with_idle = query.HasField("time_since_last_hit")
        for table in tables:
            model = self.switch.table(table.name)
            if query.is_default_action:
                default = model.default
                rows.append(
                    _Row(table, None, EntryExtras(), None, (default.action, default.params))
                )
                continue
            if len(query.match):
                entry = decode_table_entry(index, query, with_action=False)
                handle = model.find(entry.keys, entry.priority)
                records = [] if handle is None else [model.record(handle)]
            else:
                records = model.records()
            extras = self._extras
            for record in records:
                idle = None
                if with_idle and table.idle_timeout:
                    idle = int(self.switch.idle_seconds(record.handle) * 1e9)
                kept = extras.get((table.name, record.handle), _NO_EXTRAS)
                rows.append(_Row(table, record, kept, idle, None))
        return rows

    def _read_digest(self, query: p4r.DigestEntry) -> list[p4r.DigestEntry]:
        out: list[p4r.DigestEntry] = []
        for digest_id, buffer in sorted(self.digests.items()):
            if query.digest_id in (0, digest_id):
                entry = p4r.DigestEntry(digest_id=digest_id)
                entry.config.max_timeout_ns = buffer.config.max_timeout_ns
                entry.config.max_list_size = buffer.config.max_list_size
                entry.config.ack_timeout_ns = buffer.config.ack_timeout_ns
                out.append(entry)
        return out

    # ---- notifications ----------------------------------------------------------------------
    def offer_digests(self, samples: Iterable[Digest], now_ns: int) -> list[p4r.DigestList]:
        """Buffer the data plane's digest samples; the lists ready to send."""
        digest_id = self._digest_id()
        buffer = self.digests.get(digest_id) if digest_id else None
        if buffer is None:
            return []  # no DigestEntry: P4Runtime does not learn
        ready = [r for r in (buffer.offer(s, now_ns) for s in samples) if r is not None]
        return [_digest_list(digest_id, r) for r in ready]

    def due_digests(self, now_ns: int) -> list[p4r.DigestList]:
        """Lists whose buffering time is up (and expiry of unacknowledged ones)."""
        out = []
        for digest_id, buffer in self.digests.items():
            ready = buffer.due(now_ns)
            if ready is not None:
                out.append(_digest_list(digest_id, ready))
        return out

    def next_digest_deadline(self) -> int | None:
        """When `due_digests` has work next, or None."""
        times = [t for t in (b.next_deadline() for b in self.digests.values()) if t is not None]
        return min(times) if times else None

    def ack_digest(self, digest_id: int, list_id: int) -> None:
        """A DigestListAck from the primary."""
        buffer = self.digests.get(digest_id)
        if buffer is not None:
            buffer.ack(list_id)

    def clear_digest_caches(self) -> None:
        """The primary changed: unacknowledged lists are forgotten."""
        for buffer in self.digests.values():
            buffer.clear_cache()

    def _digest_id(self) -> int:
        digest_id: int = self.index.digest_ids.get(DIGEST_NAME, 0)
        return digest_id

    def idle_entries(self) -> list[p4r.TableEntry]:
        """Entries idle past their P4Runtime TTL; each one's timer restarts (spec: the next
        notification comes a whole TTL later if it stays idle)."""
        out: list[p4r.TableEntry] = []
        for handle in self.switch.sweep_aged():
            for table in self.index.tables.values():
                extras = self._extras.get((table.name, handle))
                if table.idle_timeout and extras is not None and extras.idle_timeout_ns:
                    record = self.switch.table(table.name).record(handle)
                    out.append(encode_record(self.index, table, record, extras))
                    self.switch.restart_idle_timer(handle)
        return out


def _digest_list(digest_id: int, ready: ReadyList) -> p4r.DigestList:
    message = p4r.DigestList(digest_id=digest_id, list_id=ready.list_id)
    for sample in ready.samples:
        message.data.append(encode_digest(sample))
    return message
