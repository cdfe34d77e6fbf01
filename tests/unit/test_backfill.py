"""The backfill (sinks.backfill): its store-built rollups are the worker's, key by key, and
keep to the periods before the cutover; its admission in the store loads each event once and
dead-letters the rest. Against the real embedded engine; the broker's part is in
tests/integration/test_backfill.py."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.budget import bulk, product_fold
from bench.pipeline import event_lines
from hotspots.contract import MEASURES, Arrest
from hotspots.geo import partition_key
from hotspots.periods import first_starts
from hotspots.settings import WorkerSettings
from sinks.backfill import (
    Split,
    _rowbinary,
    accepted_line,
    build_rollups,
    check_chunk,
    drop_sql,
    has_live_key,
    start_sql,
)
from sinks.landing import EVENTS
from streams.rollup import RollupKey, rollup_keys


def accepted_lines(value: bytes, partition: int, offset: int, admission, now) -> list[bytes]:
    return [accepted_line(admission.admit(raw, now), raw, partition, offset, index)
            for index, raw in enumerate(value.split(b"\n"))]


def test_rollups_built_from_the_raw_events_are_the_worker_s(store) -> None:
    # Ten years no other test writes, so weeks straddle months and London's clock changes.
    lines = event_lines(3000, 7, date(1985, 1, 1), 3650, "histunit")
    for i in range(0, 3000, 7):  # known to the month only, as police.uk's: no weeks, no days
        lines[i] = lines[i][:-1] + b',"time_precision":"month"}'
    records = bulk(lines, 250)
    worker = {name: state for group in product_fold(records).values()
              for name, state in group["k"].items()}
    admission, now = WorkerSettings().admission(), datetime.now(UTC)
    # No merge may remove the duplicate below before the build: only FINAL must.
    store.command(f"SYSTEM STOP MERGES {store.database}.events")
    try:
        for offset, value in enumerate(records):
            lines = accepted_lines(value, 0, offset, admission, now)
            store.insert_raw(EVENTS.table, EVENTS.column, b"\n".join(lines), EVENTS.fmt)
            if offset == 3:  # a record read twice, as after a crash
                store.insert_raw(EVENTS.table, EVENTS.column, b"\n".join(lines), EVENTS.fmt)
        build_rollups(store, "startsWith(event_id, 'histunit-')")
    finally:
        store.command(f"SYSTEM START MERGES {store.database}.events")
    rows = store.query(f"""SELECT period, res, cell, period_start, kind, seq, {", ".join(MEASURES)}
                           FROM {{db}}.rollups FINAL
                           WHERE period_start BETWEEN '1984-12-01' AND '1995-01-31'""")
    built = {RollupKey(r["period"], r["res"], r["cell"], r["period_start"], r["kind"]).encode():
             [r["seq"], *(r[m] for m in MEASURES)] for r in rows}
    months_only = len(range(0, 3000, 7))  # monthly x 3 res; the others weekly too, and daily
    assert sum(state[0] for state in worker.values()) == months_only * 3 + (3000 - months_only) * 7
    assert built == worker


def _event(n: int, **changes: object) -> bytes:
    return orjson.dumps({"kind": "arrest", "event_id": f"histsql-{n}", "force": "essex",
                         "occurred_at": f"1986-03-{n + 1:02d}T12:00:00Z", "lat": 51.73, "lon": 0.47,
                         **changes})


def test_the_store_s_admission_loads_each_event_once_and_dead_letters_the_rest(store) -> None:
    admission, now = WorkerSettings().admission(), datetime.now(UTC)
    # Cutover Tuesday 4 March 1986: the worker folds from that day, from Monday 10 March,
    # and from April; an event with any such key is forwarded to it too.
    split = Split.of(date(1986, 3, 4))  # no weeks for the spike baselines here
    start_sql(store, admission, split)
    bulk = b"\n".join([
        _event(0), _event(1, charged=True), b"  ",  # a blank line: skipped, as by the worker
        _event(2, lat="51.7"),  # refused: a string is not a latitude
        _event(3, force="Essex\u2028Police"),  # not sure in SQL: Python accepts it (4 March: live)
        _event(1, charged=True),  # the same event again, at another place
        _event(5).replace(b"essex", b"ess\xffx"),  # not UTF-8: refused, as the bytes came
        _event(6, time_precision="month"),  # March, known to the month: the backfill's month
        _event(7, occurred_at="1986-04-10T12:00:00Z", time_precision="month"),  # April: live
    ])
    single = orjson.dumps(orjson.loads(_event(4)), option=orjson.OPT_INDENT_2)  # lines, not one
    records = [_rowbinary(0, 7, True, bulk), _rowbinary(1, 3, False, single),
               _rowbinary(1, 4, False, b"[]")]
    for _ in range(2):  # checked, then landed and checked again, as after a crash
        store.insert_raw("backfill_records", ("partition", "offset", "bulk", "value"), b"".join(records),
                         "RowBinary")
        dead, forward = check_chunk(store, admission, "t.events.v1", now, split)
        assert dead == 3
        key = partition_key(51.73, 0.47)
        assert sorted(forward) == sorted([(key, single), (key, bulk.split(b"\n")[4]),
                                          (key, bulk.split(b"\n")[8])])
    rows = store.query("SELECT event_id, charged, force FROM {db}.events FINAL "
                       "WHERE startsWith(event_id, 'histsql-') ORDER BY event_id")
    assert [(r["event_id"], r["charged"]) for r in rows] == [
        ("histsql-0", 0), ("histsql-1", 1), ("histsql-3", 0), ("histsql-4", 0), ("histsql-6", 0),
        ("histsql-7", 0)]
    assert rows[2]["force"] == "Essex\u2028Police"
    letters = store.query("SELECT DISTINCT reason, source FROM {db}.dead_letters "
                          "WHERE source LIKE 't.events.v1%' ORDER BY source")
    assert [(r["reason"], r["source"]) for r in letters] == [
        ("bad_coordinates", "t.events.v1[0]@7#3"), ("not_json", "t.events.v1[0]@7#6"),
        ("not_object", "t.events.v1[1]@4")]
    assert store.query("SELECT count() AS n FROM {db}.backfill_records")[0]["n"] == 0  # emptied


def test_the_build_keeps_to_the_periods_before_each_kinds_cutover(store) -> None:
    # A year no other test writes. Cutover Wednesday 8 June 1977: the build has the days
    # before it, the weeks before Monday 13 June, the months before 1 July.
    days = [(5, 30), (6, 2), (6, 3), (6, 7), (6, 8), (6, 12), (6, 14), (7, 2)]
    lines = [orjson.dumps({"kind": "arrest", "event_id": f"histcut-{month}-{day}", "force": "essex",
                           "occurred_at": f"1977-{month:02d}-{day:02d}T12:00:00Z",
                           "lat": 51.73, "lon": 0.47})
             for month, day in days]
    admission, now = WorkerSettings().admission(), datetime.now(UTC)
    store.insert_raw(EVENTS.table, EVENTS.column,
                     b"\n".join(accepted_lines(b"\n".join(lines), 0, 0, admission, now)), EVENTS.fmt)
    build_rollups(store, "startsWith(event_id, 'histcut-')", first_starts(date(1977, 6, 8)))
    rows = store.query("SELECT period, toString(period_start) AS start, seq FROM {db}.rollups FINAL "
                       "WHERE toYear(period_start) = 1977 AND res = 6 ORDER BY period, period_start")
    assert [(r["period"], r["start"], r["seq"]) for r in rows] == [
        ("day", "1977-05-30", 1), ("day", "1977-06-02", 1), ("day", "1977-06-03", 1),
        ("day", "1977-06-07", 1),
        ("month", "1977-05-01", 1), ("month", "1977-06-01", 6),
        ("week", "1977-05-30", 3), ("week", "1977-06-06", 3)]


@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1),  # noqa: DTZ001
                    timezones=st.just(UTC)),
       st.dates(min_value=date(2019, 12, 1), max_value=date(2030, 2, 1)),
       st.sampled_from(["day", "month"]))
@settings(max_examples=300, deadline=None)
def test_an_event_is_forwarded_when_the_worker_folds_any_of_its_keys(at, cutover, precision) -> None:
    event = Arrest(event_id="x", occurred_at=at, lat=51.73, lon=0.47, force="essex",
                   time_precision=precision)
    before = first_starts(cutover)
    assert has_live_key(event, before) == any(k.start >= before[k.period] for k in rollup_keys(event))


def test_the_spike_baselines_weeks_are_forwarded_too_and_no_earlier_day() -> None:
    split = Split.of(date(2026, 12, 2), spike_weeks=2)  # a Wednesday: its week began on 30 Nov
    assert split.seed_from == date(2026, 11, 16)

    def event(at: datetime, precision: str = "day") -> Arrest:
        return Arrest(event_id="x", occurred_at=at, lat=51.73, lon=0.47, force="essex",
                      time_precision=precision)

    assert split.forwards(event(datetime(2026, 11, 16, 0, 30, tzinfo=UTC)))
    assert not split.forwards(event(datetime(2026, 11, 15, 23, 30, tzinfo=UTC)))  # Sunday in London
    assert not split.forwards(event(datetime(2026, 11, 20, tzinfo=UTC), "month"))  # no week to compare
    assert split.forwards(event(datetime(2027, 1, 20, tzinfo=UTC), "month"))  # the worker's month
    assert Split.of(date(2026, 12, 2)).seed_from == date(2026, 12, 2)  # none: from the cutover on


def test_two_runs_on_one_store_keep_to_their_own_buffers(store) -> None:
    """On a server two backfills may run at once: one's check must neither take nor empty
    the other's landed records (they would be committed unchecked)."""
    admission, now, split = WorkerSettings().admission(), datetime.now(UTC), Split.of(date(2100, 1, 1))
    for tables in ("backfill_a", "backfill_b"):
        start_sql(store, admission, split, tables)
    try:
        store.insert_raw("backfill_a_records", ("partition", "offset", "bulk", "value"),
                         _rowbinary(0, 1, False, _event(8, event_id="histtwo-a")), "RowBinary")
        store.insert_raw("backfill_b_records", ("partition", "offset", "bulk", "value"),
                         _rowbinary(0, 1, False, b"not json"), "RowBinary")
        assert check_chunk(store, admission, "two.b", now, split, "backfill_b") == (1, [])
        assert store.query("SELECT count() AS n FROM {db}.backfill_a_records")[0]["n"] == 1
        assert check_chunk(store, admission, "two.a", now, split, "backfill_a") == (0, [])
        assert store.query("SELECT count() AS n FROM {db}.events FINAL WHERE event_id = 'histtwo-a'"
                           )[0]["n"] == 1
    finally:
        for tables in ("backfill_a", "backfill_b"):
            drop_sql(store, tables)
    assert not store.query(f"SELECT name FROM system.tables WHERE database = '{store.database}' "
                           "AND startsWith(name, 'backfill_a')")


def test_every_product_reader_of_events_reads_it_with_final() -> None:
    """The backfill's check and build insert without the replacing merge of their own block
    (optimize_on_insert = 0), so an event can sit in events twice until a background merge:
    every query the product makes of events must read it with FINAL."""
    root = Path(__file__).resolve().parents[2]
    reads = re.compile(r"(?:FROM|JOIN)\s+[\w{}.]*\bevents\b(\s+FINAL)?")
    found = []
    for folder in ("hotspots", "sinks", "streams", "dashboards"):
        for path in (root / folder).rglob("*"):
            if path.suffix in {".py", ".json", ".sql", ".js", ".html"}:
                found += [(path.name, m.group(1)) for m in reads.finditer(path.read_text())]
    assert len(found) >= 5  # the scan sees the product's readers (drill-down, reconcile, build...)
    assert [name for name, final in found if not final] == []
