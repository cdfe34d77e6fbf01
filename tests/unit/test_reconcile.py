"""`reconcile`: rollups recomputed from the raw events in the store, against the real chDB.

Tests share the session store (see conftest.py) and always reconcile a date range within
their own year (2043-2050), so no other test's rows are seen.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest
from click.testing import CliRunner

from hotspots import cli
from hotspots.accepted import envelope, line
from hotspots.contract import (
    MEASURES,
    Arrest,
    CourtOutcome,
    Event,
    RecordedCrime,
    Safeguarding,
    Seizure,
    Warrant,
    encode_event,
    measures_of,
)
from hotspots.geo import to_str
from hotspots.periods import local_date, start_of
from sinks.reconcile import MAX_EXAMPLES, reconcile, summary_text
from streams.rollup import RollupKey, accepted_row, rollup_keys
from tests.unit.test_store import BASILDON, CHELMSFORD, COLCHESTER, worker_output, write


def last_sunday(year: int, month: int) -> date:
    day = date(year, month + 1, 1) - timedelta(days=1)
    return day - timedelta(days=(day.weekday() + 1) % 7)


def utc(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def year_events(year: int) -> list[Event]:
    """Every kind of measure, instants either side of both clock changes and of a month
    end at midnight London time, and a month-precision event."""
    spring, autumn = last_sunday(year, 3), last_sunday(year, 10)
    common = {"force": "essex"}
    at = {"lat": CHELMSFORD[0], "lon": CHELMSFORD[1], **common}
    edges = [
        utc(spring - timedelta(days=1), 23, 30),  # GMT: the same date in London
        utc(spring, 0, 30), utc(spring, 1, 30),  # either side of 01:00 UTC, the change
        utc(spring, 23, 30),  # BST: Monday 00:30 in London, the next ISO week
        utc(autumn - timedelta(days=1), 23, 30),  # BST: Sunday in London
        utc(autumn, 0, 59), utc(autumn, 1, 0),  # the last BST minute, then GMT
        utc(autumn, 23, 30),  # GMT: still Sunday in London
        utc(date(year, 6, 30), 23, 30),  # BST: 1 July in London, the next month
        utc(date(year, 12, 31), 23, 30),  # GMT: still 31 December
    ]
    events: list[Event] = [
        Arrest(event_id=f"rc-{year}-a{i}", occurred_at=when, charged=i % 2 == 0, **at)
        for i, when in enumerate(edges)]
    events += [
        Seizure(event_id=f"rc-{year}-s", occurred_at=utc(date(year, 5, 4), 10), lat=BASILDON[0],
                lon=BASILDON[1], drugs_grams=12.5, drug_class="B", weapons_count=1,
                weapon_type="knife", cash_gbp=99.99, **common),
        Warrant(event_id=f"rc-{year}-w", occurred_at=utc(date(year, 5, 5), 6), lat=BASILDON[0],
                lon=BASILDON[1], executed=True, outcome="cash_found", **common),
        Safeguarding(event_id=f"rc-{year}-g", occurred_at=utc(date(year, 9, 1), 15),
                     lat=COLCHESTER[0], lon=COLCHESTER[1], people=2, category="county_lines",
                     **common),
        CourtOutcome(event_id=f"rc-{year}-c", occurred_at=utc(date(year, 11, 2), 11),
                     sentence_months=18, disposal="custody", **at),
        # police.uk style: the month is all that is known (midnight London, 1 August).
        RecordedCrime(event_id=f"rc-{year}-r", occurred_at=utc(date(year, 7, 31), 23),
                      time_precision="month", crime_type="Drugs", lat=COLCHESTER[0],
                      lon=COLCHESTER[1], **common),
    ]
    return events


def expected_rollups(events: list[Event]) -> dict[RollupKey, list[int]]:
    sums: dict[RollupKey, list[int]] = defaultdict(lambda: [0] * len(MEASURES))
    for event in events:
        for key in rollup_keys(event):
            sums[key] = [a + b for a, b in zip(sums[key], measures_of(event), strict=True)]
    return dict(sums)


def keys_in(keys, start: date, end: date) -> set[RollupKey]:
    return {k for k in keys if start_of(start, k.period) <= k.start <= end}


def state_record(key: RollupKey, measures: list[int], seq: int = 10**6) -> tuple[bytes, bytes]:
    """A row of the rollups topic whose state wins over the worker's (a higher seq)."""
    return b"", orjson.dumps([[key.encode(), seq, *measures]])


def accepted(events: list[Event]) -> list[bytes]:
    return [envelope([line(accepted_row(e), encode_event(e))]) for e in events]


def year(y: int) -> tuple[date, date]:
    """Each test's range: from 1 February, so that no week of the year before overlaps it."""
    return date(y, 2, 1), date(y, 12, 31)


def test_sql_london_day_matches_python_at_clock_changes(store, sink_settings):
    events = year_events(2043)
    assert any(local_date(e.occurred_at) != e.occurred_at.date() for e in events)  # edges bite
    write(store, sink_settings, accepted=accepted(events))
    rows = store.query("SELECT event_id, toDate(occurred_at, 'Europe/London') AS day "
                       "FROM {db}.events FINAL WHERE startsWith(event_id, 'rc-2043-')")
    assert {r["event_id"]: r["day"] for r in rows} == {
        e.event_id: local_date(e.occurred_at) for e in events}


def test_consistent_year_has_no_drift(store, sink_settings):
    events = year_events(2043)
    rollups, rows = worker_output(events)
    write(store, sink_settings, rollups, rows)
    result = reconcile(store, *year(2043))
    keys = expected_rollups(events)
    assert {k.period for k in keys} == {"month", "week", "day"}
    assert result == {
        "from": "2043-02-01", "to": "2043-12-31", "ok": True, "keys_checked": len(keys),
        "drifted_keys": 0, "missing_in_rollups": 0, "extra_in_rollups": 0,
        "duplicate_event_id_count": 0, "duplicate_event_ids": [], "drift": []}
    assert summary_text(result).startswith("reconcile 2043-02-01..2043-12-31: OK")


def test_wrong_count_is_reported_for_exactly_that_key(store, sink_settings):
    events = year_events(2044)
    rollups, rows = worker_output(events)
    write(store, sink_settings, rollups, rows)
    truth = expected_rollups(events)
    key = next(k for k in truth if k.period == "week" and k.res == 7)
    wrong = list(truth[key])
    wrong[0] += 5
    write(store, sink_settings, [state_record(key, wrong)])

    result = reconcile(store, *year(2044))
    assert result["drift"] == [{
        "period": "week", "res": 7, "cell": to_str(key.cell), "period_start": key.start.isoformat(),
        "kind": key.kind, "measure": "count", "expected": truth[key][0],
        "stored": truth[key][0] + 5}]
    assert (result["ok"], result["keys_checked"], result["drifted_keys"],
            result["missing_in_rollups"], result["extra_in_rollups"]) == (False, len(truth), 1, 0, 0)
    text = summary_text(result)
    assert "DRIFT" in text and to_str(key.cell) in text


def test_missing_extra_and_all_zero_rollups(store, sink_settings):
    events = year_events(2045)
    # An event whose rollups never arrived, alone in its cell, week and month.
    orphan = Arrest(event_id="rc-2045-orphan", occurred_at=utc(date(2045, 2, 14), 9), lat=COLCHESTER[0],
                    lon=COLCHESTER[1], force="essex", charged=True)
    rollups, _ = worker_output(events)
    write(store, sink_settings, rollups, accepted([*events, orphan]))
    orphan_keys = rollup_keys(orphan)
    assert not set(orphan_keys) & set(expected_rollups(events))
    # A rollup with no events behind it; all-zero rows, which count as absent, for a key
    # with no events and for one of the orphan's keys.
    extra = RollupKey("week", 8, orphan_keys[0].cell, date(2045, 12, 4), "seizure")
    zero = [0] * len(MEASURES)
    write(store, sink_settings, [state_record(extra, [1, 0, 0, 2, 0, 0, 0, 0]),
                                 state_record(RollupKey("month", 6, orphan_keys[2].cell,
                                                        date(2045, 3, 1), "warrant"), zero),
                                 state_record(orphan_keys[2], zero)])

    result = reconcile(store, *year(2045))
    assert len(orphan_keys) == 7
    assert (result["ok"], result["drifted_keys"], result["missing_in_rollups"],
            result["extra_in_rollups"]) == (False, 8, 7, 1)
    assert result["keys_checked"] == len(expected_rollups(events)) + 7 + 1
    drift = {(d["period"], d["res"], d["cell"], d["period_start"], d["kind"], d["measure"]):
             (d["expected"], d["stored"]) for d in result["drift"]}
    assert len(drift) == len(result["drift"]) == 7 * 2 + 2  # count and charged; count and weapons
    for key in orphan_keys:
        name = (key.period, key.res, to_str(key.cell), key.start.isoformat(), "arrest")
        assert drift[(*name, "count")] == drift[(*name, "charged")] == (1, 0)
    name = ("week", 8, to_str(extra.cell), "2045-12-04", "seizure")
    assert drift[(*name, "count")] == (0, 1) and drift[(*name, "weapons")] == (0, 2)


def test_date_range_limits_the_check_to_overlapping_periods(store, sink_settings):
    events = year_events(2046)
    rollups, rows = worker_output(events)
    write(store, sink_settings, rollups, rows)
    truth = expected_rollups(events)
    # Corrupt the week of the spring clock change (its Monday is in March).
    key = next(k for k in truth if k.period == "week" and k.res == 8
               and k.start == start_of(last_sunday(2046, 3), "week"))
    write(store, sink_settings, [state_record(key, [m * 2 for m in truth[key]])])

    inside = reconcile(store, key.start + timedelta(days=2), key.start + timedelta(days=3))
    assert inside["drifted_keys"] == 1 and {d["period_start"] for d in inside["drift"]} == {
        key.start.isoformat()}
    assert inside["keys_checked"] == len(keys_in(truth, key.start + timedelta(days=2),
                                                 key.start + timedelta(days=3)))
    for start, end in [(key.start + timedelta(days=7), date(2046, 12, 31)),
                       (date(2046, 1, 1), key.start - timedelta(days=1))]:
        result = reconcile(store, start, end)
        assert result["ok"] and result["drift"] == [], (start, end)
        assert result["keys_checked"] == len(keys_in(truth, start, end)) > 0
    with pytest.raises(ValueError, match="empty date range"):
        reconcile(store, date(2046, 2, 1), date(2046, 1, 1))


def test_duplicate_event_ids_in_the_raw_table(store, sink_settings):
    first = Arrest(event_id="rc-2047-dup", occurred_at=utc(date(2047, 4, 1), 10), lat=BASILDON[0],
                   lon=BASILDON[1], force="essex", charged=False)
    # The same id with other content in another week: the raw table keeps both rows.
    second = first.model_copy(update={"occurred_at": utc(date(2047, 4, 20), 10)})
    rollups, _ = worker_output([first])
    write(store, sink_settings, rollups, accepted([first, second, first]))

    result = reconcile(store, *year(2047))
    assert not result["ok"]
    assert (result["duplicate_event_id_count"], result["duplicate_event_ids"]) == (1, ["rc-2047-dup"])
    assert result["missing_in_rollups"] == 4  # the second copy's weeks (3) and day
    assert "rc-2047-dup" in summary_text(result)
    later = reconcile(store, date(2047, 5, 1), date(2047, 12, 31))
    assert later["ok"] and later["duplicate_event_ids"] == []


def test_drift_examples_are_capped(store, sink_settings):
    orphans = [Arrest(event_id=f"rc-2048-{i}", occurred_at=utc(date(2048, 2, 3) + timedelta(days=i), 12),
                      lat=CHELMSFORD[0], lon=CHELMSFORD[1], force="essex")
               for i in range(90)]
    write(store, sink_settings, accepted=accepted(orphans))
    result = reconcile(store, *year(2048))
    assert result["missing_in_rollups"] == result["drifted_keys"] == len(expected_rollups(orphans))
    assert len(result["drift"]) == MAX_EXAMPLES
    assert result["drift"] == sorted(result["drift"], key=lambda d: (
        d["period"], d["res"], d["kind"], d["period_start"]))


def test_api_reconcile(store, api_client):
    client = api_client()
    response = client.get("/v1/reconcile", params={"from": "2043-02-01", "to": "2043-12-31"})
    assert response.status_code == 200
    assert response.json() == reconcile(store, *year(2043))
    assert client.get("/v1/reconcile", params={"from": "2043-03-01", "to": "2043-02-01"}
                      ).status_code == 400


def test_cli_exit_codes(store, sink_settings, cli_on_store):
    write(store, sink_settings, accepted=accepted([Arrest(
        event_id="rc-2049-x", occurred_at=utc(date(2049, 3, 3), 12), lat=CHELMSFORD[0],
        lon=CHELMSFORD[1], force="essex")]))
    seen = cli_on_store
    runner = CliRunner()
    ok = runner.invoke(cli.main, ["reconcile", "--from", "2050-01-01", "--to", "2050-12-31"])
    assert ok.exit_code == 0 and ": OK" in ok.output
    bad = runner.invoke(cli.main, ["reconcile", "--from", "2049-01-01", "--to", "2049-12-31",
                                   "--format", "json"])
    assert bad.exit_code == 4
    assert orjson.loads(bad.output)["missing_in_rollups"] == 7
    assert seen[-1] == ("/v1/reconcile", {"from": "2049-01-01", "to": "2049-12-31"})
    assert runner.invoke(cli.main, ["reconcile", "--from", "2049-02-01", "--to", "2049-01-01"]
                         ).exit_code == 2


def test_cli_on_an_empty_embedded_store(tmp_path):
    """The real command in its own process (chDB: one store per process), no stack running."""
    with socket.socket() as sock:  # a port nothing listens on, so the CLI opens the store
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "HOTSPOTS_DATA_DIR": str(tmp_path), "HOTSPOTS_API_PORT": str(port),
           "HOTSPOTS_JUSTIFICATION": "unit test"}  # recorded in that store's audit log
    proc = subprocess.run([sys.executable, "-m", "hotspots.cli", "reconcile", "--format", "json"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    result = orjson.loads(proc.stdout)
    assert result["ok"] and result["keys_checked"] == 0 and result["drift"] == []
