"""The v1 event contract: parsing, stable reason codes for refusals, integer measures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from hotspots.contract import (
    KINDS,
    MAX_RECORD_BYTES,
    MEASURES,
    Arrest,
    CourtOutcome,
    InvalidEvent,
    Safeguarding,
    Seizure,
    Warrant,
    content_digest,
    dead_letter,
    encode_event,
    measures_of,
    parse_event,
)

BASE = {"event_id": "ev-1", "occurred_at": "2023-07-16T23:30:00Z", "lat": 51.7356,
        "lon": 0.4685, "force": "essex"}
MINIMAL = {
    "arrest": {"kind": "arrest", "charged": True},
    "seizure": {"kind": "seizure"},
    "warrant": {"kind": "warrant", "executed": True, "outcome": "drugs_found"},
    "safeguarding": {"kind": "safeguarding", "category": "cuckooing"},
    "court_outcome": {"kind": "court_outcome", "sentence_months": 30, "disposal": "custody"},
}
MODELS = {"arrest": Arrest, "seizure": Seizure, "warrant": Warrant,
          "safeguarding": Safeguarding, "court_outcome": CourtOutcome}


def record(kind: str = "arrest", **changes) -> dict:
    return {**BASE, **MINIMAL[kind], **changes}


def parse_error(payload) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        parse_event(payload)
    return info.value


def reason_of(payload) -> str:
    err = parse_error(payload)
    assert str(err) == f"{err.reason}: {err.detail}"
    return err.reason


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_parses_from_a_minimal_record(kind):
    event = parse_event(record(kind))
    assert type(event) is MODELS[kind]
    assert event.kind == kind and event.v == 1
    assert event.occurred_at == datetime(2023, 7, 16, 23, 30, tzinfo=UTC)
    assert event.operation is None
    # The same record as JSON bytes and as text.
    assert parse_event(orjson.dumps(record(kind))) == event
    assert parse_event(orjson.dumps(record(kind)).decode()) == event


def test_kinds_cover_every_model():
    assert set(KINDS) == set(MINIMAL) == set(MODELS)


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
        ({k: v for k, v in record().items() if k != "charged"}, "missing_field"),
        ({k: v for k, v in record().items() if k != "occurred_at"}, "missing_field"),
        (record(name="John Smith"), "unexpected_field"),
        (record(date_of_birth="1990-01-01"), "unexpected_field"),
        (record(occurred_at="2023-07-16T23:30:00"), "naive_timestamp"),
        (record(occurred_at=datetime(2023, 7, 16, 23, 30)), "naive_timestamp"),  # noqa: DTZ001
        (record(occurred_at="last tuesday"), "bad_timestamp"),
        (record(occurred_at="2023-13-45T99:00:00Z"), "bad_timestamp"),
        (record(lat=91), "bad_coordinates"),
        (record(lat=-90.0001), "bad_coordinates"),
        (record(lon=-181), "bad_coordinates"),
        (record(lat="north"), "bad_coordinates"),
        (record(lat=float("nan")), "bad_coordinates"),
        (record(lon=float("inf")), "bad_coordinates"),
        (record(charged="maybe"), "bad_field"),
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
        (record(v="1"), "unsupported_version"),
        (record(v=None), "unsupported_version"),
    ],
)
def test_reason_codes(payload, reason):
    assert reason_of(payload) == reason


def test_naive_and_unparseable_timestamps_are_told_apart():
    naive = parse_error(record(occurred_at="2023-07-16T23:30:00"))
    assert naive.reason == "naive_timestamp" and "occurred_at" in naive.detail
    garbage = parse_error(record(occurred_at="soon"))
    assert garbage.reason == "bad_timestamp" and "occurred_at" in garbage.detail
    # Any explicit offset is accepted and kept.
    event = parse_event(record(occurred_at="2023-07-17T00:30:00+01:00"))
    assert event.occurred_at.utcoffset() == timedelta(hours=1)
    assert event.occurred_at == datetime(2023, 7, 16, 23, 30, tzinfo=UTC)


def test_a_forbidden_field_outranks_other_errors():
    # Personal data is named as the reason even when the record is also incomplete or wrong.
    bare = {"kind": "arrest", "date_of_birth": "1990-01-01"}
    assert reason_of(bare) == "unexpected_field"
    assert "date_of_birth" in parse_error(bare).detail
    assert reason_of(record(lat=91, name="John Smith")) == "unexpected_field"


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


def test_encode_parse_round_trip():
    events = [parse_event(record(k)) for k in KINDS] + [
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
    assert letter == {"reason": "unexpected_field", "detail": err.detail,
                      "source": "hotspots.events.v1[0]@7", "raw": raw.decode()}
    orjson.dumps(letter)  # serialisable as is
    long = dead_letter(b"\xff" * 10, "not_json", "d" * 2000, "s")
    assert len(long["detail"]) == 500
    assert long["raw"] == "\ufffd" * 10
    huge = dead_letter(b"a" * (MAX_RECORD_BYTES * 5), "oversized", "", "s")
    assert len(huge["raw"]) == MAX_RECORD_BYTES * 4
