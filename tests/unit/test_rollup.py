"""Rollup keys of an event, and the idempotent per-partition fold of its measures."""

from __future__ import annotations

from datetime import UTC, date, datetime

import h3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotspots import accepted
from hotspots.contract import MEASURES, Arrest, Seizure, encode_event, measures_of
from hotspots.geo import cells_of, to_str
from hotspots.periods import first_starts
from sinks.sink import EVENT_COLUMNS, ROLLUP_COLUMNS
from streams.rollup import (
    DAILY_RES,
    RollupFold,
    RollupKey,
    accepted_row,
    empty_group,
    fold_group,
    group_rows,
    live_from,
    position,
    rollup_groups,
    rollup_keys,
    rollup_names,
)

# Sunday 23:30Z in summer: Monday 2023-07-17 00:30 in London, so the next ISO week.
SEIZURE = Seizure(event_id="s-1", occurred_at=datetime(2023, 7, 16, 23, 30, tzinfo=UTC),
                  lat=51.7356, lon=0.4685, force="essex", drugs_grams=1.5, drug_class="A",
                  weapons_count=2, weapon_type="knife", cash_gbp=250.75)
ARREST = Arrest(event_id="a-1", occurred_at=datetime(2023, 7, 16, 12, tzinfo=UTC),
                lat=51.7356, lon=0.4685, force="essex", charged=True)


def test_rollup_keys_three_monthly_three_weekly_and_one_daily():
    keys = rollup_keys(SEIZURE)
    cells = cells_of(SEIZURE.lat, SEIZURE.lon)
    assert keys == [
        RollupKey("month", 8, cells[8], date(2023, 7, 1), "seizure"),
        RollupKey("month", 7, cells[7], date(2023, 7, 1), "seizure"),
        RollupKey("month", 6, cells[6], date(2023, 7, 1), "seizure"),
        RollupKey("week", 8, cells[8], date(2023, 7, 17), "seizure"),
        RollupKey("week", 7, cells[7], date(2023, 7, 17), "seizure"),
        RollupKey("week", 6, cells[6], date(2023, 7, 17), "seizure"),
        RollupKey("day", DAILY_RES, cells[6], date(2023, 7, 17), "seizure"),
    ]
    assert DAILY_RES == 6
    fine, mid, coarse = (to_str(k.cell) for k in keys[:3])
    assert h3.get_resolution(fine) == 8
    assert h3.cell_to_parent(fine, 7) == mid
    assert h3.cell_to_parent(fine, 6) == coarse == h3.cell_to_parent(mid, 6)


def test_rollup_keys_week_and_day_differ_midweek():
    keys = rollup_keys(ARREST)  # a Sunday afternoon
    assert {k.period: k.start for k in keys} == {"week": date(2023, 7, 10),
                                                "day": date(2023, 7, 16),
                                                "month": date(2023, 7, 1)}
    assert all(k.kind == "arrest" for k in keys)


def test_month_precision_events_feed_monthly_rollups_only():
    crime = SEIZURE.model_copy(update={"time_precision": "month"})
    assert {k.period for k in rollup_keys(crime)} == {"month"}
    assert len(rollup_keys(crime)) == 3


def test_rollup_key_round_trip():
    for key in rollup_keys(SEIZURE) + rollup_keys(ARREST):
        text = key.encode()
        assert text.count("|") == 4
        assert RollupKey.decode(text) == key
    key = RollupKey("day", 6, 604189371209351167, date(2023, 10, 29), "court_outcome")
    assert key.encode() == "day|6|604189371209351167|2023-10-29|court_outcome"
    assert RollupKey.decode(key.encode()) == key


def test_rollup_groups_are_the_keys_of_a_res6_cell_and_month():
    cells = cells_of(ARREST.lat, ARREST.lon)
    groups = rollup_groups(ARREST, cells)  # Sunday 16 July: its week began on the 10th
    assert groups == [(f"{cells[6]}|2023-07", [k.encode() for k in rollup_keys(ARREST)])]
    # Monday 17 July in London: one group too.
    assert [g for g, _ in rollup_groups(SEIZURE, cells)] == [f"{cells[6]}|2023-07"]


def test_a_week_that_began_last_month_is_kept_with_that_month():
    cells = cells_of(ARREST.lat, ARREST.lon)
    event = ARREST.model_copy(update={"occurred_at": datetime(2023, 7, 1, 12, tzinfo=UTC)})
    (july, july_names), (june, june_names) = rollup_groups(event, cells)
    assert (july, june) == (f"{cells[6]}|2023-07", f"{cells[6]}|2023-06")
    assert {n.split("|")[0] for n in july_names} == {"month", "day"}
    assert {n.split("|")[3] for n in june_names} == {"2023-06-26"}  # the week's Monday
    assert sorted(july_names + june_names) == sorted(k.encode() for k in rollup_keys(event))
    crime = SEIZURE.model_copy(update={"time_precision": "month"})
    assert [(g, len(n)) for g, n in rollup_groups(crime, cells)] == [(f"{cells[6]}|2023-07", 3)]


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1),  # noqa: DTZ001
                    timezones=st.just(UTC)))
@settings(max_examples=200, deadline=None)
def test_every_key_of_a_group_starts_in_the_groups_month(at: datetime) -> None:
    event = ARREST.model_copy(update={"occurred_at": at})
    cells = cells_of(event.lat, event.lon)
    for group, names in rollup_groups(event, cells):
        assert all(name.split("|")[3][:7] == group.split("|")[1] for name in names)
        assert all(int(name.split("|")[2]) in cells.values() for name in names)


def test_fold_group_counts_and_keeps_a_sequence_per_key():
    delta = measures_of(SEIZURE)
    (_, subs), *_ = rollup_groups(SEIZURE, cells_of(SEIZURE.lat, SEIZURE.lon))
    subs = subs[:2]
    group = empty_group()
    assert fold_group(group, subs, delta, "0", 5)
    assert group["off"] == {"0": 5}
    assert all(group["k"][sub] == [1, *delta] for sub in subs)
    assert fold_group(group, subs[:1], delta, "0", 6)
    assert group["k"][subs[0]] == [2, *(2 * d for d in delta)]
    assert group["k"][subs[1]] == [1, *delta]  # untouched by the second event


def test_fold_group_skips_redelivered_positions():
    delta = measures_of(ARREST)
    subs = ("8|1|arrest",)
    group = empty_group()
    fold_group(group, subs, delta, "0", 10)
    before = {"off": dict(group["off"]), "k": {k: list(v) for k, v in group["k"].items()}}
    for pos in (10, 9, 0):  # a redelivery of the same or an earlier event
        assert not fold_group(group, subs, delta, "0", pos)
        assert group == before
    assert fold_group(group, subs, delta, "0", 11)
    assert group["k"][subs[0]][:2] == [2, 2]


def test_fold_group_tracks_partitions_separately():
    delta = measures_of(ARREST)
    subs = ("8|1|arrest",)
    group = empty_group()
    fold_group(group, subs, delta, "0", 100)
    assert fold_group(group, subs, delta, "1", 3)  # a lower position, but another partition
    assert group["off"] == {"0": 100, "1": 3} and group["k"][subs[0]][:2] == [2, 2]
    assert not fold_group(group, subs, delta, "1", 3)
    assert not fold_group(group, subs, delta, "0", 99)


def test_group_rows_carry_each_keys_name_and_full_state():
    cells = cells_of(SEIZURE.lat, SEIZURE.lon)
    _, names = rollup_groups(SEIZURE, cells)[0]
    subs = [n for n in names if n.startswith("week|8|")]
    group = empty_group()
    fold_group(group, subs, measures_of(SEIZURE), "0", 1)
    fold_group(group, names, measures_of(SEIZURE), "0", 2)
    assert group_rows(group, subs) == [[subs[0], 2, *(2 * m for m in measures_of(SEIZURE))]]


def test_a_fold_writes_each_changed_group_once_and_sends_every_touched_key():
    groups: dict[str, dict] = {}
    cells = cells_of(SEIZURE.lat, SEIZURE.lon)
    raw = encode_event(SEIZURE)
    first = RollupFold(groups)
    line = first.add(SEIZURE, cells, 2, 7, raw)
    [(decoded, payload)] = accepted.decode(accepted.envelope([line]))
    assert payload == raw.decode() and decoded[-1] == [2, 7]
    first.add(SEIZURE.model_copy(update={"event_id": "s-2"}), cells, 2, 8, raw)
    [(group_key, names)] = rollup_groups(SEIZURE, cells)
    assert [(p, k) for p, k, _ in first.changed_groups()] == [(2, group_key)]
    assert groups[group_key]["off"] == {"2": 8}
    [(partition, rows)] = first.state_rows().items()
    assert partition == 2
    assert sorted(rows) == sorted([name, 2, *(2 * m for m in measures_of(SEIZURE))] for name in names)
    # The same events again (a redelivery): nothing changes, so no changelog record, but
    # their keys' states are sent again, in case the first fold's envelope never left.
    again = RollupFold(groups)
    again.add(SEIZURE, cells, 2, 7, raw)
    assert list(again.changed_groups()) == []
    assert sorted(again.state_rows()[2]) == sorted(rows)


def test_accepted_row_shape():
    raw = encode_event(SEIZURE)
    values = accepted_row(SEIZURE)
    assert len(values) == len(accepted.FIELDS)
    [(decoded, payload)] = accepted.decode(accepted.envelope([accepted.line(values, raw)]))
    assert decoded == values and payload == raw.decode()
    row = dict(zip(accepted.FIELDS, values, strict=True))
    cells = cells_of(SEIZURE.lat, SEIZURE.lon)
    assert row["event_id"] == "s-1" and row["kind"] == "seizure"
    assert row["occurred_at"] == "2023-07-16T23:30:00+00:00"
    assert row["week_start"] == "2023-07-17"
    assert (row["cell8"], row["cell7"], row["cell6"]) == (cells[8], cells[7], cells[6])
    assert row["operation"] == "" and row["force"] == "essex"
    # exactly what the sink writes, plus the source position that stream consumers dedupe by
    assert (*accepted.FIELDS[:-1], "payload") == EVENT_COLUMNS and row["src"] == [0, 0]
    assert tuple(row[m] for m in MEASURES) == measures_of(SEIZURE)


@pytest.mark.parametrize("raw", [
    b'{"a": 1}',
    b'{\n  "kind": "arrest",\t"x": "tab\\t and \xc3\xa9"\n}',  # a pretty-printed single record
    b'{"x": "a\\nb"}\r',
])
def test_accepted_lines_keep_the_original_bytes(raw: bytes) -> None:
    values = ["id", 1, None, [0, 5]]
    envelope = accepted.envelope([accepted.line(values, raw), accepted.line(values, b"{}")])
    assert list(accepted.decode(envelope)) == [(values, raw.decode()), (values, "{}")]


def test_accepted_envelopes_written_before_v2_are_still_read() -> None:
    import orjson

    values = accepted_row(SEIZURE, None, (2, 7))
    raw = encode_event(SEIZURE).decode()
    v1 = orjson.dumps([{**dict(zip(accepted.FIELDS, values, strict=True)), "payload": raw}])
    assert list(accepted.decode(v1)) == [(values, raw)]
    assert next(accepted.rows(v1))["src"] == [2, 7]


def test_accepted_envelopes_stay_under_the_size_limit():
    lines = [accepted.line([f"e-{i}"], b'{"pad": "' + b"x" * 300 + b'"}') for i in range(2000)]
    out = list(accepted.envelopes(lines, 64 * 1024))
    assert all(len(e) <= 64 * 1024 for e in out) and len(out) > 1
    assert [v[0] for e in out for v, _ in accepted.decode(e)] == [f"e-{i}" for i in range(2000)]
    assert list(accepted.envelopes([], 1024)) == []


def test_positions_order_like_offsets_then_index() -> None:
    from streams.rollup import MAX_PER_RECORD, position

    assert position(3) < position(3, 1) < position(3, MAX_PER_RECORD - 1) < position(4)
    assert position(0) >= 0 and position(7) > 7  # older states hold plain offsets: still below
    with pytest.raises(ValueError):
        position(1, MAX_PER_RECORD)


# hypothesis takes naive bounds and attaches ``timezones`` to what it draws
@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2040, 1, 1),  # noqa: DTZ001
                    timezones=st.just(UTC)),
       st.sampled_from(["day", "month"]),
       st.tuples(st.floats(49.9, 60.8), st.floats(-8.6, 1.7)),
       st.sampled_from(["arrest", "seizure"]))
@settings(max_examples=300, deadline=None)
def test_rollup_names_equal_the_keys_encoded(at: datetime, precision: str,
                                             place: tuple[float, float], kind: str) -> None:
    # Each twice: the second time through the day and cell label caches.
    event = ARREST.model_copy(update={"occurred_at": at, "time_precision": precision,
                                      "lat": place[0], "lon": place[1], "kind": kind})
    cells = cells_of(event.lat, event.lon)
    assert rollup_names(event, cells) == rollup_names(event, cells)
    cells = cells_of(event.lat, event.lon)
    # The same keys; in another order only when the week began in the previous month.
    assert sorted(rollup_names(event, cells)) == sorted(k.encode() for k in rollup_keys(event, cells))


def test_the_sinks_parse_of_an_envelope_gives_the_keys_rows() -> None:
    import orjson

    from sinks.sink import _rollup

    cells = cells_of(SEIZURE.lat, SEIZURE.lon)
    groups = rollup_groups(SEIZURE, cells)
    rows = []
    for _, subs in groups:
        group = empty_group()
        for pos in range(4):
            fold_group(group, subs, measures_of(SEIZURE), "0", pos)
        rows += group_rows(group, subs)
    parsed = _rollup(b"", orjson.dumps(rows))
    assert [(r[0], r[1], r[2], r[4]) for r in parsed] == [
        (k.period, k.res, k.kind, k.cell) for k in rollup_keys(SEIZURE)]
    assert [r[3] for r in parsed] == [k.start for k in rollup_keys(SEIZURE)]  # dates, not text
    assert all(r[-1] == 4 and r[5] == 4 and len(r) == len(ROLLUP_COLUMNS) for r in parsed)


@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1),  # noqa: DTZ001
                    timezones=st.just(UTC)),
       st.dates(min_value=date(2019, 12, 1), max_value=date(2030, 2, 1)),
       st.sampled_from(["day", "month"]))
@settings(max_examples=300, deadline=None)
def test_a_cutover_leaves_out_exactly_the_keys_of_periods_before_it(at, cutover, precision):
    event = ARREST.model_copy(update={"occurred_at": at, "time_precision": precision})
    cells = cells_of(event.lat, event.lon)
    firsts = first_starts(cutover)
    kept = rollup_groups(event, cells, since=live_from(cutover))
    assert sorted(n for _, names in kept for n in names) == sorted(
        k.encode() for k in rollup_keys(event, cells) if k.start >= firsts[k.period])
    assert all(names for _, names in kept)  # no group is left with nothing to fold
    everything = dict(rollup_groups(event, cells))
    assert all(set(names) <= set(everything[group]) for group, names in kept)


def test_a_fold_with_a_cutover_folds_only_the_live_periods_and_still_writes_the_line():
    cells = cells_of(ARREST.lat, ARREST.lon)  # Sunday 16 July 2023: week of the 10th
    groups: dict = {}
    fold = RollupFold(groups, live_from(date(2023, 7, 11)))
    line = fold.add(ARREST, cells, 0, position(3), encode_event(ARREST))
    assert line == RollupFold({}).add(ARREST, cells, 0, position(3), encode_event(ARREST))
    (name_rows,) = fold.state_rows().values()
    # The day is on or after the cutover; its week (10th) and month (1st) began before.
    assert [row[0] for row in name_rows] == [f"day|6|{cells[6]}|2023-07-16|arrest"]
    assert live_from(None) is None
