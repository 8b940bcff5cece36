"""LoadBook: acceptance, ordering, restarts, EWMA, liveness and blackout, with explicit `now`."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.wire import LoadReport, encode_report
from controller.core.loadbook import COUNTER_NAMES, RESYNC_REPORTS, LoadBook

DIP = "10.0.0.1:80"
OTHER = "10.0.0.2:80"
INTERVAL = 0.5  # down after 1.5 s of silence, blackout 1.0 s


def report(seq: int, ts: float | None = None, cpu: float = 0.5, **fields: object) -> bytes:
    base = LoadReport(DIP, seq, 1000.0 + seq if ts is None else ts, cpu, 3)
    return encode_report(replace(base, **fields))  # type: ignore[arg-type]


def book() -> LoadBook:
    return LoadBook([DIP, OTHER], INTERVAL)


def test_a_dip_never_heard_from_is_unknown_and_live_with_infinite_age() -> None:
    load = book().snapshot(10.0)[DIP]
    assert (load.state, load.last_seen, load.report_age, load.seq) == (
        "unknown",
        None,
        math.inf,
        None,
    )
    assert load.live  # no agent: it is served on its configured weight


def test_a_dip_that_reported_to_a_previous_controller_is_down_until_it_reports() -> None:
    b = book()
    b.expect_reports([DIP, "10.9.9.9:80"])  # an untracked DIP is ignored
    assert b.snapshot(10.0)[DIP].state == "down" and not b.snapshot(10.0)[DIP].live
    assert b.snapshot(10.0)[OTHER].state == "unknown"
    b.ingest(10.0, report(0))
    assert b.snapshot(10.1)[DIP].state == "up"


def test_the_first_report_brings_a_dip_up_at_once() -> None:
    b = book()
    assert b.ingest(5.0, report(0, cpu=0.7)).accepted
    load = b.snapshot(5.25)[DIP]
    assert (load.state, load.cpu, load.conns, load.last_seen) == ("up", 0.7, 3, 5.0)
    assert load.report_age == 0.25 and load.seq == 0


def test_a_silent_dip_is_down_within_three_intervals_and_back_up_after_blackout() -> None:
    b = book()
    for seq in range(4):
        b.ingest(seq * INTERVAL, report(seq))
    last = 3 * INTERVAL
    assert b.state(last + 3 * INTERVAL - 0.01, DIP) == "up"
    assert b.state(last + 3 * INTERVAL, DIP) == "down"
    back = 10.0
    assert b.ingest(back, report(4)).accepted
    assert b.state(back, DIP) == "blackout"
    for step in range(1, 4):
        b.ingest(back + step * INTERVAL, report(4 + step))
    assert b.state(back + 2 * INTERVAL - 0.01, DIP) == "blackout"
    assert b.state(back + 2 * INTERVAL, DIP) == "up"


def test_silence_during_blackout_restarts_it() -> None:
    b = book()
    b.ingest(0.0, report(0))
    b.ingest(5.0, report(1))  # back after silence: blackout until 6.0
    b.ingest(7.0, report(2))  # silent again for 2 s (> 1.5): a new blackout from 7.0
    assert b.state(7.5, DIP) == "blackout"
    b.ingest(7.5, report(3))
    assert b.state(8.0, DIP) == "up"


@pytest.mark.parametrize(
    ("agent_state", "expected"), [("up", "up"), ("drain", "drain"), ("down", "down")]
)
def test_the_agents_own_state_is_honoured(agent_state: str, expected: str) -> None:
    b = book()
    b.ingest(0.0, report(0, state=agent_state))
    assert b.state(0.1, DIP) == expected


def test_a_dip_reporting_down_then_up_goes_through_blackout() -> None:
    b = book()
    b.ingest(0.0, report(0))
    b.ingest(0.5, report(1, state="down"))
    b.ingest(1.0, report(2))
    assert b.state(1.5, DIP) == "blackout"
    b.ingest(1.5, report(3))
    assert b.state(2.0, DIP) == "up"


@pytest.mark.parametrize(
    ("name", "second", "now", "outcome"),
    [
        ("newer seq", report(6), 1.0, "accepted"),
        ("gap in seq", report(60, ts=1005.5), 1.0, "accepted"),
        ("seq far ahead", report(2**62, ts=1005.5), 1.0, "stale"),
        ("seq ahead as far as the elapsed time allows", report(1055, ts=1005.5), 1.0, "accepted"),
        ("ts far in the future", report(6, ts=1e12), 1.0, "stale"),
        ("reordered older report", report(4), 1.0, "stale"),
        ("same seq again", report(5), 1.0, "duplicate"),
        ("restart: seq reset with newer ts", report(0, ts=1005.4), 1.0, "accepted"),
        ("restart claiming a far-future ts", report(0, ts=1e12), 1.0, "stale"),
        ("replay of an old run", report(0, ts=900.0), 1.0, "stale"),
        ("restart after silence, agent clock behind", report(0, ts=900.0), 9.0, "accepted"),
    ],
)
def test_sequence_rules(name: str, second: bytes, now: float, outcome: str) -> None:
    b = book()
    assert b.ingest(0.5, report(5)).accepted
    assert b.ingest(now, second).outcome == outcome, name


@pytest.mark.parametrize(
    "forged",
    [
        report(2**63 - 1, ts=1e12),
        report(2**63 - 1, ts=1000.0),
        report(0, ts=1e12),
        report(900, ts=1e12),
    ],
    ids=["seq-and-ts", "seq", "ts", "small-seq-jump-far-ts"],
)
@pytest.mark.parametrize("first", [True, False], ids=["before-the-agent", "mid-stream"])
def test_a_forged_report_never_makes_the_genuine_agent_stale(forged: bytes, first: bool) -> None:
    b = book()
    now = 0.0
    if first:
        b.ingest(now, forged)
    outcomes = []
    for seq in range(1, 12):
        now += INTERVAL
        outcomes.append(b.ingest(now, report(seq, ts=1000.0 + now)).outcome)
        if not first and seq == 3:
            b.ingest(now, forged)
        assert b.state(now, DIP) == "up", (seq, outcomes)
    assert outcomes[-5:] == ["accepted"] * 5 and b.snapshot(now)[DIP].seq == 11
    assert outcomes.count("stale") <= RESYNC_REPORTS - 1


def test_an_agent_clock_step_is_followed_after_a_short_run() -> None:
    b = book()
    for seq in range(3):
        assert b.ingest(seq * INTERVAL, report(seq, ts=1000.0 + seq * INTERVAL)).accepted
    outcomes = [
        b.ingest(seq * INTERVAL, report(seq, ts=4600.0 + seq * INTERVAL)).outcome
        for seq in range(3, 8)
    ]
    assert outcomes == ["stale"] * (RESYNC_REPORTS - 1) + ["accepted"] * (6 - RESYNC_REPORTS)
    assert b.state(7 * INTERVAL, DIP) == "up"


def test_alternating_streams_resync_neither_until_silence() -> None:
    b = book()
    b.ingest(0.0, report(100, ts=1000.0))
    for step in range(1, 5):  # a replayed old run interleaved with a far-future one
        now = step * 0.2
        assert b.ingest(now, report(step, ts=900.0 + now)).outcome == "stale"
        assert b.ingest(now, report(10**6 * step, ts=1e9 + step)).outcome == "stale"


def test_rejected_reports_change_nothing() -> None:
    b = book()
    b.ingest(0.0, report(5, cpu=0.2))
    before = b.snapshot(1.0)
    b.ingest(0.9, report(4, cpu=0.9))
    assert b.snapshot(1.0) == before


def test_a_restart_is_counted_and_its_report_taken() -> None:
    b = book()
    b.ingest(0.0, report(10, cpu=0.1))
    b.ingest(0.5, report(0, ts=1010.5, cpu=0.9))
    load = b.snapshot(0.5)[DIP]
    assert (load.seq, load.cpu) == (0, 0.9)
    assert b.counters["restarts"] == 1


def test_arrivals_and_busy_time_are_counted_per_agent_run() -> None:
    b = book()
    b.ingest(0.0, report(1, ts=1000.0, conn_rate=40.0, cpu=0.9))
    b.ingest(0.5, report(2, ts=1000.5, conn_rate=10.0, cpu=0.8))
    b.ingest(1.0, report(3, ts=1001.0, conn_rate=30.0, cpu=0.4))
    load = b.snapshot(1.0)[DIP]
    # The first report starts the counts; each later one adds its rate and CPU over its period.
    assert (load.arrived, load.arrived_since) == (20.0, 0.0)
    assert load.busy == pytest.approx(0.6)
    b.ingest(1.5, report(0, ts=1001.5, conn_rate=8.0))  # a restarted agent: new counts
    load = b.snapshot(1.5)[DIP]
    assert (load.arrived, load.busy, load.arrived_since) == (0.0, 0.0, 1.5)
    b.ingest(2.0, report(1, ts=1002.0))  # no rate: nothing to count
    load = b.snapshot(2.0)[DIP]
    assert (load.arrived, load.busy, load.arrived_since) == (None, None, None)


def test_an_absurd_rate_starts_a_new_count_instead_of_swamping_the_old_one() -> None:
    b = book()
    b.ingest(0.0, report(1, ts=1000.0, conn_rate=40.0))
    b.ingest(0.5, report(2, ts=1000.5, conn_rate=1e300))
    # A count that large no longer counts single connections: the book starts again ...
    load = b.snapshot(0.5)[DIP]
    assert (load.arrived, load.busy, load.arrived_since) == (0.0, 0.0, 0.5)
    b.ingest(1.0, report(3, ts=1001.0, conn_rate=30.0, cpu=0.5))
    # ... and counts the next report's arrivals and CPU as before.
    assert (b.snapshot(1.0)[DIP].arrived, b.snapshot(1.0)[DIP].busy) == (15.0, 0.25)


def test_every_rejection_kind_is_counted() -> None:
    b = book()
    b.ingest(0.0, report(3))
    b.ingest(0.1, report(3))
    b.ingest(0.2, report(2))
    b.ingest(0.3, encode_report(LoadReport("10.9.9.9:80", 0, 1.0, 0.1, 0)))
    for bad in (b"junk", b"x" * 5000, b'{"v": 2}', b'{"v": 1}', report(9)[:-1] + b',"cpu":7}'):
        assert b.ingest(0.4, bad).outcome == "malformed"
    counters = b.counters
    assert set(COUNTER_NAMES) <= set(counters)
    expected = {
        "accepted": 1,
        "duplicate": 1,
        "stale": 1,
        "unknown_dip": 1,
        "malformed": 5,
        "malformed_not_json": 1,
        "malformed_oversized": 1,
        "malformed_bad_version": 1,
        "malformed_missing_field": 1,
        "malformed_bad_field": 1,
    }
    assert {k: v for k, v in counters.items() if v} == expected


def test_added_and_removed_dips() -> None:
    b = LoadBook([], INTERVAL)
    assert b.ingest(0.0, report(0)).outcome == "unknown_dip"
    b.add_dip(DIP)
    b.add_dip(DIP)
    assert b.ingest(0.1, report(1)).accepted
    b.remove_dip(DIP)
    assert b.ingest(0.2, report(2)).outcome == "unknown_dip"
    assert b.snapshot(0.3) == {}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dips": ["10.0.0.1"], "interval": 0.5},
        {"dips": [], "interval": 0.0},
        {"dips": [], "interval": math.nan},
        {"dips": [], "interval": 0.5, "blackout": -1.0},
    ],
)
def test_invalid_construction_raises_value_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        LoadBook(**kwargs)  # type: ignore[arg-type]


def test_blackout_defaults_to_two_intervals() -> None:
    assert LoadBook([], 0.5).blackout == 1.0


@settings(max_examples=300)
@given(st.lists(st.tuples(st.floats(0, 1e4), st.binary(max_size=200)), max_size=20))
def test_ingest_never_raises_and_counts_every_message(messages: list[tuple[float, bytes]]) -> None:
    b = book()
    for now, data in messages:
        b.ingest(now, data)
    counters = b.counters
    handled = sum(
        counters[k] for k in ("accepted", "malformed", "unknown_dip", "stale", "duplicate")
    )
    assert handled == len(messages)


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.floats(0.0, 5.0),
            st.integers(0, 20),
            st.floats(0.0, 1.0),
            st.sampled_from(["up", "drain", "down"]),
        ),
        max_size=30,
    ),
    st.floats(0.0, 10.0),
)
def test_state_invariants_hold_for_any_report_history(
    steps: list[tuple[float, int, float, str]], query_delay: float
) -> None:
    b = book()
    now = 0.0
    for gap, seq, cpu, state in steps:
        now += gap
        b.ingest(now, report(seq, ts=1000.0 + now, cpu=cpu, state=state))
    load = b.snapshot(now + query_delay)[DIP]
    assert 0.0 <= load.cpu <= 1.0
    if load.last_seen is None:
        assert load.state == "unknown"
    elif load.report_age >= 3 * INTERVAL:
        assert load.state == "down"
    if load.state in ("up", "blackout", "drain"):
        assert load.report_age < 3 * INTERVAL and load.reported_state != "down"


def test_a_liar_repeating_an_absurd_report_loses_to_the_genuine_agent_within_a_resync() -> None:
    b = book()
    outcomes = []
    for step in range(6):  # the liar speaks first each round, even before the agent
        now = (step + 1) * INTERVAL
        assert b.ingest(now, report(2**62, ts=now + 1e6, cpu=0.0)).outcome in (
            ("accepted", "stale") if step == 0 else ("stale",)
        )
        outcomes.append(b.ingest(now, report(step, ts=1000.0 + now, cpu=0.5)).outcome)
    assert outcomes.count("stale") <= RESYNC_REPORTS - 1 and outcomes[-4:] == ["accepted"] * 4
    assert b.snapshot(6 * INTERVAL)[DIP].cpu == 0.5
