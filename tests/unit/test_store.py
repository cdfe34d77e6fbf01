"""The real embedded store (chDB): schema, batched writes, redelivery, queries, H3 parity.

All tests share one store (see conftest.py); each writes to its own year so none sees
another's rows.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

import orjson
import pytest

from hotspots.accepted import envelope, line
from hotspots.contract import (
    Arrest,
    CourtOutcome,
    Event,
    Safeguarding,
    Seizure,
    Warrant,
    dead_letter,
    encode_event,
    measures_of,
)
from hotspots.geo import cell_of, cells_of, to_str
from producers.synthetic import PLACES
from sinks import queries
from sinks.queries import QueryError
from sinks.sink import ROLLUP_COLUMNS, ROWS_PER_RECORD, BatchingSink, poll_size
from sinks.store import SCHEMA
from streams.rollup import accepted_row, empty_group, fold_group, group_rows, rollup_groups

CHELMSFORD = (51.7356, 0.4685)
BASILDON = (51.5761, 0.4886)
COLCHESTER = (51.8959, 0.8919)


def at(year: int, month: int, day: int, hour: int = 12) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def arrest(n: int, when: datetime, where=CHELMSFORD, charged: bool = True) -> Arrest:
    return Arrest(event_id=f"a-{when:%Y}-{n}", occurred_at=when, lat=where[0], lon=where[1],
                  force="essex", charged=charged)


def worker_output(events: list[Event]) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    """What the worker publishes for these events, read from one partition in order: the
    full state of every rollup key an event touched (rows of the rollups topic, here one per
    envelope), and the accepted events (here one per envelope)."""
    groups: dict[str, dict] = {}
    rollups, accepted = [], []
    for offset, event in enumerate(events):
        for group_key, subs in rollup_groups(event, cells_of(event.lat, event.lon)):
            group = groups.setdefault(group_key, empty_group())
            fold_group(group, subs, measures_of(event), "0", offset)
            rollups += [(b"", orjson.dumps([row])) for row in group_rows(group, subs)]
        accepted.append(envelope([line(accepted_row(event), encode_event(event))]))
    return rollups, accepted


def write(store, settings, rollups=(), accepted=(), dead=()) -> None:
    sink = BatchingSink(store, settings)
    for key, value in rollups:
        sink.add(settings.rollups_topic, key, value)
    for value in accepted:
        sink.add(settings.accepted_topic, None, value)
    for value in dead:
        sink.add(settings.dlq_topic, None, value)
    assert sink.size == len(rollups) + len(accepted) + len(dead)
    sink.flush()
    assert sink.size == 0 and not any(sink.batches.values())


def answers(store, year: int) -> tuple:
    start, end = date(year, 1, 1), date(year, 12, 31)
    return (
        *(queries.cells(store, start, end, res=res) for res in (8, 7, 6)),
        queries.cells(store, start, end, res=6, period="day"),
        queries.summary(store, start, end),
    )


def test_schema_creates(store):
    tables = {r["name"] for r in store.query(
        "SELECT name FROM system.tables WHERE database = %(db)s", {"db": store.database})}
    assert {"rollups", "events", "dead_letters"} <= tables
    columns = [r["name"] for r in store.query(
        "SELECT name FROM system.columns WHERE database = %(db)s AND table = 'rollups' "
        "ORDER BY position", {"db": store.database})]
    assert sorted(columns) == sorted([*ROLLUP_COLUMNS, "updated_at"])
    for statement in SCHEMA:  # creating again is harmless
        store.command(statement.format(db=store.database))


def test_sink_writes_every_table(store, sink_settings):
    events = [arrest(1, at(2031, 5, 6)), arrest(2, at(2031, 5, 7), charged=False)]
    rollups, accepted = worker_output(events)
    raw = b'{"kind": "parking"}'
    letter = orjson.dumps(dead_letter(raw, "unknown_kind", "kind", "events[0]@2031"))
    write(store, sink_settings, rollups, accepted, [letter])

    rows = store.query("SELECT event_id, charged, cell8 FROM {db}.events FINAL "
                       "WHERE startsWith(event_id, 'a-2031-') ORDER BY event_id")
    assert rows == [{"event_id": "a-2031-1", "charged": 1, "cell8": cell_of(*CHELMSFORD)},
                    {"event_id": "a-2031-2", "charged": 0, "cell8": cell_of(*CHELMSFORD)}]
    dead = store.query("SELECT reason, raw FROM {db}.dead_letters WHERE source = 'events[0]@2031'")
    assert dead == [{"reason": "unknown_kind", "raw": raw.decode()}]
    assert queries.cells(store, date(2031, 5, 1), date(2031, 5, 31)) == [
        {"cell": to_str(cell_of(*CHELMSFORD)), "period_start": "2031-05-05", "kind": "arrest",
         "count": 2}]
    assert queries.summary(store, date(2031, 5, 6), date(2031, 5, 6))["arrests"] == 1
    assert queries.summary(store, date(2031, 1, 1), date(2031, 12, 31))["charged"] == 1


def test_redelivered_batch_changes_no_answer(store, sink_settings):
    events = [
        arrest(1, at(2032, 3, 1)), arrest(2, at(2032, 3, 1), BASILDON),
        arrest(3, at(2032, 3, 9), charged=False),
        Seizure(event_id="s-2032", occurred_at=at(2032, 3, 2), lat=BASILDON[0], lon=BASILDON[1],
                force="essex", drugs_grams=1.5, drug_class="A", weapons_count=2,
                weapon_type="knife", cash_gbp=250.75),
        Warrant(event_id="w-2032", occurred_at=at(2032, 3, 2, 5), lat=BASILDON[0],
                lon=BASILDON[1], force="essex", executed=True, outcome="drugs_found"),
        Safeguarding(event_id="g-2032", occurred_at=at(2032, 3, 3), lat=COLCHESTER[0],
                     lon=COLCHESTER[1], force="essex", people=3, category="cuckooing"),
        CourtOutcome(event_id="c-2032", occurred_at=at(2032, 6, 1), lat=CHELMSFORD[0],
                     lon=CHELMSFORD[1], force="essex", sentence_months=30, disposal="custody"),
    ]
    rollups, accepted = worker_output(events)
    write(store, sink_settings, rollups, accepted)
    before = answers(store, 2032)
    assert before[-1] == {
        "from": "2032-01-01", "to": "2032-12-31", "arrests": 3, "charged": 2,
        "charge_rate": round(2 / 3, 4), "weapons_seized": 2, "drugs_grams": 1.5,
        "cash_gbp": 250.75, "warrants_executed": 1, "sentence_years": 2.5, "safeguarded": 3}
    assert sum(r["count"] for r in before[0]) == len(events)

    def stored_rows() -> int:  # without FINAL: every copy not yet merged away
        return store.query("SELECT count() AS n FROM {db}.rollups "
                           "WHERE toYear(period_start) = 2032")[0]["n"]

    store.command(f"SYSTEM STOP MERGES {store.database}.rollups")
    try:
        once = stored_rows()
        write(store, sink_settings, rollups, accepted)  # the same batch again, as after a crash
        write(store, sink_settings, rollups[::-1])  # and once more, in another order
        assert stored_rows() == 3 * once  # the copies did land...
        assert answers(store, 2032) == before  # ...and change no answer
    finally:
        store.command(f"SYSTEM START MERGES {store.database}.rollups")
    assert store.query("SELECT count() AS n FROM {db}.events FINAL "
                       "WHERE toYear(occurred_at) = 2032") == [{"n": len(events)}]


def test_higher_seq_replaces_lower(store, sink_settings):
    event = arrest(1, at(2033, 2, 1))
    subs = [name for _, names in rollup_groups(event, cells_of(event.lat, event.lon))
            for name in names if name.startswith("week")]
    group = empty_group()
    seen = []
    for offset in range(3):
        fold_group(group, subs, (1, 1, 0, 0, 0, 0, 0, 0), "0", offset)
        seen.append((b"", orjson.dumps(group_rows(group, subs[:1]))))

    def count() -> int:
        (row,) = queries.cells(store, date(2033, 2, 1), date(2033, 2, 1))
        return row["count"]

    write(store, sink_settings, [seen[1]])
    assert count() == 2
    write(store, sink_settings, [seen[0]])  # an older state arriving late loses
    assert count() == 2
    write(store, sink_settings, [seen[2]])
    assert count() == 3


def test_top_orders_by_count_then_cell(store, sink_settings):
    rng = random.Random(2034)
    week = date(2034, 6, 5)  # a Monday
    places = [p[1:3] for p in PLACES[:6]]
    events = []
    for i, (lat, lon) in enumerate(places):
        for n in range(i + 1 if i < 5 else 5):  # 1, 2, 3, 4, 5, 5 arrests
            when = datetime(2034, 6, 5 + rng.randrange(7), 12, tzinfo=UTC)
            events.append(arrest(100 * i + n, when, (lat, lon), charged=n % 2 == 0))
    write(store, sink_settings, worker_output(events)[0])

    top = queries.top(store, week, "arrest")
    assert [r["rank"] for r in top] == [1, 2, 3, 4, 5, 6]
    assert [r["count"] for r in top] == [5, 5, 4, 3, 2, 1]
    tied = sorted(cell_of(lat, lon) for lat, lon in places[4:])
    assert [r["cell"] for r in top[:2]] == [to_str(c) for c in tied]
    assert top[2]["cell"] == to_str(cell_of(*places[3]))
    assert top[2]["charged"] == 2 and top[2]["week_start"] == "2034-06-05"
    assert [r["count"] for r in queries.top(store, week, "arrest", limit=3)] == [5, 5, 4]
    coarse = queries.top(store, week, "arrest", res=6)
    assert sum(r["count"] for r in coarse) == len(events)
    assert {r["cell"] for r in coarse} == {to_str(cells_of(lat, lon)[6]) for lat, lon in places}
    assert queries.top(store, week, "seizure") == []
    assert queries.top(store, date(2034, 6, 12), "arrest") == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: queries.cells(s, date(2030, 1, 1), date(2030, 2, 1), res=9), "resolution"),
        (lambda s: queries.cells(s, date(2030, 1, 1), date(2030, 2, 1), period="quarter"),
         "period"),
        (lambda s: queries.cells(s, date(2030, 1, 1), date(2030, 2, 1), res=8, period="day"),
         "daily rollups"),
        (lambda s: queries.cells(s, date(2030, 1, 1), date(2030, 2, 1), kind="parking"), "kind"),
        (lambda s: queries.top(s, date(2030, 1, 6), "parking"), "kind"),
        (lambda s: queries.top(s, date(2030, 1, 6), "arrest", res=5), "resolution"),
    ],
)
def test_query_errors(store, call, message):
    with pytest.raises(QueryError, match=message):
        call(store)


def test_h3_matches_clickhouse(store):
    rng = random.Random(8)
    points = [(rng.uniform(51.45, 52.09), rng.uniform(-0.02, 1.29)) for _ in range(500)]
    points += [(lat, lon) for _, lat, lon, *_ in PLACES]
    rows = store.query(
        """SELECT t.1 AS i, t.2 AS lat, t.3 AS lon, geoToH3(lat, lon, 8) AS c8,
                  h3ToParent(c8, 7) AS c7, h3ToParent(c8, 6) AS c6
           FROM (SELECT arrayJoin(arrayZip(range(length(%(lats)s)), %(lats)s, %(lons)s)) AS t)
           ORDER BY i
           SETTINGS geotoh3_argument_order = 'lat_lon', precise_float_parsing = 1""",
        {"lats": [p[0] for p in points], "lons": [p[1] for p in points]})
    assert len(rows) == len(points)
    for row, (lat, lon) in zip(rows, points, strict=True):
        assert (row["lat"], row["lon"]) == (lat, lon)  # the very same doubles reached the engine
        assert row["c8"] == cell_of(lat, lon, 8)
        assert {8: row["c8"], 7: row["c7"], 6: row["c6"]} == cells_of(lat, lon)


def test_polls_are_sized_so_the_buffer_stays_near_batch_max():
    # Records may carry up to ROWS_PER_RECORD rows each (worker envelopes): an empty buffer
    # takes enough to fill a batch, a nearly full one a single record, never zero.
    assert poll_size(0, 5000) == 5000 // ROWS_PER_RECORD
    assert poll_size(4999, 5000) == 1
    assert poll_size(9000, 5000) == 1
    assert poll_size(0, 10) == 1
    for buffered in range(0, 5000, 37):
        assert buffered + poll_size(buffered, 5000) * ROWS_PER_RECORD <= 5000 + ROWS_PER_RECORD
