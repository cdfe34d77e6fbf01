"""The event contract, v1: the one definition that producers, streams and sinks import.

Every record on ``hotspots.events.v1`` is a JSON object with a ``kind`` discriminator.
Models are frozen and forbid unknown fields, so a personal-data field such as a name
or a date of birth can never ride along silently (it is refused as ``personal_data``).
v1 grows only by additions that old records still satisfy (new kinds, optional fields);
a breaking change would be v2 on a new topic. ``contract/events.v1.schema.json`` is the
exported JSON Schema (`hotspots contract schema`). Money and drug weights travel as
decimals but are aggregated as integers (pence, milligrams) so that sums are exact.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, get_args

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

CONTRACT_VERSION: Literal[1] = 1
CONTENT_TYPE = "application/json"
# A bulk record: many events, one per line (newline-delimited JSON), for replays and backfills.
# Every line is an event of this contract, validated on its own; the product's producer sends
# them for live feeds too, after a short linger. The header, not the value, tells the two apart.
BULK_CONTENT_TYPE = "application/x-ndjson"
# Rows at most in one envelope of the worker's rollups topic (a JSON array of
# [key, seq, *measures], each under 256 bytes): 256 KB, far below Kafka's 1 MB limit. The sink
# sizes its polls by it.
ROWS_PER_ENVELOPE = 1024
MAX_RECORD_BYTES = 16 * 1024

EventId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]
ShortText = Annotated[str, Field(min_length=1, max_length=80)]
TimePrecision = Literal["instant", "day", "month"]
_NUMBER = re.compile(r"-?\d+(\.\d*)?")


class _Event(BaseModel):
    # strict: "51.7" is not a latitude and "yes" is not a boolean, as the JSON Schema says.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=True)

    v: Literal[1] = CONTRACT_VERSION
    event_id: EventId
    occurred_at: Annotated[AwareDatetime, Field(strict=False)]  # an ISO 8601 string in JSON
    # How much of occurred_at is known. Month-precision events (police.uk street crime)
    # feed monthly rollups only; weekly and daily rollups need day precision or better.
    time_precision: TimePrecision = "instant"
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    force: ShortText
    operation: ShortText | None = None

    @field_validator("v", mode="before")
    @classmethod
    def _exact_version(cls, value: Any) -> Any:
        if type(value) is not int:  # true and 1.0 are not versions
            raise PydanticCustomError("version_type", "v must be the integer 1")
        return value

    @field_validator("occurred_at", mode="after")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        # One spelling per instant, so a re-send written with another offset is the same event.
        try:
            return value.astimezone(UTC)
        except OverflowError:  # e.g. 9999-12-31T23:59-12:00 is past year 9999 in UTC
            raise ValueError("occurred_at is out of range once converted to UTC") from None

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _reject_naive(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) or (
                isinstance(value, str) and _NUMBER.fullmatch(value.strip())):
            # pydantic would read a number as Unix time: too easy to get wrong silently.
            raise PydanticCustomError("timestamp_type", "occurred_at must be an ISO 8601 string")
        # pydantic would say "timezone info required"; say what an analyst can act on. The
        # error type is pydantic's own, so naive strings and naive datetimes share a reason.
        if isinstance(value, datetime) and value.utcoffset() is None:
            raise PydanticCustomError("timezone_aware",
                                      "naive timestamp: occurred_at needs a UTC offset")
        return value


class Arrest(_Event):
    kind: Literal["arrest"] = "arrest"
    charged: bool | None = None  # None: not known (e.g. an arrest from a stop and search)
    offence: ShortText | None = None


DrugClass = Literal["A", "B", "C"]


class Seizure(_Event):
    """One recovery: any mix of drugs, weapons and cash found together."""

    kind: Literal["seizure"] = "seizure"
    drugs_grams: Annotated[float, Field(ge=0, le=1_000_000)] = 0.0
    drug_class: DrugClass | None = None
    weapons_count: Annotated[int, Field(ge=0, le=10_000)] = 0
    weapon_type: ShortText | None = None
    cash_gbp: Annotated[float, Field(ge=0, le=100_000_000)] = 0.0

    @field_validator("cash_gbp")
    @classmethod
    def _whole_pence(cls, value: float) -> float:
        if abs(value * 100 - round(value * 100)) > 1e-6:
            raise ValueError("cash_gbp must be whole pence")
        return value


WarrantOutcome = Literal[
    "drugs_found", "weapons_found", "cash_found", "arrest_made", "nothing_found", "not_executed"
]


class Warrant(_Event):
    kind: Literal["warrant"] = "warrant"
    executed: bool
    outcome: WarrantOutcome


SafeguardingCategory = Literal[
    "county_lines", "cuckooing", "child_exploitation", "modern_slavery", "missing_person", "other"
]


class Safeguarding(_Event):
    kind: Literal["safeguarding"] = "safeguarding"
    people: Annotated[int, Field(ge=1, le=1_000)] = 1
    category: SafeguardingCategory


CourtDisposal = Literal["custody", "suspended", "community", "fine", "acquitted"]


class CourtOutcome(_Event):
    kind: Literal["court_outcome"] = "court_outcome"
    sentence_months: Annotated[int, Field(ge=0, le=1_200)]
    disposal: CourtDisposal


class StopSearch(_Event):
    kind: Literal["stop_search"] = "stop_search"
    outcome: ShortText
    legislation: ShortText | None = None
    object_of_search: ShortText | None = None


class RecordedCrime(_Event):
    """A crime as recorded (police.uk street level: month precision, snap-point location)."""

    kind: Literal["recorded_crime"] = "recorded_crime"
    crime_type: ShortText
    outcome: ShortText | None = None


class GangInjunction(_Event):
    kind: Literal["gang_injunction"] = "gang_injunction"
    people: Annotated[int, Field(ge=1, le=1_000)] = 1


class RiskOrder(_Event):
    """Slavery and trafficking risk or prevention orders."""

    kind: Literal["risk_order"] = "risk_order"
    order_type: Literal["risk_order", "prevention_order"] = "risk_order"
    people: Annotated[int, Field(ge=1, le=1_000)] = 1


class LineClosure(_Event):
    """A county-lines deal line closed. The line's number is personal data and is not carried."""

    kind: Literal["line_closure"] = "line_closure"
    lines: Annotated[int, Field(ge=1, le=1_000)] = 1


class CuckooingAddress(_Event):
    """A home taken over as a base for dealing; located by its cell only, never an address."""

    kind: Literal["cuckooing_address"] = "cuckooing_address"
    status: Literal["identified", "visited", "closure_order", "resolved"] = "identified"


class Deployment(_Event):
    """A planned operation on the ground, e.g. a safeguarding operation at a station."""

    kind: Literal["deployment"] = "deployment"
    deployment_type: ShortText
    location_type: ShortText | None = None


Event = Annotated[
    Arrest | Seizure | Warrant | Safeguarding | CourtOutcome | StopSearch | RecordedCrime
    | GangInjunction | RiskOrder | LineClosure | CuckooingAddress | Deployment,
    Field(discriminator="kind"),
]
KINDS: tuple[str, ...] = (
    "arrest", "seizure", "warrant", "safeguarding", "court_outcome", "stop_search",
    "recorded_crime", "gang_injunction", "risk_order", "line_closure", "cuckooing_address",
    "deployment")

# Field names that would carry personal data. Refused with their own reason, so a feed
# that starts sending them is noticed, not just dropped as "unexpected".
PERSONAL_DATA_FIELDS = frozenset({
    "name", "first_name", "forename", "last_name", "surname", "full_name", "alias",
    "date_of_birth", "dob", "birth_date", "age", "address", "street_address", "house_number",
    "postcode", "post_code", "phone", "phone_number", "mobile", "email", "ni_number",
    "national_insurance_number", "pnc_id", "pnc_number", "cro_number", "passport_number",
    "driving_licence", "vehicle_registration", "vrm", "ethnicity", "gender", "nationality",
})


_NOT_ALNUM = re.compile(r"[^a-z0-9]")


def _folded(name: str) -> str:
    return _NOT_ALNUM.sub("", name.lower())


_PERSONAL_FOLDED = frozenset(_folded(f) for f in PERSONAL_DATA_FIELDS)


# Every field of every event is checked, and feeds repeat a few names: cached, bounded
# because the names come from outside.
@functools.lru_cache(maxsize=4096)
def is_personal_field(name: str) -> bool:
    """Whether a field name is one of PERSONAL_DATA_FIELDS in any spelling: any case, and
    camelCase, kebab-case or spaced ("dateOfBirth", "Date-Of-Birth", "post code")."""
    return _folded(name) in _PERSONAL_FOLDED


_event_adapter: TypeAdapter[Event] = TypeAdapter(Event)
# Every field name of every kind (none is personal: tests/unit/test_contract.py).
# Every kind's model, in Event's order.
MODELS: tuple[type[BaseModel], ...] = get_args(get_args(Event)[0])
CONTRACT_FIELDS = frozenset(name for model in MODELS for name in model.model_fields)


class InvalidEvent(ValueError):
    """A record that is not a valid v1 event; ``reason`` is a short, stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _reason_for(err: ValidationError) -> InvalidEvent:
    errors = err.errors()
    # A forbidden field (a name, a date of birth) is named even when other fields are also
    # wrong: it is the refusal that matters most.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = ".".join(str(p) for p in first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden" and is_personal_field(str(first["loc"][-1])):
        return InvalidEvent("personal_data", f"{loc}: personal data is not accepted")
    if kind == "union_tag_invalid":
        reason = "unknown_kind"
    elif kind == "union_tag_not_found":
        reason = "missing_field"
    elif kind == "extra_forbidden":
        reason = "unexpected_field"
    elif kind == "missing":
        reason = "missing_field"
    elif kind == "version_type":
        reason = "unsupported_version"
    elif kind == "timezone_aware":
        reason = "naive_timestamp"
    elif loc.endswith("occurred_at"):
        reason = "bad_timestamp"
    elif loc.endswith(("lat", "lon")):
        reason = "bad_coordinates"
    else:
        reason = "bad_field"
    return InvalidEvent(reason, f"{loc}: {first['msg']}")


def parse_event(payload: bytes | str | dict[str, Any]) -> Event:
    """Decode and validate one record, raising InvalidEvent with a reason code."""
    if isinstance(payload, (bytes, str)):
        size = len(payload.encode("utf-8", "surrogatepass") if isinstance(payload, str)
                   else payload)
        if size > MAX_RECORD_BYTES:
            raise InvalidEvent("oversized", f"{size} bytes > {MAX_RECORD_BYTES}")
        try:
            payload = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent("not_json", str(exc)) from None
    if not isinstance(payload, dict):
        raise InvalidEvent("not_object", f"top level is {type(payload).__name__}")
    # Before anything else, whatever the kind: a feed sending personal data must be noticed.
    # The usual record holds contract fields only, none of them personal: one set test.
    personal = [] if payload.keys() <= CONTRACT_FIELDS else sorted(
        k for k in payload if isinstance(k, str) and is_personal_field(k))
    if personal:
        raise InvalidEvent("personal_data", f"{', '.join(personal)}: personal data is not accepted")
    if payload.get("v", CONTRACT_VERSION) != CONTRACT_VERSION:
        raise InvalidEvent("unsupported_version", f"v={payload.get('v')!r}")
    try:
        return _event_adapter.validate_python(payload)
    except ValidationError as exc:
        raise _reason_for(exc) from None


# The United Kingdom with its territorial waters, as (min_lon, min_lat, max_lon, max_lat).
UK_AREA: tuple[float, float, float, float] = (-8.7, 49.8, 1.8, 60.9)


# The store keeps periods as ClickHouse Dates (1970-01-01 to 2149-06-06): an event's week must
# start inside that range. Before this check a 1965 event was accepted and then stopped the
# sink, which retried its insert for ever. (Europe/London was UTC+1 all through 1970, so
# this instant is Monday 5 January in London too.)
EARLIEST = datetime(1970, 1, 5, tzinfo=UTC)


@dataclass(frozen=True)
class Admission:
    """Checks that need context beyond the record: the clock and the accepted area."""

    area: tuple[float, float, float, float] = UK_AREA
    max_future: timedelta = timedelta(days=1)

    def check(self, event: Event, now: datetime | None = None) -> Event:
        now = now or datetime.now(UTC)
        if event.occurred_at > now + self.max_future:
            raise InvalidEvent("future_timestamp",
                               f"occurred_at {event.occurred_at.isoformat()} is after "
                               f"{(now + self.max_future).isoformat()}")
        if event.occurred_at < EARLIEST:
            raise InvalidEvent("too_old", f"occurred_at {event.occurred_at.isoformat()} is before "
                                          f"{EARLIEST.date().isoformat()}, the first week stored")
        min_lon, min_lat, max_lon, max_lat = self.area
        if not (min_lon <= event.lon <= max_lon and min_lat <= event.lat <= max_lat):
            raise InvalidEvent("outside_area",
                               f"({event.lat}, {event.lon}) is outside the accepted area {self.area}")
        return event

    def admit(self, payload: bytes | str | dict[str, Any], now: datetime | None = None) -> Event:
        return self.check(parse_event(payload), now)


def encode_event(event: Event) -> bytes:
    """The event's canonical bytes: its fields in model order, None left out, UTC as "Z".

    The same bytes as ``orjson.dumps(event.model_dump(mode="json", exclude_none=True))``
    (tests/unit/test_hostile.py checks it), which content_digest hashes, without pydantic's
    serializer: the models hold only str, int, float, bool and UTC datetimes, which orjson
    writes as pydantic does: content_digest 4.3 -> 3.1 µs an event (docs/bench.md).
    """
    return orjson.dumps({k: v for k, v in event.__dict__.items() if v is not None},
                        option=orjson.OPT_UTC_Z)


def content_digest(event: Event) -> str:
    """A digest of the event's content, to tell a redelivery from a conflicting reuse of an id."""
    return hashlib.blake2b(encode_event(event), digest_size=12).hexdigest()


# Measures carried by every rollup row, as integers so that sums are exact.
MEASURES: tuple[str, ...] = (
    "count",
    "charged",
    "executed",
    "weapons",
    "drugs_mg",
    "cash_pence",
    "sentence_months",
    "people",
)


def measures_of(event: Event) -> tuple[int, ...]:
    """The integer contribution of one event to each of MEASURES, in order."""
    charged = executed = weapons = drugs_mg = cash_pence = months = people = 0
    if isinstance(event, Arrest):
        charged = int(event.charged is True)
    elif isinstance(event, Seizure):
        weapons = event.weapons_count
        drugs_mg = round(event.drugs_grams * 1000)
        cash_pence = round(event.cash_gbp * 100)
    elif isinstance(event, Warrant):
        executed = int(event.executed)
    elif isinstance(event, (Safeguarding, GangInjunction, RiskOrder)):
        people = event.people  # people safeguarded, or made subject to the order
    elif isinstance(event, CourtOutcome):
        months = event.sentence_months
    return (1, charged, executed, weapons, drugs_mg, cash_pence, months, people)


def dead_letter(raw: bytes, reason: str, detail: str, source: str) -> dict[str, Any]:
    """A dead-letter record: the original bytes (as text), why they were refused, and where from."""
    return {"reason": reason, "detail": detail[:500], "source": source,
            "raw": raw[:MAX_RECORD_BYTES * 4].decode("utf-8", "replace")}


def bulks(lines: Iterable[bytes], most: int, limit: int) -> Iterator[list[bytes]]:
    """The lines in order, in runs of at most ``most`` lines whose newline-joined size is at
    most ``limit`` bytes (a longer line alone): one run a bulk record or envelope."""
    run: list[bytes] = []
    size = 0
    for item in lines:
        if run and (len(run) >= most or size + len(item) + 1 > limit):
            yield run
            run, size = [], 0
        run.append(item)
        size += len(item) + 1
    if run:
        yield run


def where(origin: str, bulk: bool, index: int) -> str:
    """A refused line's place for its dead letter: the record, and the line of a bulk one."""
    return f"{origin}#{index}" if bulk else origin


def json_schema() -> str:
    """The contract as JSON Schema (draft 2020-12), stable text for committing and diffing."""
    schema = _event_adapter.json_schema(mode="validation")
    for model in schema.get("$defs", {}).values():
        # Models default kind for convenience in Python; on the wire it is required.
        if "kind" in model.get("properties", {}) and "kind" not in model.get("required", []):
            model["required"] = ["kind", *model.get("required", [])]
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "$id": "https://hotspots.invalid/contract/events.v1.schema.json",
              "title": f"hotspots event contract v{CONTRACT_VERSION}", **schema}
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"
