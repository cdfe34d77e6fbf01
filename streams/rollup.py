"""Pure rollup transforms: one accepted event to the rollup keys it feeds, and an idempotent fold.

Exactness under at-least-once delivery rests on two facts:
  * every rollup key is fed from one source partition only (events are routed by
    their resolution-6 cell), and offsets within a partition only grow;
  * each key's state remembers the last source offset it applied, in the same
    changelog record as the sums, so a replayed message is recognised and skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from hotspots.contract import MEASURES, Event, measures_of
from hotspots.geo import RESOLUTIONS, cells_of
from hotspots.periods import local_date, month_start, week_start

# Weekly and monthly rollups at every resolution; daily ones at the coarsest only, so
# that date-range summaries are exact without multiplying the number of keys.
DAILY_RES = 6


@dataclass(frozen=True, slots=True)
class RollupKey:
    period: str
    res: int
    cell: int
    start: date
    kind: str

    def encode(self) -> str:
        return f"{self.period}|{self.res}|{self.cell}|{self.start.isoformat()}|{self.kind}"

    @classmethod
    def decode(cls, text: str) -> RollupKey:
        period, res, cell, start, kind = text.split("|")
        return cls(period, int(res), int(cell), date.fromisoformat(start), kind)


def rollup_keys(event: Event, cells: dict[int, int] | None = None) -> list[RollupKey]:
    """Monthly keys for every event; weekly and daily ones only when the day is known."""
    cells = cells or cells_of(event.lat, event.lon)
    month = month_start(event.occurred_at)
    keys = [RollupKey("month", res, cells[res], month, event.kind) for res in RESOLUTIONS]
    if event.time_precision != "month":
        week = week_start(event.occurred_at)
        keys += [RollupKey("week", res, cells[res], week, event.kind) for res in RESOLUTIONS]
        keys.append(RollupKey("day", DAILY_RES, cells[DAILY_RES], local_date(event.occurred_at),
                              event.kind))
    return keys


# An event's position in its source partition: the record's offset, then its index within
# the record (a bulk envelope holds many events). Orders events like offsets do.
INDEX_BITS = 16
MAX_PER_RECORD = 1 << INDEX_BITS


def position(offset: int, index: int = 0) -> int:
    if not 0 <= index < MAX_PER_RECORD:
        raise ValueError(f"index {index} outside 0..{MAX_PER_RECORD - 1}")
    return offset << INDEX_BITS | index


def rollup_names(event: Event, cells: dict[int, int]) -> list[str]:
    """``[k.encode() for k in rollup_keys(event, cells)]``, without the key objects.

    The worker's hot path: one London conversion per event instead of three.
    """
    day = local_date(event.occurred_at)
    kind = event.kind
    month = day.replace(day=1).isoformat()
    names = [f"month|{res}|{cells[res]}|{month}|{kind}" for res in RESOLUTIONS]
    if event.time_precision != "month":
        week = (day - timedelta(days=day.weekday())).isoformat()
        names += [f"week|{res}|{cells[res]}|{week}|{kind}" for res in RESOLUTIONS]
        names.append(f"day|{DAILY_RES}|{cells[DAILY_RES]}|{day.isoformat()}|{kind}")
    return names


def empty_state() -> dict[str, Any]:
    return {"m": [0] * len(MEASURES), "seq": 0, "off": {}}


def apply(state: dict[str, Any] | None, delta: tuple[int, ...], partition: int,
          offset: int) -> tuple[dict[str, Any], bool]:
    """Fold one event's measures into a key's state unless that position was already applied.

    ``offset`` is the event's :func:`position` (states written before positions existed hold
    plain offsets, which are smaller than any position of a later record: still monotonic).

    Returns the (new or unchanged) state and whether it changed.
    """
    state = state or empty_state()
    applied = state["off"].get(str(partition), -1)
    if offset <= applied:
        return state, False
    return {
        "m": [a + b for a, b in zip(state["m"], delta, strict=True)],
        "seq": state["seq"] + 1,
        "off": {**state["off"], str(partition): offset},
    }, True


def rollup_row(key: RollupKey, state: dict[str, Any]) -> dict[str, Any]:
    """The record published on the rollups topic: the key's full current state."""
    row: dict[str, Any] = {
        "period": key.period, "res": key.res, "cell": key.cell,
        "period_start": key.start.isoformat(), "kind": key.kind, "seq": state["seq"],
    }
    row.update(zip(MEASURES, state["m"], strict=True))
    return row


def accepted_row(event: Event, raw: bytes, cells: dict[int, int] | None = None,
                 src: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    """The record published on the accepted topic, for the raw-event table.

    ``src`` is (source partition, :func:`position`) where the event was accepted: always the
    same for the same event, so a consumer of the accepted topic can skip redeliveries.
    """
    cells = cells or cells_of(event.lat, event.lon)
    row: dict[str, Any] = {
        "event_id": event.event_id, "kind": event.kind,
        "occurred_at": event.occurred_at.isoformat(),
        "time_precision": event.time_precision,
        "week_start": week_start(event.occurred_at).isoformat(),
        "month_start": month_start(event.occurred_at).isoformat(),
        "lat": event.lat, "lon": event.lon, "force": event.force,
        "operation": event.operation or "",
        "cell8": cells[8], "cell7": cells[7], "cell6": cells[6],
        "payload": raw.decode("utf-8", "replace"),
        "src": list(src),
    }
    row.update(zip(MEASURES, measures_of(event), strict=True))
    return row
