"""The committed JSON Schema is the contract's own export, and agrees with parse_event."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from hotspots.contract import KINDS, InvalidEvent, encode_event, json_schema, parse_event

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "contract" / "events.v1.schema.json"
EXPORT = "hotspots contract schema --out contract/events.v1.schema.json"

BASE = {"event_id": "ev-1", "occurred_at": "2024-07-07T23:30:00Z", "lat": 51.7356,
        "lon": 0.4685, "force": "essex"}
MINIMAL = {
    "arrest": {},
    "seizure": {},
    "warrant": {"executed": True, "outcome": "drugs_found"},
    "safeguarding": {"category": "cuckooing"},
    "court_outcome": {"sentence_months": 30, "disposal": "custody"},
    "stop_search": {"outcome": "A no further action disposal"},
    "recorded_crime": {"crime_type": "Drugs"},
    "gang_injunction": {},
    "risk_order": {},
    "line_closure": {},
    "cuckooing_address": {},
    "deployment": {"deployment_type": "station_patrol"},
}


def minimal(kind: str) -> dict:
    return {"kind": kind, **BASE, **MINIMAL[kind]}


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_committed_schema_is_the_contracts_export():
    assert SCHEMA_PATH.read_text() == json_schema(), (
        f"{SCHEMA_PATH} differs from hotspots.contract.json_schema(): the contract changed "
        f"without re-exporting it. Run `{EXPORT}` and commit the result.")


def test_every_kind_is_in_the_schema():
    schema = json.loads(SCHEMA_PATH.read_text())
    assert set(schema["discriminator"]["mapping"]) == set(KINDS)
    assert set(MINIMAL) == set(KINDS), "add a minimal record here for the new kind"


@pytest.mark.parametrize("kind", KINDS)
def test_minimal_record_of_each_kind_is_valid_for_both(validator, kind):
    record = minimal(kind)
    assert list(validator.iter_errors(record)) == []
    event = parse_event(record)
    assert event.kind == kind
    # What the contract writes is valid against the schema too (defaults filled in).
    assert list(validator.iter_errors(json.loads(encode_event(event)))) == []


INVALID = {
    "unknown kind": ({**minimal("arrest"), "kind": "parking_ticket"}, "unknown_kind"),
    "missing event_id": ({k: v for k, v in minimal("arrest").items() if k != "event_id"},
                         "missing_field"),
    "missing required field": ({k: v for k, v in minimal("warrant").items() if k != "outcome"},
                               "missing_field"),
    "latitude out of range": ({**minimal("seizure"), "lat": 95}, "bad_coordinates"),
    "longitude not a number": ({**minimal("seizure"), "lon": None}, "bad_coordinates"),
    "personal data": ({**minimal("arrest"), "date_of_birth": "1990-01-01"}, "personal_data"),
    "unexpected field": ({**minimal("arrest"), "colour": "red"}, "unexpected_field"),
    "bad event id": ({**minimal("arrest"), "event_id": "has space"}, "bad_field"),
    "empty force": ({**minimal("arrest"), "force": ""}, "bad_field"),
    "force too long": ({**minimal("arrest"), "force": "x" * 81}, "bad_field"),
    "bool not a bool": ({**minimal("warrant"), "executed": "perhaps"}, "bad_field"),
    "enum value": ({**minimal("safeguarding"), "category": "parking"}, "bad_field"),
    "negative count": ({**minimal("seizure"), "weapons_count": -1}, "bad_field"),
    "wrong version": ({**minimal("arrest"), "v": 2}, "unsupported_version"),
    "timestamp not a string": ({**minimal("arrest"), "occurred_at": 1720395000},
                               "bad_timestamp"),
}


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
def test_invalid_records_are_refused_by_both(validator, case):
    record, reason = INVALID[case]
    assert list(validator.iter_errors(record)), f"the schema accepts {case}"
    with pytest.raises(InvalidEvent) as refused:
        parse_event(record)
    assert refused.value.reason == reason


# The schema and parse_event agree: the models are strict, and kind is required on the wire.
LAX = {
    "numeric string latitude": {**minimal("seizure"), "lat": "51.7"},
    "string boolean": {**minimal("warrant"), "executed": "yes"},
    "string integer": {**minimal("court_outcome"), "sentence_months": "30"},
}


@pytest.mark.parametrize("case", LAX, ids=list(LAX))
def test_schema_and_parser_agree_on_string_coercion(validator, case):
    record = LAX[case]
    assert list(validator.iter_errors(record))  # the schema refuses it...
    with pytest.raises(InvalidEvent):
        parse_event(record)  # ...and so does parse_event


def test_schema_requires_kind(validator):
    record = {k: v for k, v in minimal("warrant").items() if k != "kind"}
    with pytest.raises(InvalidEvent) as refused:
        parse_event(record)
    assert refused.value.reason == "missing_field"
    assert list(validator.iter_errors(record)), "the schema accepts a record with no kind"
