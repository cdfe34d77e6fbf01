"""The v1 event contract: parsing, stable reason codes for refusals, integer measures, admission."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import get_args

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotspots.contract import (
    CONTRACT_FIELDS,
    KINDS,
    MAX_RECORD_BYTES,
    MEASURES,
    PERSONAL_DATA_FIELDS,
    UK_AREA,
    Admission,
    Arrest,
    CourtOutcome,
    CuckooingAddress,
    Deployment,
    Event,
    GangInjunction,
    InvalidEvent,
    LineClosure,
    RecordedCrime,
    RiskOrder,
    Safeguarding,
    Seizure,
    StopSearch,
    Warrant,
    content_digest,
    dead_letter,
    encode_event,
    measures_of,
    parse_event,
)

BASE = {"event_id": "ev-1", "occurred_at": "2023-07-16T23:30:00Z", "lat": 51.7356,
        "lon": 0.4685, "force": "essex"}
OCCURRED = datetime(2023, 7, 16, 23, 30, tzinfo=UTC)
MINIMAL = {
    "arrest": {"kind": "arrest"},
    "seizure": {"kind": "seizure"},
    "warrant": {"kind": "warrant", "executed": True, "outcome": "drugs_found"},
    "safeguarding": {"kind": "safeguarding", "category": "cuckooing"},
    "court_outcome": {"kind": "court_outcome", "sentence_months": 30, "disposal": "custody"},
    "stop_search": {"kind": "stop_search", "outcome": "arrest"},
    "recorded_crime": {"kind": "recorded_crime", "crime_type": "drugs"},
    "gang_injunction": {"kind": "gang_injunction"},
    "risk_order": {"kind": "risk_order"},
    "line_closure": {"kind": "line_closure"},
    "cuckooing_address": {"kind": "cuckooing_address"},
    "deployment": {"kind": "deployment", "deployment_type": "station_patrol"},
}
# Every optional field of every kind set, to show that each is accepted and round-trips.
FULL = {
    "arrest": {"charged": True, "offence": "possession with intent to supply"},
    "seizure": {"drugs_grams": 2.5, "drug_class": "B", "weapons_count": 1,
                "weapon_type": "knife", "cash_gbp": 99.99},
    "warrant": {"executed": False, "outcome": "not_executed"},
    "safeguarding": {"people": 3, "category": "child_exploitation"},
    "court_outcome": {"sentence_months": 0, "disposal": "acquitted"},
    "stop_search": {"outcome": "no further action", "legislation": "Misuse of Drugs Act 1971",
                    "object_of_search": "controlled drugs"},
    "recorded_crime": {"crime_type": "drugs", "outcome": "under investigation",
                       "time_precision": "month"},
    "gang_injunction": {"people": 4},
    "risk_order": {"order_type": "prevention_order", "people": 2},
    "line_closure": {"lines": 3},
    "cuckooing_address": {"status": "closure_order"},
    "deployment": {"deployment_type": "safeguarding_operation", "location_type": "station"},
}
MODELS = {"arrest": Arrest, "seizure": Seizure, "warrant": Warrant,
          "safeguarding": Safeguarding, "court_outcome": CourtOutcome,
          "stop_search": StopSearch, "recorded_crime": RecordedCrime,
          "gang_injunction": GangInjunction, "risk_order": RiskOrder,
          "line_closure": LineClosure, "cuckooing_address": CuckooingAddress,
          "deployment": Deployment}


def record(kind: str = "arrest", **changes) -> dict:
    return {**BASE, **MINIMAL[kind], **changes}


def without(payload: dict, field: str) -> dict:
    return {k: v for k, v in payload.items() if k != field}


def parse_error(payload) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        parse_event(payload)
    return info.value


def reason_of(payload) -> str:
    err = parse_error(payload)
    assert str(err) == f"{err.reason}: {err.detail}"
    return err.reason


# --- kinds -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_parses_from_a_minimal_record(kind):
    event = parse_event(record(kind))
    assert type(event) is MODELS[kind]
    assert event.kind == kind and event.v == 1
    assert event.occurred_at == OCCURRED
    assert event.time_precision == "instant"
    assert event.operation is None
    # The same record as JSON bytes and as text.
    assert parse_event(orjson.dumps(record(kind))) == event
    assert parse_event(orjson.dumps(record(kind)).decode()) == event


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_accepts_its_optional_fields(kind):
    event = parse_event(record(kind, **FULL[kind]))
    for field, value in FULL[kind].items():
        assert getattr(event, field) == value


def test_kinds_cover_every_model():
    assert len(KINDS) == len(set(KINDS)) == 12
    assert set(KINDS) == set(MINIMAL) == set(FULL) == set(MODELS)
    (union, *_) = get_args(Event)
    assert set(get_args(union)) == set(MODELS.values())
    for kind, model in MODELS.items():
        assert model.model_fields["kind"].default == kind


def test_arrest_charged_is_optional():
    assert parse_event(record()).charged is None  # not known
    assert parse_event(record(charged=None)).charged is None
    assert parse_event(record(charged=False)).charged is False
    assert b'"charged"' not in encode_event(parse_event(record()))


def test_new_kinds_defaults():
    assert parse_event(record("gang_injunction")).people == 1
    risk = parse_event(record("risk_order"))
    assert (risk.order_type, risk.people) == ("risk_order", 1)
    assert parse_event(record("line_closure")).lines == 1
    assert parse_event(record("cuckooing_address")).status == "identified"
    assert parse_event(record("stop_search")).legislation is None
    assert parse_event(record("recorded_crime")).outcome is None
    assert parse_event(record("deployment")).location_type is None


@pytest.mark.parametrize(
    ("kind", "changes", "reason"),
    [
        ("stop_search", {"outcome": ""}, "bad_field"),
        ("stop_search", {"outcome": None}, "bad_field"),
        ("stop_search", {"legislation": "x" * 81}, "bad_field"),
        ("stop_search", {"object_of_search": ""}, "bad_field"),
        ("recorded_crime", {"crime_type": ""}, "bad_field"),
        ("recorded_crime", {"outcome": "x" * 81}, "bad_field"),
        ("gang_injunction", {"people": 0}, "bad_field"),
        ("gang_injunction", {"people": 1001}, "bad_field"),
        ("risk_order", {"order_type": "banning_order"}, "bad_field"),
        ("risk_order", {"people": 0}, "bad_field"),
        ("line_closure", {"lines": 0}, "bad_field"),
        ("line_closure", {"lines": 1.5}, "bad_field"),
        ("cuckooing_address", {"status": "closed"}, "bad_field"),
        ("deployment", {"deployment_type": ""}, "bad_field"),
        ("deployment", {"location_type": "x" * 81}, "bad_field"),
        # A field of another kind is not accepted.
        ("line_closure", {"people": 2}, "unexpected_field"),
        ("cuckooing_address", {"crime_type": "drugs"}, "unexpected_field"),
    ],
)
def test_new_kinds_field_validation(kind, changes, reason):
    err = parse_error(record(kind, **changes))
    assert err.reason == reason
    assert next(iter(changes)) in err.detail


@pytest.mark.parametrize(
    ("kind", "field"),
    [("stop_search", "outcome"), ("recorded_crime", "crime_type"),
     ("deployment", "deployment_type")],
)
def test_new_kinds_required_fields(kind, field):
    err = parse_error(without(record(kind), field))
    assert err.reason == "missing_field" and field in err.detail


# --- reason codes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not_json"),
        (b"", "not_json"),
        (b"\xff\xfe", "not_json"),
        (b'{"lat": NaN}', "not_json"),  # orjson refuses the NaN/Infinity literals
        (b'{"lat": Infinity}', "not_json"),
        (b"[1, 2]", "not_object"),
        (b'"arrest"', "not_object"),
        (b"null", "not_object"),
        ([record()], "not_object"),
        ({**record(), "kind": "parking"}, "unknown_kind"),
        ({**BASE, "charged": True}, "missing_field"),  # no kind at all
        (without(record("warrant"), "executed"), "missing_field"),
        (without(record(), "occurred_at"), "missing_field"),
        (record(name="John Smith"), "personal_data"),
        (record(date_of_birth="1990-01-01"), "personal_data"),
        (record(colour="red"), "unexpected_field"),
        (record(occurred_at="2023-07-16T23:30:00"), "naive_timestamp"),
        (record(occurred_at=datetime(2023, 7, 16, 23, 30)), "naive_timestamp"),  # noqa: DTZ001
        (record(occurred_at="last tuesday"), "bad_timestamp"),
        (record(occurred_at="2023-13-45T99:00:00Z"), "bad_timestamp"),
        (record(occurred_at=1689550200), "bad_timestamp"),
        (record(lat=91), "bad_coordinates"),
        (record(lat=-90.0001), "bad_coordinates"),
        (record(lon=-181), "bad_coordinates"),
        (record(lat="north"), "bad_coordinates"),
        (record(lat=float("nan")), "bad_coordinates"),
        (record(lon=float("inf")), "bad_coordinates"),
        (record(charged="maybe"), "bad_field"),
        (record(time_precision="week"), "bad_field"),
        (record("seizure", cash_gbp=10.005), "bad_field"),  # fractional pence
        (record("seizure", cash_gbp=-1), "bad_field"),
        (record("seizure", drugs_grams=float("nan")), "bad_field"),
        (record("seizure", cash_gbp=float("inf")), "bad_field"),
        (record("seizure", drug_class="D"), "bad_field"),
        (record("warrant", outcome="unknown"), "bad_field"),
        (record("safeguarding", people=0), "bad_field"),
        (record(event_id="has space"), "bad_field"),
        (record(force=""), "bad_field"),
        (record(v=2), "unsupported_version"),
        (record(v=True), "unsupported_version"),
        (record(v="1"), "unsupported_version"),
        (record(v=None), "unsupported_version"),
    ],
)
def test_reason_codes(payload, reason):
    assert reason_of(payload) == reason


# --- version -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", [True, 1.0, 2, 0, False, "1", None])
def test_only_the_integer_1_is_a_version(version):
    assert reason_of(record(v=version)) == "unsupported_version"
    # The same, arriving as JSON.
    assert reason_of(orjson.dumps(record(v=version))) == "unsupported_version"


def test_explicit_version_1_is_the_default():
    assert parse_event(record(v=1)) == parse_event(record())


# --- time --------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["instant", "day", "month"])
def test_time_precision_values(precision):
    event = parse_event(record("recorded_crime", time_precision=precision))
    assert event.time_precision == precision
    assert parse_event(encode_event(event)) == event


@pytest.mark.parametrize("precision", ["week", "Day", "", None, 1])
def test_bad_time_precision(precision):
    err = parse_error(record(time_precision=precision))
    assert err.reason == "bad_field" and "time_precision" in err.detail


def test_time_precision_is_part_of_the_content():
    assert parse_event(record(time_precision="instant")) == parse_event(record())
    day = parse_event(record(time_precision="day"))
    assert content_digest(day) != content_digest(parse_event(record()))


def test_naive_and_unparseable_timestamps_are_told_apart():
    naive = parse_error(record(occurred_at="2023-07-16T23:30:00"))
    assert naive.reason == "naive_timestamp" and "occurred_at" in naive.detail
    garbage = parse_error(record(occurred_at="soon"))
    assert garbage.reason == "bad_timestamp" and "occurred_at" in garbage.detail


@pytest.mark.parametrize("stamp", [1689550200, 1689550200.5, 0, True])
def test_numeric_timestamps_are_refused(stamp):
    err = parse_error(record(occurred_at=stamp))
    assert err.reason == "bad_timestamp" and "occurred_at" in err.detail
    assert reason_of(orjson.dumps(record(occurred_at=stamp))) == "bad_timestamp"


def test_numeric_string_timestamps_are_refused():
    assert reason_of(record(occurred_at="1689550200")) == "bad_timestamp"


@pytest.mark.parametrize(
    "stamp",
    ["2023-07-17T00:30:00+01:00", "2023-07-16T19:30:00-04:00", "2023-07-16T23:30:00+00:00",
     "2023-07-16T23:30Z", datetime(2023, 7, 17, 0, 30, tzinfo=timezone(timedelta(hours=1)))],
)
def test_occurred_at_is_normalised_to_utc(stamp):
    reference = parse_event(record())
    event = parse_event(record(occurred_at=stamp))
    assert event.occurred_at == OCCURRED
    assert event.occurred_at.tzinfo is UTC
    assert event == reference
    assert encode_event(event) == encode_event(reference)
    assert content_digest(event) == content_digest(reference)


def test_construction_normalises_to_utc_too():
    plus_one = datetime(2023, 7, 17, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    event = Arrest(event_id="a:1", occurred_at=plus_one, lat=51.5, lon=0.5, force="essex")
    assert event.occurred_at.tzinfo is UTC and event.occurred_at == OCCURRED


# --- personal data -----------------------------------------------------------------------


@pytest.mark.parametrize("field", sorted(PERSONAL_DATA_FIELDS))
def test_personal_data_fields_are_refused(field):
    err = parse_error(record(**{field: "Jane Doe"}))
    assert err.reason == "personal_data" and field in err.detail
    assert "Jane Doe" not in str(err)  # the value itself is never echoed
    # Whatever the kind, and whatever the case of the name.
    assert reason_of(record("deployment", **{field: "x"})) == "personal_data"
    assert reason_of(record(**{field.upper(): "x"})) == "personal_data"


@pytest.mark.parametrize("field", ["dateOfBirth", "Date-Of-Birth", "firstName", "LastName",
                                   "post code", "phoneNumber", "Street_Address", "NI-number"])
def test_personal_data_is_named_in_any_spelling(field):
    err = parse_error(record(**{field: "Jane Doe"}))
    assert err.reason == "personal_data" and field in err.detail and "Jane Doe" not in str(err)


def test_no_contract_field_looks_personal():
    from hotspots.contract import is_personal_field

    models = (Arrest, Seizure, Warrant, Safeguarding, CourtOutcome, StopSearch, RecordedCrime,
              GangInjunction, RiskOrder, LineClosure, CuckooingAddress, Deployment)
    assert len(models) == len(KINDS)
    fields = {name for model in models for name in model.model_fields}
    assert fields and not [f for f in fields if is_personal_field(f)]
    # parse_event skips the personal-field scan for records of these names only.
    assert fields == CONTRACT_FIELDS


def test_personal_data_list_has_the_obvious_names():
    assert {"name", "surname", "date_of_birth", "address", "postcode",
            "phone"} <= PERSONAL_DATA_FIELDS


@pytest.mark.parametrize("field", ["colour", "notes", "name_of_operation", "names"])
def test_harmless_unknown_fields_are_unexpected(field):
    err = parse_error(record(**{field: "x"}))
    assert err.reason == "unexpected_field" and field in err.detail


def test_a_forbidden_field_outranks_other_errors():
    # Personal data is named as the reason even when the record is also incomplete or wrong.
    bare = {"kind": "arrest", "date_of_birth": "1990-01-01"}
    assert reason_of(bare) == "personal_data"
    assert "date_of_birth" in parse_error(bare).detail
    assert reason_of(record(lat=91, name="John Smith")) == "personal_data"
    assert reason_of(record(lat=91, colour="red")) == "unexpected_field"
    assert reason_of({**record(surname="Smith"), "colour": "red"}) == "personal_data"


def test_personal_data_outranks_an_unexpected_field_listed_before_it():
    assert reason_of(record(colour="red", surname="Smith")) == "personal_data"


@pytest.mark.parametrize("kind", [None, "parking"])
def test_personal_data_is_named_even_without_a_valid_kind(kind):
    payload = {**BASE, "name": "John Smith"} | ({"kind": kind} if kind else {})
    assert reason_of(payload) == "personal_data"


# --- size, immutability ------------------------------------------------------------------


def test_oversized_is_checked_before_parsing():
    padding = " " * MAX_RECORD_BYTES
    raw = orjson.dumps(record())[:-1] + padding.encode() + b"}"
    assert parse_error(raw).reason == "oversized"
    assert parse_error(raw.decode()).reason == "oversized"
    # Text is measured in UTF-8 bytes, not characters.
    wide = orjson.dumps(record(offence="x")).decode().replace('"x"', '"' + "€" * 6000 + '"')
    assert len(wide) < MAX_RECORD_BYTES < len(wide.encode())
    assert parse_error(wide).reason == "oversized"
    # Just under the limit is parsed normally (and then refused for its own reason).
    assert parse_error(b"[" + b" " * (MAX_RECORD_BYTES - 3) + b"]").reason == "not_object"


def test_frozen_and_forbids_extra_on_construction():
    event = parse_event(record())
    with pytest.raises(ValueError):
        event.charged = False  # type: ignore[misc]
    with pytest.raises(ValueError):
        Arrest(**{**record(), "name": "someone"})


# --- measures, encoding, digests, dead letters -------------------------------------------


def test_measures_per_kind():
    assert MEASURES == ("count", "charged", "executed", "weapons", "drugs_mg", "cash_pence",
                        "sentence_months", "people")

    def m(kind: str, **fields) -> dict[str, int]:
        values = measures_of(parse_event(record(kind, **fields)))
        assert all(type(v) is int for v in values)
        return dict(zip(MEASURES, values, strict=True))

    zero = dict.fromkeys(MEASURES, 0) | {"count": 1}
    assert m("arrest", charged=True) == zero | {"charged": 1}
    assert m("arrest", charged=False) == zero
    assert m("arrest") == zero  # not known is not counted as charged
    assert m("seizure", drugs_grams=12.345, weapons_count=3, cash_gbp=1234.56,
             drug_class="A", weapon_type="knife") == zero | {
        "drugs_mg": 12_345, "weapons": 3, "cash_pence": 123_456}
    assert m("seizure", drugs_grams=0.1, cash_gbp=1.15) == zero | {"drugs_mg": 100,
                                                                  "cash_pence": 115}
    assert m("seizure") == zero
    assert m("warrant", executed=True) == zero | {"executed": 1}
    assert m("warrant", executed=False, outcome="not_executed") == zero
    assert m("safeguarding", people=4) == zero | {"people": 4}
    assert m("court_outcome", sentence_months=30) == zero | {"sentence_months": 30}
    assert m("gang_injunction", people=3) == zero | {"people": 3}
    assert m("risk_order", people=2) == zero | {"people": 2}
    for kind in ("stop_search", "recorded_crime", "line_closure", "cuckooing_address",
                 "deployment"):
        assert m(kind) == zero, kind


def test_encode_parse_round_trip():
    events = [parse_event(record(k)) for k in KINDS] + [
        parse_event(record(k, **FULL[k], operation="Op Raptor")) for k in KINDS
    ] + [
        Seizure(event_id="s:1", occurred_at=datetime(2023, 3, 26, 1, 30, tzinfo=UTC),
                lat=51.5, lon=0.5, force="essex", operation="Op Raptor", drugs_grams=2.5,
                drug_class="B", cash_gbp=99.99),
    ]
    for event in events:
        raw = encode_event(event)
        assert isinstance(raw, bytes)
        assert parse_event(raw) == event
        assert encode_event(parse_event(raw)) == raw
        assert (b'"operation"' in raw) == (event.operation is not None)  # None is left out
        assert b'"occurred_at":"' in raw and b'Z"' in raw  # always written in UTC
        assert content_digest(parse_event(raw)) == content_digest(event)


def test_content_digest():
    a = parse_event(record())
    assert content_digest(a) == content_digest(parse_event(record()))
    assert len(content_digest(a)) == 24 and int(content_digest(a), 16) >= 0
    assert content_digest(parse_event(record(charged=False))) != content_digest(a)
    assert content_digest(parse_event(record(lat=51.7357))) != content_digest(a)
    assert content_digest(parse_event(record(event_id="ev-2"))) != content_digest(a)


def test_dead_letter_shape():
    raw = b'{"kind": "arrest", "name": "x"}'
    err = parse_error(raw)
    letter = dead_letter(raw, err.reason, err.detail, "hotspots.events.v1[0]@7")
    assert letter == {"reason": "personal_data", "detail": err.detail,
                      "source": "hotspots.events.v1[0]@7", "raw": raw.decode()}
    orjson.dumps(letter)  # serialisable as is
    long = dead_letter(b"\xff" * 10, "not_json", "d" * 2000, "s")
    assert len(long["detail"]) == 500
    assert long["raw"] == "\ufffd" * 10
    huge = dead_letter(b"a" * (MAX_RECORD_BYTES * 5), "oversized", "", "s")
    assert len(huge["raw"]) == MAX_RECORD_BYTES * 4


# --- admission ---------------------------------------------------------------------------

NOW = datetime(2023, 7, 16, 12, 0, tzinfo=UTC)
PARIS = (48.85, 2.35)
NORTH_OF_SHETLAND = (61.5, -1.0)
DUBLIN = (53.35, -6.26)  # inside the bounding box, which is a box and not a border
ESSEX_AREA = (0.0, 51.4, 1.3, 52.1)


def event_at(when: datetime | str = OCCURRED, lat: float = BASE["lat"],
             lon: float = BASE["lon"]):
    stamp = when if isinstance(when, str) else when.isoformat()
    return parse_event(record(occurred_at=stamp, lat=lat, lon=lon))


def admission_error(admission: Admission, event, now: datetime | None = NOW) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        admission.check(event, now)
    assert str(info.value) == f"{info.value.reason}: {info.value.detail}"
    return info.value


def test_admission_defaults():
    admission = Admission()
    assert admission.area == UK_AREA
    assert admission.max_future == timedelta(days=1)
    event = event_at()
    assert admission.check(event, NOW) is event


@pytest.mark.parametrize(
    "when",
    [NOW + timedelta(days=1, microseconds=1), NOW + timedelta(days=2), datetime(2999, 1, 1, tzinfo=UTC)],
)
def test_future_timestamp(when):
    err = admission_error(Admission(), event_at(when))
    assert err.reason == "future_timestamp"


@pytest.mark.parametrize(
    "when",
    [NOW + timedelta(days=1), "2023-07-17T13:00:00+01:00",  # the boundary, in two spellings
     NOW, NOW - timedelta(days=3650)],
)
def test_up_to_max_future_is_accepted(when):
    event = event_at(when)
    assert Admission().check(event, NOW) is event


@pytest.mark.parametrize("when", ["1965-06-01T12:00:00+00:00", "1970-01-04T23:59:59.999999+00:00",
                                  "1970-01-05T00:59:59+01:00", "0001-01-01T00:00:00+00:00"])
def test_too_old(when):
    err = admission_error(Admission(), event_at(when))
    assert err.reason == "too_old" and "1970-01-05" in err.detail


def test_the_first_storable_week_is_accepted():
    event = event_at("1970-01-05T00:00:00+00:00")
    assert Admission().check(event, NOW) is event


def test_custom_max_future():
    strict = Admission(max_future=timedelta(0))
    assert strict.check(event_at(NOW), NOW)
    assert admission_error(strict, event_at(NOW + timedelta(seconds=1))).reason == \
        "future_timestamp"
    lenient = Admission(max_future=timedelta(days=7))
    assert lenient.check(event_at(NOW + timedelta(days=6)), NOW)


def test_now_defaults_to_the_clock():
    assert Admission().check(event_at(OCCURRED)) is not None
    assert admission_error(Admission(), event_at(datetime(2999, 1, 1, tzinfo=UTC)),
                           now=None).reason == "future_timestamp"


@pytest.mark.parametrize(("lat", "lon"), [PARIS, NORTH_OF_SHETLAND, (40.71, -74.0),
                                          (51.5, 1.81), (49.79, -5.0)])
def test_outside_area(lat, lon):
    err = admission_error(Admission(), event_at(lat=lat, lon=lon))
    assert err.reason == "outside_area"
    assert str(lat) in err.detail and str(lon) in err.detail


@pytest.mark.parametrize(("lat", "lon"), [DUBLIN, (51.5074, -0.1278), (60.15, -1.15),
                                          (49.8, -8.7), (60.9, 1.8)])  # corners are inside
def test_inside_the_uk_area(lat, lon):
    assert Admission().check(event_at(lat=lat, lon=lon), NOW)


def test_custom_area():
    essex = Admission(area=ESSEX_AREA)
    assert essex.check(event_at(), NOW)  # Chelmsford
    london = event_at(lat=51.5074, lon=-0.1278)
    assert Admission().check(london, NOW)
    assert admission_error(essex, london).reason == "outside_area"
    anywhere = Admission(area=(-180, -90, 180, 90))
    assert anywhere.check(event_at(lat=PARIS[0], lon=PARIS[1]), NOW)


def test_admit_parses_then_checks():
    admission = Admission()
    raw = orjson.dumps(record())
    assert admission.admit(raw, NOW) == parse_event(raw)
    assert admission.admit(raw.decode(), NOW) == parse_event(raw)
    assert admission.admit(record(), NOW) == parse_event(raw)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not_json"),
        (b"[]", "not_object"),
        ({**record(), "kind": "parking"}, "unknown_kind"),
        (record(name="John Smith"), "personal_data"),
        (record(colour="red"), "unexpected_field"),
        (record(occurred_at="2023-07-16T23:30:00"), "naive_timestamp"),
        (record(occurred_at=1689550200), "bad_timestamp"),
        (record(v=True), "unsupported_version"),
        (record(lat=91), "bad_coordinates"),
        (record(occurred_at="2023-07-18T00:00:00Z"), "future_timestamp"),
        (record(lat=PARIS[0], lon=PARIS[1]), "outside_area"),
    ],
)
def test_admit_reports_every_refusal(payload, reason):
    with pytest.raises(InvalidEvent) as info:
        Admission().admit(payload, NOW)
    assert info.value.reason == reason


@given(st.lists(st.binary(min_size=0, max_size=40), max_size=60), st.integers(1, 10), st.integers(1, 120))
def test_bulks_keep_every_line_in_order_within_both_limits(lines, most, limit) -> None:
    from hotspots.contract import bulks

    runs = list(bulks(lines, most, limit))
    assert [line for run in runs for line in run] == lines
    assert all(0 < len(run) <= most for run in runs)
    # Over the byte limit only as a line too long to share a run.
    assert all(len(b"\n".join(run)) < limit or len(run) == 1 for run in runs)
