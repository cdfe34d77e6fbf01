"""sinks/admission_sql.py against the Python admission, on the real engine (chDB).

Sound: a line the SQL calls sure is one the Python admission accepts, and its row is the row
the worker's path stores (accepted_row through the sink's landing table), column for column:
cells (geoToH3's argument order), London weeks and months, milliseconds, measures.
Useful: every accepted event, written as the product's producer writes it (encode_event), is
sure unless its text needs an escape, so a bulk load seldom falls back to Python.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotspots import accepted
from hotspots.contract import InvalidEvent, encode_event
from hotspots.geo import cells_of
from hotspots.settings import WorkerSettings
from sinks import admission_sql
from sinks.landing import EVENTS
from sinks.store import SCHEMA, rowbinary_string
from streams.rollup import accepted_row
from tests.unit.test_hostile import KIND_FIELDS, valid_record

DB = "admission_sql_test"
ADMISSION = WorkerSettings().admission()
COLUMNS = accepted.FIELDS[:-1]  # the events columns but payload: all but src, the source position

BASE = {"kind": "seizure", "event_id": "s-1", "occurred_at": "2021-03-28T00:30:00Z", "lat": 51.73,
        "lon": 0.47, "force": "essex"}


def line(**changes: Any) -> bytes:
    return orjson.dumps({k: v for k, v in {**BASE, **changes}.items() if v is not ...})


# Edges, each either refused by Python or accepted with the SQL's row (or left to Python).
CORPUS: list[bytes] = [
    line(), line(v=1), line(v=1.0), line(v=True), line(v=2), line(v="1"),
    line(kind="unknown"), line(kind=None), line(kind=1), line(kind=...),
    *(line(occurred_at=t) for t in (
        "2015-02-29T00:00:00Z", "2016-02-29T23:59:59Z", "2015-01-01T24:00:00Z",
        "2015-01-01T23:60:00Z", "2015-01-01T23:59:60Z", "2015-01-01t00:00:00z",
        "2015-01-01 00:00:00Z", "2015-01-01T00:00:00.1234567Z", "2015-01-01T00:00:00.5Z",
        "2015-01-01T00:00:00.000001+05:30", "2015-01-01T00:00:00.9999995Z", "2015-01-01T00:00:00+24:00",
        "2015-01-01T00:00:00-23:59", "2015-01-01T00:00:00+14:00", "2015-01-01T00:00:00-00:00",
        "2015-01-01T00:00:00", "2015-01-01", "1969-12-31T23:59:59Z", "1970-01-05T00:00:00Z",
        "1970-01-04T23:59:59.999999Z", "1970-01-05T01:00:00+01:00", "2200-01-01T00:00:00Z",
        "2021-03-28T01:00:00Z", "2021-03-28T00:59:59.999Z", "2021-10-31T01:30:00+01:00",
        "2021-10-31T01:30:00Z", "2021-12-31T23:59:59-01:00", "1700000000", "")),
    line(occurred_at=1700000000), line(occurred_at=None),
    *(line(lat=v) for v in ("51.5", True, 51, -0.0, 60.9, 60.900001, 49.8, 1e400, 51.5e0, 5.15e1, None)),
    *(line(lon=v) for v in (1.8, 1.80000001, -8.7, -0.0, 0, 1e-7, -1e-320)),
    line(lat=91), line(lat=51.5, lon=200),
    *(line(force=v) for v in ("", "é" * 80, "é" * 81, "x" * 80, "x" * 81, "a\"b", "a\\b", "tab\there",
                               "\u2028", "\U0001f600" * 80, None, 5)),
    *(line(event_id=v) for v in ("", "a" * 128, "a" * 129, "a b", "a/b", "é", "A.b_c:d-e", None)),
    *(line(weapons_count=v) for v in (3, 3.0, True, -1, 10_000, 10_001, "3", 1e2, 0)),
    *(line(cash_gbp=v) for v in (12.34, 0.005, 0.1 + 0.2, 1e8, 100000000.01, 19.99, 0, -0.0, "1",
                                 1234567.89, 0.07)),
    *(line(drugs_grams=v) for v in (0.0005, 0.0015, 0.0025, 2.5e-4, 1e6, 1000000.0001, 123.4565, 7,
                                    -1, -1e300, 1e300)),
    line(cash_gbp=1e300), line(cash_gbp=-1e300), line(lat=-1e300),
    line().replace(b"}", b',"weapons_count":1000000000000000000000000000000}'),
    # An integer as written: with a fraction or an exponent Python refuses it, and ClickHouse's
    # raw value shows it as an integer; between the tokens, any whitespace JSON allows.
    *(line().replace(b"}", b',"weapons_count"' + value + b"}")
      for value in (b":2.0", b":2e0", b": 2E+0", b"\t:\t2.5", b"\r:2e-0", b" : 2", b":\t2", b":-0", b":0")),
    *(line(kind=kind).replace(b"}", b',"' + name + b'"' + value + b"}")
      for kind, name in (("risk_order", b"people"), ("line_closure", b"lines"),
                         ("court_outcome", b"sentence_months"))
      for value in (b":2.0", b":\t3E1", b":4")),
    *(line().replace(b"{", b'{"v"' + value + b",") for value in (b" :\t1.0", b":1e0", b"\t: 1")),
    line(drug_class="A"), line(drug_class="D"), line(drug_class=None), line(weapon_type="knife"),
    line(operation="op"), line(operation=""), line(operation=None), line(name="x"),
    line(dateOfBirth="x"), line(extra=1), line(time_precision="month"), line(time_precision="week"),
    line(kind="arrest", charged=True), line(kind="arrest", charged=1), line(kind="arrest", charged=None),
    line(kind="arrest", offence="theft"), line(kind="warrant", executed=True, outcome="drugs_found"),
    line(kind="warrant", executed=True), line(kind="warrant", executed="true", outcome="nothing_found"),
    line(kind="warrant", executed=False, outcome="free text"),
    line(kind="stop_search", outcome="free text"), line(kind="stop_search", outcome=""),
    line(kind="recorded_crime", crime_type="Drugs", outcome="free"), line(kind="recorded_crime"),
    line(kind="safeguarding", category="cuckooing"), line(kind="safeguarding", category="x"),
    line(kind="safeguarding", category="other", people=0), line(kind="risk_order"),
    line(kind="risk_order", people=1000), line(kind="risk_order", people=1001),
    line(kind="gang_injunction", people=4), line(kind="line_closure", lines=2),
    line(kind="cuckooing_address", status="resolved"), line(kind="deployment", deployment_type="x"),
    line(kind="court_outcome", sentence_months=1200, disposal="custody"),
    line(kind="court_outcome", sentence_months=1201, disposal="custody"),
    b'{"kind":"seizure","kind":"arrest","event_id":"d","occurred_at":"2021-01-01T00:00:00Z",'
    b'"lat":51.5,"lon":0.4,"force":"essex"}',
    b'{"kind":"arrest","event_id":"d","occurred_at":"2021-01-01T00:00:00Z","lat":51.5,"lat":52.5,'
    b'"lon":0.4,"force":"essex"}',
    b' ' + line(), line() + b' ', b'\xef\xbb\xbf' + line(), line().replace(b"essex", b"ess\xffx"),
    line().replace(b"essex", b"\\u0065ssex"), b"[]", b"null", b'"x"', b"{}", b"{", b"",
    line(operation="x" * 16400), line().replace(b'"lat":51.73', b'"lat":0051.73'),
    line().replace(b'"lat":51.73', b'"lat":51.73,"lon":{"a":1}'),
    line().replace(b'"lat":51.73', b'"lat":[51.73]'),
]


@pytest.fixture(scope="module")
def db(store):
    for statement in SCHEMA:
        store.command(statement.format(db=DB))
    # Every line's row, even two with one key: a plain MergeTree, where the landing's view writes.
    store.command(f"CREATE TABLE {DB}.plain AS {DB}.events ENGINE = MergeTree ORDER BY tuple()")
    store.command(f"DROP TABLE {DB}.events")
    store.command(f"RENAME TABLE {DB}.plain TO {DB}.events")
    yield store
    store.command(f"DROP DATABASE IF EXISTS {DB}")


def rowbinary(lines: list[bytes]) -> bytes:
    """(i UInt32, line String) rows in RowBinary: any bytes, as they are."""
    return b"".join(i.to_bytes(4, "little") + rowbinary_string(raw) for i, raw in enumerate(lines))


def compare(store, lines: list[bytes]) -> tuple[int, int]:
    """Check the SQL against Python over ``lines``: (sure lines, accepted lines)."""
    lines = list(dict.fromkeys(lines))  # one row per distinct line
    now = datetime.now(UTC)
    expected: dict[str, bytes] = {}  # accepted line -> its accepted-topic line
    canonical: list[bytes] = []
    for raw in lines:
        try:
            event = ADMISSION.admit(raw, now)
        except InvalidEvent:
            continue
        expected[raw.decode()] = accepted.line(accepted_row(event, cells_of(event.lat, event.lon)), raw)
        canonical.append(encode_event(event))
    store.command(f"TRUNCATE TABLE {DB}.events")
    if expected:
        store.client.raw_insert(f"{DB}.{EVENTS.table}", [EVENTS.column], b"\n".join(expected.values()),
                                fmt=EVENTS.fmt)
    listed = ", ".join(COLUMNS)
    stored = {r[-1]: r[:-1] for r in store.client.query(
        f"SELECT {listed}, payload FROM {DB}.events").result_rows}
    assert len(stored) == len(expected)
    store.command(f"CREATE TABLE IF NOT EXISTS {DB}.lines (i UInt32, line String) ENGINE = Memory")
    store.command(f"TRUNCATE TABLE {DB}.lines")
    every = lines + canonical
    store.client.raw_insert(f"{DB}.lines", ["i", "line"], rowbinary(every), fmt="RowBinary")
    sql = admission_sql.accepted_select(ADMISSION, f"SELECT i, line FROM {DB}.lines", passing="i")
    rows = store.client.query(f"SELECT i, {listed}, sure FROM ({sql})",
                              settings=admission_sql.CELL_SETTINGS).result_rows
    assert len(rows) == len(every)
    sure_of = {r[0]: r[-1] for r in rows}
    row_of = {r[0]: r[1:-1] for r in rows}
    for i, raw in enumerate(lines):
        if sure_of[i]:
            assert raw.decode() in expected, f"sure, but Python refuses: {raw!r}"
            assert row_of[i] == stored[raw.decode()], f"another row than Python's for {raw!r}"
    # Escapes are left to Python by design; printable ASCII and letters such as é are not.
    unsure = [c for i, c in enumerate(canonical, len(lines))
              if not sure_of[i] and b"\\" not in c and c.decode().isprintable()]
    assert not unsure, f"the producer's own lines must be sure: {unsure[:3]}"
    sure = sum(sure_of[i] for i in range(len(lines)))
    return sure, len(expected)


def test_the_corpus(db) -> None:
    sure, accepted_lines = compare(db, CORPUS)
    assert sure >= 60 and accepted_lines >= sure  # the test is not vacuous


def _tz(minutes: int) -> timezone:
    return timezone(timedelta(minutes=minutes))


@st.composite
def in_area(draw: Any) -> bytes:
    """A valid record inside the accepted area and time range, every kind's fields drawn."""
    record = draw(valid_record())
    record["lat"] = draw(st.floats(49.8, 60.9))
    record["lon"] = draw(st.floats(-8.7, 1.8))
    zone = draw(st.sampled_from([UTC, _tz(60), _tz(-330), _tz(14 * 60), _tz(-12 * 60)]))
    # After EARLIEST and before now in every zone drawn: the edges are the corpus's.
    at = draw(st.datetimes(datetime(1970, 1, 6), datetime(2026, 1, 1), timezones=st.just(zone)))  # noqa: DTZ001
    record["occurred_at"] = at.isoformat() if draw(st.booleans()) else at.isoformat().replace("+00:00", "Z")
    return orjson.dumps(record)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.large_base_example])
@given(st.lists(in_area(), min_size=40, max_size=40))
def test_random_records_in_the_area(db, lines: list[bytes]) -> None:
    _, accepted_lines = compare(db, lines)
    assert accepted_lines == len(set(lines))  # each drawn record is valid


def test_every_kind_is_drawn() -> None:  # and every field: tests/unit/test_hostile.py
    assert set(KIND_FIELDS) == {m.model_fields["kind"].default for m in admission_sql._MODELS}


def test_bench_events_are_all_sure(db) -> None:
    from bench.pipeline import event_lines

    assert compare(db, event_lines(2000, 3, date(2015, 1, 1), 3652, "admsql")) == (2000, 2000)


def test_a_construct_it_does_not_know_stops_it() -> None:
    with pytest.raises(NotImplementedError):
        admission_sql._rule("x", {"type": "string", "format": "email"})
    with pytest.raises(NotImplementedError):
        admission_sql._rule("x", {"type": "array"})
    with pytest.raises(NotImplementedError):
        admission_sql._rule("x", {"type": "number", "multipleOf": 0.01})


def test_random_lines_mutated(db) -> None:
    rng = random.Random(11)
    out = []
    for base in CORPUS[:40]:
        for _ in range(5):
            data = bytearray(base)
            if data:
                i = rng.randrange(len(data))
                data[i] = rng.choice(b'0123456789.eE+-"{}:,tfnZT \\')
            out.append(bytes(data))
    compare(db, out)
