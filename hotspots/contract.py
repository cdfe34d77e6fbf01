"""The event contract, v1: the one definition that producers, streams and sinks import.

Every record on ``hotspots.events.v1`` is a JSON object with a ``kind`` discriminator.
Models are frozen and forbid unknown fields, so a personal-data field such as a name
or a date of birth can never ride along silently. Money and drug weights travel as
decimals but are aggregated as integers (pence, milligrams) so that sums are exact.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime
from typing import Annotated, Any, Literal

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
MAX_RECORD_BYTES = 16 * 1024

EventId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]
ShortText = Annotated[str, Field(min_length=1, max_length=80)]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    v: Literal[1] = CONTRACT_VERSION
    event_id: EventId
    occurred_at: AwareDatetime
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    force: ShortText
    operation: ShortText | None = None

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _reject_naive(cls, value: Any) -> Any:
        # pydantic would say "timezone info required"; say what an analyst can act on. The
        # error type is pydantic's own, so naive strings and naive datetimes share a reason.
        if isinstance(value, datetime) and value.utcoffset() is None:
            raise PydanticCustomError("timezone_aware",
                                      "naive timestamp: occurred_at needs a UTC offset")
        return value


class Arrest(_Event):
    kind: Literal["arrest"] = "arrest"
    charged: bool
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


Event = Annotated[
    Arrest | Seizure | Warrant | Safeguarding | CourtOutcome, Field(discriminator="kind")
]
KINDS: tuple[str, ...] = ("arrest", "seizure", "warrant", "safeguarding", "court_outcome")

_event_adapter: TypeAdapter[Event] = TypeAdapter(Event)


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
    if kind == "union_tag_invalid":
        reason = "unknown_kind"
    elif kind == "union_tag_not_found":
        reason = "missing_field"
    elif kind == "extra_forbidden":
        reason = "unexpected_field"
    elif kind == "missing":
        reason = "missing_field"
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
    if payload.get("v", CONTRACT_VERSION) != CONTRACT_VERSION:
        raise InvalidEvent("unsupported_version", f"v={payload.get('v')!r}")
    try:
        return _event_adapter.validate_python(payload)
    except ValidationError as exc:
        raise _reason_for(exc) from None


def encode_event(event: Event) -> bytes:
    return orjson.dumps(event.model_dump(mode="json", exclude_none=True))


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
        charged = int(event.charged)
    elif isinstance(event, Seizure):
        weapons = event.weapons_count
        drugs_mg = round(event.drugs_grams * 1000)
        cash_pence = round(event.cash_gbp * 100)
    elif isinstance(event, Warrant):
        executed = int(event.executed)
    elif isinstance(event, Safeguarding):
        people = event.people
    elif isinstance(event, CourtOutcome):
        months = event.sentence_months
    values = (1, charged, executed, weapons, drugs_mg, cash_pence, months, people)
    assert all(isinstance(v, int) and not math.isnan(v) for v in values)
    return values


def dead_letter(raw: bytes, reason: str, detail: str, source: str) -> dict[str, Any]:
    """A dead-letter record: the original bytes (as text), why they were refused, and where from."""
    return {"reason": reason, "detail": detail[:500], "source": source,
            "raw": raw[:MAX_RECORD_BYTES * 4].decode("utf-8", "replace")}
