"""Property-based: hostile input to parse_event and to the police.uk reader.

Whatever arrives (bytes, text, any JSON value, mutated records, random CSVs, damaged gzip),
the only outcomes are an Event, an InvalidEvent with a known reason, a Rejected row or a
ReplayError: never another exception, never a hang, and never a valid row lost.
Examples are derandomized (a fixed seed) and no example database is written.
"""

from __future__ import annotations

import csv
import gzip
import inspect
import io
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, get_args

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hotspots import contract
from hotspots.contract import (
    KINDS,
    MAX_RECORD_BYTES,
    Admission,
    CourtDisposal,
    CuckooingAddress,
    DrugClass,
    InvalidEvent,
    RiskOrder,
    SafeguardingCategory,
    WarrantOutcome,
    encode_event,
    parse_event,
)
from hotspots.periods import LONDON
from producers.policeuk import (
    STOP_SEARCH_COLUMNS,
    STREET_COLUMNS,
    ReplayError,
    ReplayReport,
    read_file,
)
from producers.publisher import Rejected

# Seed, database and deadline come from the hypothesis profile (tests/conftest.py).
PROPERTY = settings(max_examples=300,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = 5.0  # seconds for one example: far above any honest one, well below a hang

# Every reason code the contract can give, read from its source so that a new one is seen.
_SOURCE = inspect.getsource(contract)
REASONS = frozenset(re.findall(r'InvalidEvent\(\s*"([a-z_]+)"', _SOURCE)
                    + re.findall(r'reason = "([a-z_]+)"', _SOURCE))


def test_reason_codes_were_found():
    assert {"not_json", "not_object", "oversized", "personal_data", "unknown_kind",
            "missing_field", "unexpected_field", "bad_field", "bad_timestamp",
            "naive_timestamp", "bad_coordinates", "unsupported_version", "future_timestamp",
            "too_old", "outside_area"} <= REASONS


def check_parse(payload: bytes | str | dict[str, Any]) -> Any:
    """parse_event returns an Event that survives encoding, or refuses with a known reason."""
    start = time.perf_counter()
    try:
        event = parse_event(payload)
    except InvalidEvent as exc:
        assert exc.reason in REASONS, exc.reason
        event = None
    assert time.perf_counter() - start < SLOW
    if event is not None:
        assert event.kind in KINDS
        assert parse_event(encode_event(event)) == event  # accepted => can be sent as is
    try:
        Admission().admit(payload)
    except InvalidEvent as exc:
        assert exc.reason in REASONS, exc.reason
    return event


# --- arbitrary input --------------------------------------------------------------------

FIELDS = ("kind", "v", "event_id", "occurred_at", "time_precision", "lat", "lon", "force",
          "operation", "charged", "offence", "executed", "outcome", "people", "category",
          "crime_type", "sentence_months", "disposal", "cash_gbp", "weapons_count", "name",
          "Surname", "DOB")
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats()  # nan and inf included
           | st.text()  # any code point, lone surrogates included
           | st.sampled_from(KINDS)
           | st.sampled_from(["2024-07-07T23:30:00Z", "2024-07-07T23:30:00", "9999-12-31T23:59:59-12:00",
                              "0001-01-01T00:00:00+23:59", "2024-02-30T00:00:00Z", " 1720395000 "]))
KEYS = st.sampled_from(FIELDS) | st.text()
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=5)
                    | st.dictionaries(KEYS, inner, max_size=8), max_leaves=40)


@st.composite
def deep(draw: Any) -> Any:
    """One value nested hundreds deep: lists and objects in a drawn repeating pattern. (Deeper
    still is covered as JSON text above; a Python object thousands deep breaks repr() when
    hypothesis reports an example, which made this test flaky.)"""
    value: Any = draw(SCALARS)
    pattern = draw(st.lists(st.sampled_from(FIELDS) | st.none(), min_size=1, max_size=6))
    for level in range(draw(st.integers(1, 400))):
        key = pattern[level % len(pattern)]
        value = [value] if key is None else {key: value}
    return value


TEXT = st.one_of(
    st.text(),
    st.text(alphabet="{}[]\":,0123456789.eE+-tfnulrsa \\"),  # JSON-ish debris
    st.integers(MAX_RECORD_BYTES - 60, MAX_RECORD_BYTES + 60).map(  # around the size limit
        lambda n: '{"kind": "arrest", "force": "' + "x" * n + '"}'),
    st.integers(1, 5000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.sampled_from(["NaN", "Infinity", "-Infinity", '{"lat": NaN}', "1e999", '"\\ud800"']),
)


@PROPERTY
@given(st.binary(max_size=2000) | TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_parse_event_on_arbitrary_bytes(payload):
    check_parse(payload)


@PROPERTY
@given(TEXT)
def test_parse_event_on_arbitrary_text(payload):
    check_parse(payload)


@PROPERTY
@given(JSON | deep())
# Past year 9999 once in UTC: this used to escape parse_event as an OverflowError.
@example({"kind": "arrest", "event_id": "e", "occurred_at": "9999-12-31T23:59:59-12:00",
          "lat": 0, "lon": 0, "force": "x"})
@example({"kind": "arrest", "event_id": "e", "occurred_at": "0001-01-01T00:00:00+23:59",
          "lat": 0, "lon": 0, "force": "x"})
def test_parse_event_on_arbitrary_json_values(value):
    check_parse(value)
    try:
        encoded = orjson.dumps(value)
    except orjson.JSONEncodeError:  # lone surrogates, or nested too deep for orjson
        return
    check_parse(encoded)


# --- valid records, and mutations of them ----------------------------------------------

SHORT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=80)
MAYBE_SHORT = st.none() | SHORT
OFFSETS = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
# hypothesis takes naive bounds and draws the zone separately.
WHEN = st.datetimes(datetime(1990, 1, 1), datetime(2100, 1, 1),  # noqa: DTZ001
                    timezones=OFFSETS | st.just(LONDON))
PEOPLE = st.integers(1, 1000)


def choice(literal: Any) -> st.SearchStrategy[str]:
    return st.sampled_from(get_args(literal))


KIND_FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "arrest": {"charged": st.none() | st.booleans(), "offence": MAYBE_SHORT},
    "seizure": {"drugs_grams": st.floats(0, 1_000_000), "drug_class": st.none() | choice(DrugClass),
                "weapons_count": st.integers(0, 10_000), "weapon_type": MAYBE_SHORT,
                "cash_gbp": st.integers(0, 10_000_000_000).map(lambda pence: pence / 100)},
    "warrant": {"executed": st.booleans(), "outcome": choice(WarrantOutcome)},
    "safeguarding": {"people": PEOPLE, "category": choice(SafeguardingCategory)},
    "court_outcome": {"sentence_months": st.integers(0, 1200), "disposal": choice(CourtDisposal)},
    "stop_search": {"outcome": SHORT, "legislation": MAYBE_SHORT, "object_of_search": MAYBE_SHORT},
    "recorded_crime": {"crime_type": SHORT, "outcome": MAYBE_SHORT},
    "gang_injunction": {"people": PEOPLE},
    "risk_order": {"order_type": choice(RiskOrder.model_fields["order_type"].annotation),
                   "people": PEOPLE},
    "line_closure": {"lines": PEOPLE},
    "cuckooing_address": {"status": choice(CuckooingAddress.model_fields["status"].annotation)},
    "deployment": {"deployment_type": SHORT, "location_type": MAYBE_SHORT},
}


def test_every_kind_has_a_strategy():
    assert set(KIND_FIELDS) == set(KINDS)
    common = {"kind", "v", "event_id", "occurred_at", "time_precision", "lat", "lon", "force",
              "operation"}
    for kind, ref in _SCHEMA["discriminator"]["mapping"].items():
        fields = set(_SCHEMA["$defs"][ref.rsplit("/", 1)[1]]["properties"])
        assert fields == common | set(KIND_FIELDS[kind]), f"{kind}: cover its new fields here"


@st.composite
def valid_record(draw: Any, kind: str | None = None) -> dict[str, Any]:
    kind = kind or draw(st.sampled_from(KINDS))
    record: dict[str, Any] = {
        "kind": kind,
        "event_id": draw(st.from_regex(r"[A-Za-z0-9._:\-]{1,128}", fullmatch=True)),
        "occurred_at": draw(WHEN).isoformat(),
        "lat": draw(st.floats(-90, 90)),
        "lon": draw(st.floats(-180, 180)),
        "force": draw(SHORT),
    }
    optional = {"v": st.just(1), "time_precision": st.sampled_from(["instant", "day", "month"]),
                "operation": SHORT, **KIND_FIELDS[kind]}
    for name, strategy in optional.items():
        if name in REQUIRED[kind] or draw(st.booleans()):
            record[name] = draw(strategy)
    return record


# Fields a record cannot do without, from the contract's exported schema (kind aside: see
# test_schema).
_SCHEMA = orjson.loads(contract.json_schema())
REQUIRED = {kind: set(_SCHEMA["$defs"][ref.rsplit("/", 1)[1]].get("required", ()))
            for kind, ref in _SCHEMA["discriminator"]["mapping"].items()}


@PROPERTY
@given(st.sampled_from(KINDS).flatmap(lambda kind: st.tuples(st.just(kind), valid_record(kind))))
def test_valid_records_parse_and_round_trip(case):
    kind, record = case
    event = parse_event(record)
    assert event.kind == kind
    assert parse_event(encode_event(event)) == event
    assert parse_event(orjson.dumps(record)) == event  # as JSON bytes, the same event
    assert event.occurred_at == datetime.fromisoformat(record["occurred_at"])


@PROPERTY
@given(valid_record())
def test_encode_event_writes_what_pydantic_would(record):
    # content_digest hashes these bytes, and seen records keep digests across restarts and
    # upgrades: encode_event's fast path must stay byte for byte pydantic's.
    event = parse_event(record)
    assert encode_event(event) == orjson.dumps(event.model_dump(mode="json", exclude_none=True))
    assert parse_event(encode_event(event)) == event


NAN_INF = st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, 1e308, -1e-308])


@st.composite
def mutated(draw: Any) -> dict[str, Any]:
    record = draw(valid_record())
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["drop", "retype", "add", "float"]))
        if how == "drop" and record:
            del record[draw(st.sampled_from(sorted(record)))]
        elif how == "retype" and record:
            record[draw(st.sampled_from(sorted(record)))] = draw(JSON)
        elif how == "add":
            record[draw(KEYS)] = draw(JSON)
        else:
            key = draw(st.sampled_from(sorted(record)) | KEYS) if record else draw(KEYS)
            record[key] = draw(NAN_INF | st.floats())
    return record


@PROPERTY
@given(mutated())
def test_mutated_records_are_valid_or_refused_with_a_reason(record):
    check_parse(record)
    try:
        encoded = orjson.dumps(record)
    except orjson.JSONEncodeError:
        return
    check_parse(encoded)


# --- the police.uk reader ---------------------------------------------------------------

STREET = "2025-01-essex-street.csv"
STOP = "2024-12-essex-stop-and-search.csv"
ESSEX = Admission(area=(-0.020, 51.452, 1.297, 52.093))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile")


def csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def put(folder: Path, name: str, data: bytes, packed: bool) -> Path:
    path = folder / (name + ".gz" if packed else name)
    path.write_bytes(gzip.compress(data, mtime=0) if packed else data)
    return path


def drain(path: Path, admission: Admission | None = None) -> tuple[list[Any], ReplayReport, bool]:
    """Read a file to the end or to its ReplayError, checking every item and the report."""
    report = ReplayReport()
    items: list[Any] = []
    failed = False
    start = time.perf_counter()
    try:
        for item in read_file(path, report, admission):
            assert isinstance(item, (Rejected, *get_args(get_args(contract.Event)[0]))), item
            if isinstance(item, Rejected):
                assert item.reason in REASONS | {"wrong_column_count"}, item.reason
            items.append(item)
    except ReplayError:
        failed = True
    assert time.perf_counter() - start < SLOW
    rows = report.produced + sum(n for r, n in report.skipped.items() if r != "unreadable_tail")
    assert report.read == rows, report.as_dict()
    assert report.produced == sum(not isinstance(i, Rejected) for i in items)
    assert sum(isinstance(i, Rejected) for i in items) == rows - report.produced - \
        report.skipped["no_coordinates"]
    return items, report, failed


def plausible(column: str) -> st.SearchStrategy[str]:
    """A cell that is sometimes right for its column, so rows get past the first checks."""
    right = {"Latitude": st.floats(-100, 100).map(str), "Longitude": st.floats(-200, 200).map(str),
             "Month": st.sampled_from(["2025-01", "2025-13", "25-01", "2025-1", " 2025-02 "]),
             "Date": st.sampled_from(["2024-12-01T00:12:00+00:00", "2024-12-01", "9999-12-31T23:59:59-12:00",
                                      "2024-12-01T00:12:00", "2099-01-01T00:00:00Z"]),
             "Crime ID": st.sampled_from(["", "abc123", "has space", "x" * 200]),
             "Outcome": st.sampled_from(["Arrest", "", "Community resolution"])}
    return st.one_of(st.text(max_size=30), st.just(""), right.get(column, st.text(max_size=5)))


@st.composite
def random_csv(draw: Any) -> str:
    header = draw(st.sampled_from([STREET_COLUMNS, STOP_SEARCH_COLUMNS]) | st.lists(st.text(), max_size=16))
    rows = [list(header)]
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.booleans()):
            rows.append([draw(plausible(column)) for column in header])
        else:
            rows.append(draw(st.lists(st.text(max_size=20), max_size=20)))
    return csv_text(rows)


@PROPERTY
@given(random_csv(), st.booleans(), st.booleans(), st.sampled_from([STREET, STOP]))
def test_read_file_on_random_csv(folder, text, packed, bom, name):
    data = (("\ufeff" if bom else "") + text).encode("utf-8", "surrogatepass")
    drain(put(folder, name, data, packed), ESSEX)


@PROPERTY
@given(st.binary(max_size=3000), st.booleans(), st.sampled_from([STREET, STOP]))
def test_read_file_on_random_bytes(folder, data, packed, name):
    drain(put(folder, name, data, packed))
    path = folder / (name + ".gz")
    path.write_bytes(data)  # random bytes that only claim to be gzip
    drain(path)


@st.composite
def street_row(draw: Any, crime_id: str) -> list[str]:
    lat = draw(st.floats(51.452, 52.093))
    lon = draw(st.floats(-0.020, 1.297))
    month = f"{draw(st.integers(2000, 2024))}-{draw(st.integers(1, 12)):02d}"
    crime_type = draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=80)
                      .filter(lambda t: t.strip()))
    outcome = draw(st.text(st.characters(codec="utf-8"), max_size=120))
    context = draw(st.text(st.characters(codec="utf-8"), max_size=20))
    return [crime_id, month, "Essex Police", "Essex Police", f"{lon:.6f}", f"{lat:.6f}",
            "On or near " + draw(st.text(max_size=20).map(lambda t: t.encode("utf-8", "replace").decode())),
            "E01021600", "Chelmsford 010A", crime_type, outcome, context]


@st.composite
def valid_street_file(draw: Any) -> tuple[list[list[str]], list[str]]:
    ids = draw(st.lists(st.binary(min_size=32, max_size=32).map(bytes.hex), unique=True, max_size=15))
    rows = [draw(street_row(crime_id)) for crime_id in ids]
    noise = draw(st.lists(st.lists(st.text(st.characters(codec="utf-8"), max_size=10), max_size=20)
                          .filter(lambda r: len(r) != len(STREET_COLUMNS)), max_size=5))
    mixed = list(rows)
    for junk in noise:  # rows with the wrong number of columns, anywhere
        mixed.insert(draw(st.integers(0, len(mixed))), junk)
    return mixed, [f"puk-{i}" for i in ids]


@PROPERTY
@given(valid_street_file(), st.booleans(), st.booleans())
def test_no_valid_street_row_is_lost(folder, generated, packed, bom):
    rows, expected = generated
    data = (("\ufeff" if bom else "") + csv_text([list(STREET_COLUMNS), *rows])).encode()
    items, report, failed = drain(put(folder, STREET, data, packed), ESSEX)
    assert not failed
    events = [i for i in items if not isinstance(i, Rejected)]
    assert [e.event_id for e in events] == expected  # each once, in file order
    assert all(e.kind == "recorded_crime" and e.time_precision == "month" for e in events)
    assert report.produced == len(expected)
    assert report.read == len(rows)


@st.composite
def street_gzip(draw: Any) -> bytes:
    """A gzipped street file of up to a few hundred rows, cheap to draw: ids, a few ASB rows."""
    seeds = draw(st.lists(st.integers(0, 2**64 - 1), unique=True, min_size=1, max_size=300))
    rows = [[f"{seed:016x}" * 4 if seed % 5 else "", "2025-01", "Essex Police", "Essex Police",
             f"{0.3 + seed % 9000 / 10000:.6f}", f"{51.5 + seed % 5000 / 10000:.6f}",
             "On or near High Street", "E01021600", "Chelmsford 010A", "Drugs", "", ""]
            for seed in seeds]
    return gzip.compress(csv_text([list(STREET_COLUMNS), *rows]).encode(), mtime=0)


@PROPERTY
@given(street_gzip(), st.data())
def test_truncated_gzip_yields_a_prefix_then_fails(folder, whole, data):
    complete, _, failed = drain(_raw(folder, whole), ESSEX)
    assert not failed
    cut = data.draw(st.integers(0, len(whole) - 1), label="kept bytes")
    items, _, failed = drain(_raw(folder, whole[:cut]), ESSEX)
    assert failed, "a truncated gzip must end in a ReplayError"
    assert [_key(i) for i in items] == [_key(i) for i in complete[:len(items)]]


@PROPERTY
@given(street_gzip(), st.data())
def test_damaged_gzip_never_escapes(folder, whole, data):
    damaged = bytearray(whole)
    for _ in range(data.draw(st.integers(1, 5))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        damaged[at] = data.draw(st.integers(0, 255))
    drain(_raw(folder, bytes(damaged)), ESSEX)


def _raw(folder: Path, data: bytes) -> Path:
    path = folder / (STREET + ".gz")
    path.write_bytes(data)
    return path


def _key(item: Any) -> tuple[str, str]:
    return ("rejected", item.source) if isinstance(item, Rejected) else ("event", item.event_id)
