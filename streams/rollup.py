"""Pure rollup transforms: one accepted event to the rollup keys it feeds, and an idempotent fold.

Exactness under at-least-once delivery rests on two facts:
  * every rollup key is fed from one source partition only (events are routed by
    their resolution-6 cell), and positions within a partition only grow;
  * each group of keys remembers the last source position it applied, in the same
    changelog record as the sums, so a replayed event is recognised and skipped.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from hotspots import accepted as accepted_topic
from hotspots.contract import MEASURES, Event, measures_of
from hotspots.geo import PARTITION_RES, RESOLUTIONS, cells_of
from hotspots.periods import first_starts, local_date, month_start, week_start

# Weekly and monthly rollups at every resolution; daily ones at the coarsest only, so
# that date-range summaries are exact without multiplying the number of keys.
DAILY_RES = 6
GROUP_RES = PARTITION_RES  # a group lives on the partition that owns its cell


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


# The worker keeps rollup states in *groups*: the keys of one resolution-6 cell whose period
# starts in one calendar month (that month, its weeks, its days) share a group, and a group
# is one record of the changelog. An event feeds one group (two when its week began in the
# previous month), and a batch of events in one area and month rewrites that group once.
# Per-key records cost one changelog write per new key (~5.7 per event on sparse data),
# which was most of the worker's time.
#
# group key   "cell6|YYYY-MM"            key names as RollupKey.encode()
# group state {"off": {source partition: last position applied}, "k": {key: [seq, *measures]}}


@functools.lru_cache(maxsize=1 << 14)
def day_labels(day: date) -> tuple[str, str, str]:
    """(month "YYYY-MM", Monday of the week "YYYY-MM-DD", the day "YYYY-MM-DD"): the worker
    labels every event with them, and ten years hold only 3,653 days."""
    return day.isoformat()[:7], (day - timedelta(days=day.weekday())).isoformat(), day.isoformat()


# Formatting a 64-bit cell as text cost most of rollup_groups: keep each finest cell's
# "|res|cell|" parts (in RESOLUTIONS order) and the group's cell, a bounded few at a time.
_CELL_PARTS: dict[int, tuple[tuple[str, ...], str, str]] = {}
_CELL_PARTS_MAX = 1 << 16
_DAILY_AT = RESOLUTIONS.index(DAILY_RES)


def _cell_parts(cells: dict[int, int]) -> tuple[tuple[str, ...], str, str]:
    finest = cells[RESOLUTIONS[0]]
    parts = _CELL_PARTS.get(finest)
    if parts is None:
        if len(_CELL_PARTS) >= _CELL_PARTS_MAX:
            _CELL_PARTS.clear()
        by_res = tuple(f"|{res}|{cells[res]}|" for res in RESOLUTIONS)
        parts = _CELL_PARTS[finest] = (by_res, by_res[_DAILY_AT], str(cells[GROUP_RES]))
    return parts


def live_from(cutover: date | None) -> tuple[str, str, str] | None:
    """The first (month, week, day) start the worker folds, as ISO dates, for
    :func:`rollup_groups`; None when it folds every period (no cutover)."""
    if cutover is None:
        return None
    starts = first_starts(cutover)
    return starts["month"].isoformat(), starts["week"].isoformat(), starts["day"].isoformat()


def rollup_groups(event: Event, cells: dict[int, int], day: date | None = None,
                  since: tuple[str, str, str] | None = None) -> list[tuple[str, list[str]]]:
    """The groups an event feeds, each with the keys it feeds there (rollup_keys, grouped).

    ``day`` is the event's London date when the caller has it already. ``since``
    (:func:`live_from`) leaves out the keys of periods that start before the cutover: the
    history build writes those. The worker's hot path: no key objects.
    """
    day = day or local_date(event.occurred_at)
    month, week, day_text = day_labels(day)
    if since is not None:
        return _since(rollup_groups(event, cells, day), since, f"{month}-01", week, day_text)
    kind = event.kind
    by_res, daily_part, home = _cell_parts(cells)
    tail = f"{month}-01|{kind}"
    names = [f"month{part}{tail}" for part in by_res]
    if event.time_precision == "month":
        return [(f"{home}|{month}", names)]
    tail = f"{week}|{kind}"
    weekly = [f"week{part}{tail}" for part in by_res]
    daily = f"day{daily_part}{day_text}|{kind}"
    if week[:7] == month:
        return [(f"{home}|{month}", [*names, *weekly, daily])]
    return [(f"{home}|{month}", [*names, daily]), (f"{home}|{week[:7]}", weekly)]


def _since(groups: list[tuple[str, list[str]]], since: tuple[str, str, str],
           month: str, week: str, day: str) -> list[tuple[str, list[str]]]:
    """``groups`` without the keys of periods that start before their kind's cutover (ISO
    dates compare as text), and without the groups left empty."""
    live = {"month": month >= since[0], "week": week >= since[1], "day": day >= since[2]}
    if all(live.values()):
        return groups
    kept = [(group, [n for n in names if live[n[:n.index("|")]]]) for group, names in groups]
    return [(group, names) for group, names in kept if names]


def rollup_names(event: Event, cells: dict[int, int]) -> list[str]:
    """``[k.encode() for k in rollup_keys(event, cells)]``, as the worker makes them."""
    return [name for _, names in rollup_groups(event, cells) for name in names]


def empty_group() -> dict[str, Any]:
    return {"off": {}, "k": {}}


def fold_group(group: dict[str, Any], names: list[str], delta: tuple[int, ...],
               partition: str, pos: int) -> bool:
    """Fold one event into a group state in place, unless its position was already applied.

    ``pos`` is the event's :func:`position` in source partition ``partition``. Returns
    whether the group changed (False: a redelivery, already counted).
    """
    off = group["off"]
    if pos <= off.get(partition, -1):
        return False
    states = group["k"]
    amounts = [(i, amount) for i, amount in enumerate(delta, 1) if amount]
    for name in names:
        state = states.get(name)
        if state is None:
            state = states[name] = [0] * (len(MEASURES) + 1)
        state[0] += 1
        for i, amount in amounts:
            state[i] += amount
    off[partition] = pos
    return True


def group_rows(group: dict[str, Any], names: Iterable[str]) -> list[list[Any]]:
    """Rows of the rollups topic for some keys of a group: each key's full current state,
    ``[name, seq, *measures]``. The sink splits the name: it has CPU to spare, the worker not."""
    states = group["k"]
    return [[name, *states[name]] for name in names]


def accepted_row(event: Event, cells: dict[int, int] | None = None,
                 src: tuple[int, int] = (0, 0), day: date | None = None,
                 measures: tuple[int, ...] | None = None) -> list[Any]:
    """The values of an event's line on the accepted topic (hotspots.accepted.FIELDS order).

    ``src`` is (source partition, :func:`position`) where the event was accepted: always the
    same for the same event, so a consumer of the accepted topic can skip redeliveries.
    ``day`` (London date) and ``measures`` save the worker computing them twice.
    """
    cells = cells or cells_of(event.lat, event.lon)
    month, week, _ = day_labels(day or local_date(event.occurred_at))
    return [event.event_id, event.kind, event.occurred_at.isoformat(), event.time_precision,
            week, f"{month}-01", event.lat, event.lon, event.force, event.operation or "",
            cells[8], cells[7], cells[6], *(measures or measures_of(event)), list(src)]


class RollupFold:
    """One fold's rollup work, shared by the worker (streams.app) and bench.budget: the
    groups it touched (with the partition that owns each), which of them changed, and the
    keys whose states go to the rollups topic.

    ``groups`` holds every group's state (the worker's: its rollups table), updated in
    place and added to when a group is new.
    """

    __slots__ = ("changed", "groups", "since", "to_send", "work")

    def __init__(self, groups: MutableMapping[str, dict[str, Any]],
                 since: tuple[str, str, str] | None = None) -> None:
        self.groups = groups
        self.since = since  # live_from(the cutover): periods before it are the history build's
        self.work: dict[str, tuple[int, dict[str, Any]]] = {}
        self.changed: set[str] = set()  # groups this fold changed: their changelog records
        self.to_send: dict[str, set[str]] = {}  # group -> keys whose states are sent

    def add(self, event: Event, cells: dict[int, int], partition: int, pos: int, raw: bytes) -> bytes:
        """Fold one accepted event (``raw``, at ``pos`` of source ``partition``) into its
        groups; return its line of the accepted topic."""
        delta = measures_of(event)
        day = local_date(event.occurred_at)
        part = str(partition)
        work = self.work
        for group_key, names in rollup_groups(event, cells, day, self.since):
            entry = work.get(group_key)
            if entry is None:
                group = self.groups.get(group_key)
                if group is None:
                    group = self.groups[group_key] = empty_group()
                entry = work[group_key] = (partition, group)
            if fold_group(entry[1], names, delta, part, pos):
                self.changed.add(group_key)
            # A redelivered event's keys are sent too: the crash that caused the redelivery
            # may have come before its fold's envelope was written. The sink keeps the
            # highest seq, so a state sent twice changes nothing.
            self.to_send.setdefault(group_key, set()).update(names)
        return accepted_topic.line(accepted_row(event, cells, (partition, pos), day, delta), raw)

    def changed_groups(self) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """(partition, group key, state) of each group this fold changed."""
        for group_key in self.changed:
            partition, group = self.work[group_key]
            yield partition, group_key, group

    def state_rows(self) -> dict[int, list[list[Any]]]:
        """Rows of the rollups topic (:func:`group_rows`), by partition."""
        states: dict[int, list[list[Any]]] = {}
        for group_key, keys in self.to_send.items():
            partition, group = self.work[group_key]
            states.setdefault(partition, []).extend(group_rows(group, keys))
        return states
