"""The landing tables (sinks.landing) store exactly the rows the Python decoders make.

Each test writes the same worker output twice into the real engine: once through the
landing tables (ClickHouse parses the envelopes) and once decoded here (sinks.sink's
Python path). Read without FINAL, every row must then appear exactly twice, identical
in every column but the insert time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from clickhouse_connect.driver.exceptions import OperationalError

from hotspots.accepted import FIELDS, envelope, line
from hotspots.contract import (
    Arrest,
    Event,
    Safeguarding,
    Seizure,
    StopSearch,
    Warrant,
    encode_event,
    measures_of,
)
from hotspots.geo import cells_of
from sinks import landing
from sinks.sink import (
    DEAD_LETTER_COLUMNS,
    EVENT_COLUMNS,
    ROLLUP_COLUMNS,
    BatchingSink,
    _events,
    _rollup,
)
from streams.rollup import accepted_row, empty_group, fold_group, group_rows, rollup_groups

PLACES = [(51.7356123456789, 0.4685), (51.5761, 0.48860000000000003), (51.89590001, 0.8919)]


def events_of(year: int, tag: str) -> list[Event]:
    base = datetime(year, 3, 1, 9, 30, tzinfo=UTC)
    out: list[Event] = []
    for i in range(40):
        lat, lon = PLACES[i % 3]
        when = base + timedelta(days=i * 5, seconds=i * 7919, microseconds=i * 123457)
        common = {"event_id": f"{tag}-{i}", "occurred_at": when, "lat": lat, "lon": lon,
                  "force": "essex", "operation": None if i % 2 else f"Op Ünïcode {i}"}
        kind = i % 5
        if kind == 0:
            out.append(Arrest(**common, charged=i % 3 == 0, offence="possession\twith intent"))
        elif kind == 1:
            out.append(Seizure(**common, drugs_grams=0.001 * i, drug_class="A", weapons_count=i,
                               cash_gbp=12345.67 + i))
        elif kind == 2:
            out.append(Warrant(**common, executed=True, outcome="drugs_found"))
        elif kind == 3:
            out.append(Safeguarding(**common, people=i, category="cuckooing"))
        else:
            out.append(StopSearch(**common, time_precision="month", outcome='said "no" \\ left'))
    return out


def raw_of(i: int, event: Event) -> bytes:
    """The bytes as a producer may have sent them: compact, with tabs and CRs as JSON
    whitespace, or pretty-printed over several lines."""
    compact = encode_event(event)
    if i % 4 == 1:
        return compact.replace(b",", b",\t").replace(b":", b":\r")
    if i % 4 == 2:
        return orjson.dumps(orjson.loads(compact), option=orjson.OPT_INDENT_2)
    return compact


def worker_output(events: list[Event]) -> tuple[list[bytes], list[bytes]]:
    """The worker's envelopes for these events: rollups (several rows each) and accepted."""
    groups: dict[str, dict] = {}
    rollup_rows, lines = [], []
    for offset, event in enumerate(events):
        cells = cells_of(event.lat, event.lon)
        for group_key, names in rollup_groups(event, cells):
            group = groups.setdefault(group_key, empty_group())
            fold_group(group, names, measures_of(event), "0", offset)
            rollup_rows += group_rows(group, names)
        lines.append(line(accepted_row(event, cells, (0, offset)), raw_of(offset, event)))
    rollups = [orjson.dumps(rollup_rows[i:i + 50]) for i in range(0, len(rollup_rows), 50)]
    accepted = [envelope(lines[i:i + 7]) for i in range(0, len(lines), 7)]
    return rollups, accepted


def twice_each(store, table: str, columns: tuple[str, ...], where: str) -> tuple[int, int]:
    """(rows, rows not stored exactly twice with the same values)."""
    cols = ", ".join(columns)
    total = store.query(f"SELECT count() AS n FROM {{db}}.{table} WHERE {where}")[0]["n"]
    odd = store.query(f"SELECT count() AS n FROM (SELECT {cols}, count() AS c "
                      f"FROM {{db}}.{table} WHERE {where} GROUP BY {cols} HAVING c != 2)")
    return total, odd[0]["n"]


def test_landing_stores_what_the_python_decoders_store(store, sink_settings):
    events = events_of(2051, "land")
    rollups, accepted = worker_output(events)
    sink = BatchingSink(store, sink_settings)
    for value in rollups:
        assert landing.ROLLUPS.text(value) is not None
        sink.add(sink_settings.rollups_topic, b"", value)
    for value in accepted:
        assert landing.EVENTS.text(value) is not None
        sink.add(sink_settings.accepted_topic, b"", value)
    rollup_rows = [row for value in rollups for row in _rollup(b"", value)]
    event_rows = [row for value in accepted for row in _events(b"", value)]
    assert sink.size == len(rollup_rows) + len(event_rows)  # counted without decoding
    assert not any(sink.batches.values())  # nothing decoded here
    sink.flush()
    assert sink.size == 0 and not any(sink.landed.values())
    store.insert("rollups", rollup_rows, ROLLUP_COLUMNS)
    store.insert("events", event_rows, EVENT_COLUMNS)

    n, odd = twice_each(store, "events", EVENT_COLUMNS, "startsWith(event_id, 'land-')")
    assert (n, odd) == (2 * len(events), 0)
    n, odd = twice_each(store, "rollups", ROLLUP_COLUMNS, "toYear(period_start) IN (2051, 2052)")
    assert (n, odd) == (2 * len(rollup_rows), 0)
    # The payload is the bytes as they came, pretty-printed ones included.
    stored = {r["event_id"]: r["payload"] for r in store.query(
        "SELECT event_id, payload FROM {db}.events WHERE startsWith(event_id, 'land-')")}
    assert stored["land-1"] == raw_of(1, events[1]).decode()
    assert stored["land-2"] == raw_of(2, events[2]).decode()
    assert "\n" in stored["land-2"] and "\t" in stored["land-1"] and "\r" in stored["land-1"]


def test_a_bad_envelope_is_a_dead_letter_and_the_rest_land(store, sink_settings):
    events = events_of(2053, "bad")[:10]
    rollups, accepted = worker_output(events)
    bad_rollups = b'[["week|8|not a cell|2053-01-05|arrest", 1]]'
    bad_events = b"A2\n" + b"[not json\t{}"
    sink = BatchingSink(store, sink_settings)
    for value in [*rollups[:1], bad_rollups, *rollups[1:]]:
        sink.add(sink_settings.rollups_topic, b"", value)
    for value in [bad_events, *accepted]:
        sink.add(sink_settings.accepted_topic, b"", value)
    sink.flush()

    got = store.query("SELECT count() AS n FROM {db}.events FINAL WHERE startsWith(event_id, 'bad-')")
    assert got[0]["n"] == len(events)
    rollup_rows = [row for value in rollups for row in _rollup(b"", value)]
    got = store.query("SELECT count() AS n FROM {db}.rollups WHERE toYear(period_start) = 2053")
    assert got[0]["n"] == len(rollup_rows)
    letters = store.query(f"SELECT {', '.join(DEAD_LETTER_COLUMNS)} FROM {{db}}.dead_letters "
                          "WHERE reason = 'bad_envelope' AND raw IN (%(r)s, %(e)s)",
                          {"r": bad_rollups.decode(), "e": bad_events.decode()})
    assert sorted(r["source"] for r in letters) == sorted(
        [sink_settings.rollups_topic, sink_settings.accepted_topic])
    assert all(r["detail"] for r in letters)


def test_v1_envelopes_are_decoded_here(store, sink_settings):
    event = events_of(2054, "v1")[0]
    values = accepted_row(event, cells_of(event.lat, event.lon))
    old = orjson.dumps([{**dict(zip(FIELDS[:-1], values[:-1], strict=True)),
                         "payload": encode_event(event).decode()}])  # as written before v2
    assert not landing.EVENTS.fits(old) and not landing.ROLLUPS.fits(b"[]")
    sink = BatchingSink(store, sink_settings)
    sink.add(sink_settings.accepted_topic, b"", old)
    assert len(sink.batches["events"]) == 1 and not sink.landed[sink_settings.accepted_topic]
    sink.flush()
    got = store.query("SELECT payload FROM {db}.events FINAL WHERE event_id = 'v1-0'")
    assert got == [{"payload": encode_event(event).decode()}]


class _Unreachable:
    """The real store, but its landing inserts fail as a server that cannot be reached does."""

    def __init__(self, store) -> None:
        self.store, self.inserts = store, 0

    def insert_raw(self, *args) -> None:
        raise OperationalError("connection refused")

    def insert(self, *args) -> None:
        self.inserts += 1
        self.store.insert(*args)


def test_an_unreachable_store_keeps_the_batch_and_decodes_nothing(store, sink_settings):
    rollups, _ = worker_output(events_of(2055, "down")[:5])
    unreachable = _Unreachable(store)
    sink = BatchingSink(unreachable, sink_settings)
    for value in rollups:
        sink.add(sink_settings.rollups_topic, b"", value)
    size = sink.size
    with pytest.raises(OperationalError):
        sink.flush()  # SinkLoop retries the whole batch later, with backoff
    assert unreachable.inserts == 0 and sink.size == size
    assert len(sink.landed[sink_settings.rollups_topic]) == len(rollups)
    sink.store = store
    sink.flush()
    got = store.query("SELECT count() AS n FROM {db}.rollups WHERE toYear(period_start) = 2055")
    assert got[0]["n"] == size
