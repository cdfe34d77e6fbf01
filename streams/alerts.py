"""Spike alerts (an app of their own): each area's counts against its own normal, one alert per spike.

Topology (topics prefixed by HOTSPOTS_TOPIC_PREFIX), added to the app by
:func:`add_spike_alerts`:

    accepted.v1 --spikes--> alerts.v1                 res-7 and res-6 cells of each event
                  \\--> district-events.v1 --district_spikes--> alerts.v1

The detector is streams.spikes (Poisson week test, EARS C2 on days, minimum count 5,
cooldown). Its state lives in changelogged tables: one entry per res-6 cell (its series and
its res-7 children's, every kind) or district, and one per partition (the feed's
:class:`~streams.spikes.Coverage` and the last source position applied). A restarted worker
resumes where it stopped and does not raise an alert again: the week alerted is part of
each series' state.

* Ordering: accepted envelopes sit on their source's partition number, so every event of a
  res-6 cell (and of its res-7 children) reaches ``spikes`` from one partition, in order.
  A district spans partitions, so ``spikes`` re-keys events by district onto an internal
  topic (one envelope per district partition per batch, so order holds per source).
* Redelivery: each accepted row carries ``src`` = (source partition, position). Each entry
  keeps, beside its series (key ``@src``), the last position it applied from each source
  partition: a row at or before it is a redelivery and is skipped. Kept in the same
  changelog record as the counts it guards, so a worker killed while an entry's writes are
  in flight neither skips an event nor counts one twice.
* Writes: alerts and re-keyed events are sent and acknowledged first, then the tables'
  changelogs, then the batch is acked. A crash in between re-raises the same alert with
  the same ``alert_id`` (the ClickHouse table and the webhook's Idempotency-Key absorb it);
  no crash can lose one. A write refused after retries stops the worker, as in ``aggregate``.
* Live or backfill: an event more than ``HOTSPOTS_SPIKE_LIVE_DAYS`` old when processed
  updates the baselines but pages nobody (its spike is counted in hotspots_spikes_silent
  and starts the cooldown). Events older than the baseline window are ignored.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

import faust
import orjson

from hotspots import accepted
from hotspots.caughtup import SOURCES, source_topic
from hotspots.geo import partition_of, to_str
from hotspots.metrics import ALERTS, OPEN_ALERTS, SPIKES_SILENT
from hotspots.periods import local_date, week_start
from hotspots.settings import WorkerSettings
from streams.districts import DistrictLocator
from streams.faust_app import new_app
from streams.progress import SourceProgress
from streams.spikes import Alert, Coverage, Series, SpikeConfig, observe

log = logging.getLogger(__name__)

CELL_RES = (7, 6)
AREA_TYPES = {"cell6": "cell", "district": "district"}  # table key prefix -> area type
CELLS = SpikeConfig(area_type="cell")
DISTRICTS = SpikeConfig(area_type="district")
PER_ENVELOPE = 1000  # re-keyed events per envelope: ~150 bytes each, far below Kafka's 1 MB


def alert_record(alert: Alert, res: int) -> dict[str, Any]:
    """An alert as published on the alerts topic, stored and posted (``res`` 0: a district)."""
    return {
        "alert_id": alert.alert_id, "area_type": alert.area_type, "area": alert.area, "res": res,
        "kind": alert.kind, "period": alert.period, "period_start": alert.period_start.isoformat(),
        "observed": alert.observed, "expected": alert.expected, "p_value": alert.p_value,
        "method": alert.method, "first_seen": alert.first_seen.isoformat(),
        "triggering_event_id": alert.triggering_event_id,
    }


SRC = "@src"  # an entry's key for its last position applied per source partition


@dataclass(slots=True)
class Feed:
    """A partition's coverage. ``src``: the last position applied per source partition, as
    feeds recorded it before entries kept their own (read only, for entries without)."""

    coverage: Coverage = field(default_factory=Coverage)
    src: dict[str, int] = field(default_factory=dict)

    def to_state(self) -> dict[str, Any]:
        return {**self.coverage.to_state(), "src": dict(self.src)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Feed:
        return cls(Coverage.from_state(state), dict(state.get("src", {})))


class Fold:
    """One batch's view of a spike table: states decoded once, written back once per key.

    A table entry bundles the series of one area: a res-6 cell's own and its res-7
    children's, every kind (``cell6|<h3>``), or a district's (``district|<name>``). Bursty
    traffic then writes one changelog record per area and batch, not one per series: those
    writes share the worker's producer with the rollups.
    """

    def __init__(self, data: Mapping[str, Any], config: SpikeConfig, live: timedelta,
                 now: datetime) -> None:
        self.data, self.config, self.live, self.now = data, config, live, now
        self.feeds: dict[int, Feed] = {}
        self.bundles: dict[str, tuple[int, dict[str, Any]]] = {}  # key -> (partition, series states)
        self.series: dict[str, tuple[str, Series]] = {}  # "<area>|<kind>" -> (bundle key, series)
        self.alerts: list[dict[str, Any]] = []
        self.silent = 0

    def feed(self, partition: int) -> Feed:
        if partition not in self.feeds:
            state = self.data.get(f"partition|{partition}")
            self.feeds[partition] = Feed.from_state(state) if state else Feed()
        return self.feeds[partition]

    def _entry(self, partition: int, bundle: str) -> dict[str, Any]:
        """The batch's copy of an entry (its series states and its positions)."""
        if bundle not in self.bundles:
            states = dict(self.data.get(bundle) or {})
            states[SRC] = dict(states.get(SRC) or self.feed(partition).src)
            self.bundles[bundle] = (partition, states)
        return self.bundles[bundle][1]

    def fresh(self, partition: int, bundle: str, src: list[int] | None) -> bool:
        """Record ``src`` in the entry; False when it has applied that position (a redelivery)."""
        if src is None:
            return True
        applied = self._entry(partition, bundle)[SRC]
        part, pos = str(src[0]), int(src[1])
        if pos <= applied.get(part, -1):
            return False
        applied[part] = pos
        return True

    def count(self, partition: int, bundle: str, area: str, res: int, kind: str, at: datetime,
              day: date, event_id: str) -> None:
        """One event of ``area`` (kept in entry ``bundle``); the feed has already seen ``day``."""
        key = f"{area}|{kind}"
        if key in self.series:
            s = self.series[key][1]
        else:
            state = self._entry(partition, bundle).get(key)
            s = Series.from_state(state) if state else Series()
            self.series[key] = (bundle, s)
        alert = observe(s, self.feeds[partition].coverage, self.config, area, kind, day, event_id)
        if alert is None:
            return
        if self.now - at > self.live:
            self.silent += 1  # a spike in a backfill: it starts the cooldown but pages nobody
            return
        self.alerts.append(alert_record(alert, res))

    def states(self) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """(partition, key, state) of every entry the batch changed."""
        for partition, feed in self.feeds.items():
            state = feed.to_state()
            if self.data.get(f"partition|{partition}", EMPTY_FEED) != state:  # not just redeliveries
                yield partition, f"partition|{partition}", state
        for key, (bundle, s) in self.series.items():
            s.prune(self.feeds[self.bundles[bundle][0]].coverage, self.config)
            self.bundles[bundle][1][key] = s.to_state()
        for bundle, (partition, states) in self.bundles.items():
            feed = self.feeds[partition]
            if feed.coverage.latest is not None:  # series with nothing left in the window go
                oldest = feed.coverage.oldest_week(self.config).isoformat()
                states = {k: v for k, v in states.items()
                          if k == SRC or max(v["a"] or "", max(v["w"], default="")) >= oldest}
            if states != self.data.get(bundle):  # not just redeliveries
                yield partition, bundle, states


EMPTY_FEED = Feed().to_state()


_EVENT_ID, _KIND, _OCCURRED, _PRECISION, _SRC = (accepted.AT[f] for f in (
    "event_id", "kind", "occurred_at", "time_precision", "src"))
_CELL = {res: accepted.AT[f"cell{res}"] for res in (6, 7, 8)}


def fold_cells(fold: Fold, batch: list[tuple[int, bytes]], locate: DistrictLocator | None,
               partitions: int) -> dict[int, list[bytes]]:
    """Count each accepted row in its res-7 and res-6 cells; return the rows re-keyed by
    district, by district partition. ``batch`` holds (partition, envelope) pairs."""
    by_district: dict[int, list[bytes]] = {}
    for partition, envelope in batch:
        feed = fold.feed(partition)
        for row, _ in accepted.decode(envelope):
            if row[_PRECISION] == "month":
                continue  # no day to count it on
            bundle = f"cell6|{to_str(row[_CELL[6]])}"
            if not fold.fresh(partition, bundle, row[_SRC]):
                continue  # a redelivery: counted, and re-keyed, before
            occurred, kind, event_id = row[_OCCURRED], row[_KIND], row[_EVENT_ID]
            at = datetime.fromisoformat(occurred)
            district = locate(row[_CELL[8]]) if locate else None
            if district is not None:
                record = {"district": district, "kind": kind, "occurred_at": occurred,
                          "event_id": event_id, "src": row[_SRC]}
                # As if keyed by the district's name (Kafka's default partitioner).
                by_district.setdefault(partition_of(district.encode(), partitions), []).append(
                    orjson.dumps(record))
            day = local_date(at)
            if not feed.coverage.see(day, fold.config):
                continue
            for res in CELL_RES:
                fold.count(partition, bundle, to_str(row[_CELL[res]]), res, kind, at, day, event_id)
    return by_district


def fold_districts(fold: Fold, batch: list[tuple[int, bytes]]) -> None:
    for partition, envelope in batch:
        feed = fold.feed(partition)
        for record in orjson.loads(envelope):
            bundle = f"district|{record['district']}"
            if not fold.fresh(partition, bundle, record.get("src")):
                continue
            at = datetime.fromisoformat(record["occurred_at"])
            day = local_date(at)
            if feed.coverage.see(day, fold.config):
                fold.count(partition, bundle, record["district"], 0, record["kind"], at, day,
                           record["event_id"])


def chunks(rows: list[bytes], size: int = PER_ENVELOPE) -> Iterator[bytes]:
    for i in range(0, len(rows), size):
        yield b"[" + b",".join(rows[i:i + size]) + b"]"


class OpenAlerts:
    """Series whose alert is open (raised in the current London week), for the gauge.

    Seeded from the tables on a worker's first batch, so a restart does not reset it.
    """

    def __init__(self) -> None:
        self.weeks: dict[str, tuple[str, date]] = {}  # series key -> (area type, week alerted)
        self.seeded: set[str] = set()

    def seed(self, name: str, data: Mapping[str, Any]) -> None:
        if name in self.seeded:
            return
        self.seeded.add(name)
        for key, bundle in list(data.items()):
            area_type = AREA_TYPES.get(str(key).split("|", 1)[0])
            if area_type is None or not isinstance(bundle, dict):
                continue  # a partition's feed
            for series, state in bundle.items():
                if series != SRC and state.get("a"):
                    self.weeks[f"{area_type}|{series}"] = (area_type, date.fromisoformat(state["a"]))

    def note(self, record: dict[str, Any]) -> None:
        key = f"{record['area_type']}|{record['area']}|{record['kind']}"
        start = date.fromisoformat(record["period_start"])  # a week's Monday or an EARS day
        self.weeks[key] = (record["area_type"], start - timedelta(days=start.weekday()))

    def count(self, area_type: str) -> int:
        this_week = week_start(datetime.now(UTC))
        return sum(1 for t, w in list(self.weeks.values()) if t == area_type and w == this_week)


def build_spikes_app(settings: WorkerSettings) -> faust.App:
    """The spike alerts app (``python -m streams spikes``, consumer group
    ``HOTSPOTS_APP_ID-spikes``): in the rollups app, its folds held up theirs in one event loop."""

    class Table(faust.Table):  # type: ignore[misc]
        """Changelogs keep the names they had in the rollups app (``HOTSPOTS_APP_ID-<table>-
        changelog``): an upgraded deployment recovers its spike state, and `hotspots wait`
        reads the spikes' progress, where they were."""

        def _changelog_topic_name(self) -> str:
            return f"{settings.app_id}-{self.name}-changelog"

    app = new_app(settings, settings.spikes_app_id, Table=Table)
    add_spike_alerts(app, settings)
    return app


def add_spike_alerts(app: faust.App, settings: WorkerSettings) -> None:
    """Register the spike agents, their tables and topics on ``app``."""
    n = settings.partitions
    accepted = app.topic(settings.accepted_topic, key_serializer="raw", value_serializer="raw",
                         partitions=n)
    by_district = app.topic(settings.district_events_topic, key_serializer="raw",
                            value_serializer="raw", partitions=n)
    alerts = app.topic(settings.alerts_topic, key_serializer="raw", value_serializer="raw",
                       partitions=1)
    tables = {"cell": app.Table("spikes", default=None, partitions=n),
              "district": app.Table("district_spikes", default=None, partitions=n)}
    # faust drops (and acks) records during rebalances here too: the same guard as aggregate's.
    sources = {area: SourceProgress(app, app.Table(SOURCES[agent][1], default=None, partitions=n),
                                    source_topic(settings, agent), settings)
               for area, agent in (("cell", "spikes"), ("district", "district_spikes"))}

    async def forget(*_args: Any, **_kwargs: Any) -> None:
        for source in sources.values():
            source.forget()

    app.on_partitions_revoked.connect(forget)
    app.on_partitions_assigned.connect(forget)
    live = timedelta(days=settings.spike_live_days)
    locate = _locator(settings)
    opened = OpenAlerts()
    for area_type in tables:
        OPEN_ALERTS.labels(area_type).set_function(partial(opened.count, area_type))

    async def send(topic: Any, key: bytes | None, value: bytes, partition: int | None = None) -> Any:
        """Straight to the Kafka client (force: not attached to the event, not behind faust's
        buffer, where a burst's rollup changelogs queue): the delivery future, to await."""
        return await topic.send(key=key, value=value, partition=partition, force=True)

    async def write(fold: Fold, table: Any, source: SourceProgress,
                    rekeyed: dict[int, list[bytes]]) -> None:
        """Outputs first, then the table's changelog, then the source's progress: an alert is
        never lost, at worst re-raised."""
        for record in fold.alerts:
            log.info("spike alert %s: %s %s %s %s %s observed %d expected %.2f p %.2g",
                     record["alert_id"], record["area_type"], record["area"], record["kind"],
                     record["period"], record["period_start"], record["observed"],
                     record["expected"], record["p_value"])
            ALERTS.labels(record["kind"], record["method"], record["area_type"]).inc()
            opened.note(record)
        if fold.silent:
            SPIKES_SILENT.labels(fold.config.area_type).inc(fold.silent)
        try:
            outputs = [await send(alerts, r["alert_id"].encode(), orjson.dumps(r)) for r in fold.alerts]
            outputs += [await send(by_district, None, envelope, partition)
                        for partition, rows in rekeyed.items() for envelope in chunks(rows)]
            await asyncio.gather(*outputs)
            changelog = []
            for partition, key, state in fold.states():
                table.data[key] = state
                changelog.append(table.send_changelog(partition, key, state))
            await asyncio.gather(*changelog)
            await asyncio.gather(*source.mark())  # last: what it covers has landed
        except Exception:
            log.critical("a spike write was not acknowledged; exiting", exc_info=True)
            os._exit(70)

    @app.agent(accepted, name="spikes")
    async def spikes(stream: Any) -> None:
        source = sources["cell"]
        async for batch in stream.take_events(settings.fold_batch, within=settings.fold_within):
            opened.seed("cell", tables["cell"].data)
            fold = Fold(tables["cell"].data, CELLS, live, datetime.now(UTC))
            rekeyed = fold_cells(fold, _envelopes(batch, source), locate, n)
            await write(fold, tables["cell"], source, rekeyed)
            await source.seek_holes()

    @app.agent(by_district, name="district_spikes")
    async def district_spikes(stream: Any) -> None:
        source = sources["district"]
        async for batch in stream.take_events(settings.fold_batch, within=settings.fold_within):
            opened.seed("district", tables["district"].data)
            fold = Fold(tables["district"].data, DISTRICTS, live, datetime.now(UTC))
            fold_districts(fold, _envelopes(batch, source))
            await write(fold, tables["district"], source, {})
            await source.seek_holes()


def _envelopes(batch: list[Any], source: SourceProgress) -> list[tuple[int, bytes]]:
    """(partition, envelope) of the records the source's guard admits (none past a hole)."""
    return [(e.message.partition, e.value if isinstance(e.value, bytes) else bytes(e.value))
            for e in batch if source.admit(e.message)]


def _locator(settings: WorkerSettings) -> DistrictLocator | None:
    """District outlines from HOTSPOTS_BOUNDARIES; without them, no district detection."""
    if settings.boundaries is None:
        return None
    try:
        return DistrictLocator.from_file(settings.boundaries)
    except ValueError as exc:  # the worker's rollups must not stop for a bad outlines file
        log.error("district spike detection off: %s", exc)
        return None
