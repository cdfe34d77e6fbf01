"""A seeded replay of valid events, its ground truth, and an at-least-once producer.

The replay is generated in chunks, each from its own seed, so that a chunk the broker did
not acknowledge can be sent again unchanged. Ground truth is computed here with h3 and
zoneinfo only, independently of the pipeline's own cells, periods and measures.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import h3
from kafka.errors import KafkaError

from hotspots.contract import (
    Arrest,
    CourtOutcome,
    Event,
    GangInjunction,
    RecordedCrime,
    Safeguarding,
    Seizure,
    StopSearch,
    Warrant,
)
from hotspots.settings import ProducerSettings
from hotspots.stack import StackConfig
from producers.publisher import EventPublisher, PublishError

LONDON = ZoneInfo("Europe/London")
CHUNK = 2000
DUPLICATE_RATE = 0.01  # events sent twice with the same id and content, as a retrying producer does
# Real Essex town centres; events scatter about half a kilometre around them (a few hundred
# res-8 cells in all, so that a large replay folds into a bounded number of rollup keys).
CENTRES = [(51.7356, 0.4685), (51.8959, 0.8919), (51.5761, 0.4886), (51.5459, 0.7077),
           (51.7727, 0.1023), (51.4755, 0.3271), (51.6870, -0.0040), (51.8787, 0.5528),
           (51.7898, 1.1550), (51.6215, 0.3050), (51.9400, 1.2850), (51.8000, 0.6400)]
MEASURES = ("count", "charged", "executed", "weapons", "drugs_mg", "cash_pence", "sentence_months",
            "people")
# (period, res, cell, period_start, kind): the same key as a stored rollup row.
Key = tuple[str, int, str, str, str]


@dataclass(frozen=True)
class Replay:
    """``events`` unique events over ``years``, in chunks of CHUNK, plus re-sent duplicates."""

    events: int
    seed: int
    tag: str
    years: tuple[int, int]

    @property
    def chunks(self) -> int:
        return -(-self.events // CHUNK)

    @property
    def span(self) -> tuple[date, date]:
        """London dates every rollup of the replay starts within (weeks may start in December)."""
        return date(self.years[0] - 1, 12, 25), date(self.years[1], 12, 31)

    def chunk(self, k: int) -> list[Event]:
        """Chunk ``k`` as sent: its new events, with some of them sent a second time."""
        rng = random.Random(f"{self.seed}:{self.tag}:{k}")
        size = min(CHUNK, self.events - k * CHUNK)
        fresh = [self._event(rng, f"{self.tag}-{k:05d}-{i:04d}") for i in range(size)]
        sent = list(fresh)
        for ev in rng.sample(fresh, int(size * DUPLICATE_RATE)):
            sent.insert(rng.randrange(len(sent) + 1), ev)
        return sent

    def unique(self, k: int) -> Iterator[Event]:
        seen: set[str] = set()
        for ev in self.chunk(k):
            if ev.event_id not in seen:
                seen.add(ev.event_id)
                yield ev

    def _event(self, rng: random.Random, event_id: str) -> Event:
        lat0, lon0 = rng.choice(CENTRES)
        first = datetime(self.years[0], 1, 1, tzinfo=LONDON)
        seconds = int((datetime(self.years[1] + 1, 1, 1, tzinfo=LONDON) - first).total_seconds())
        when = (first + timedelta(seconds=rng.randrange(seconds))).astimezone(UTC)
        common = {"event_id": event_id, "force": "essex",
                  "lat": round(lat0 + rng.gauss(0, 0.005), 6), "lon": round(lon0 + rng.gauss(0, 0.008), 6)}
        roll = rng.random()
        if roll < 0.07:  # police.uk street crime: the month is all that is known
            local = when.astimezone(LONDON)
            month = datetime(local.year, local.month, 1, tzinfo=LONDON)
            return RecordedCrime(**common, occurred_at=month, time_precision="month",
                                 crime_type=rng.choice(["Drugs", "Possession of weapons", "Robbery"]))
        if roll < 0.12:  # the day is known, not the time: London midnight
            local = when.astimezone(LONDON)
            common.update(occurred_at=datetime(local.year, local.month, local.day, tzinfo=LONDON),
                          time_precision="day")
        else:
            common["occurred_at"] = when
        kind = rng.choice(["arrest", "seizure", "warrant", "safeguarding", "court_outcome", "stop_search",
                           "gang_injunction"])
        if kind == "arrest":
            return Arrest(**common, charged=rng.choice([True, False, None]))
        if kind == "seizure":
            return Seizure(**common, drugs_grams=rng.randrange(0, 50000) / 10, drug_class="A",
                           weapons_count=rng.randrange(0, 3), cash_gbp=rng.randrange(0, 900000) / 100)
        if kind == "warrant":
            executed = rng.random() < 0.9
            return Warrant(**common, executed=executed, outcome="drugs_found" if executed else "not_executed")
        if kind == "safeguarding":
            return Safeguarding(**common, people=rng.randrange(1, 4), category="county_lines")
        if kind == "court_outcome":
            return CourtOutcome(**common, sentence_months=rng.randrange(0, 120), disposal="custody")
        if kind == "stop_search":
            return StopSearch(**common, outcome="A no further action disposal")
        return GangInjunction(**common, people=rng.randrange(1, 6))


def measures(ev: Event) -> tuple[int, ...]:
    """The event's contribution to each of MEASURES, from its fields."""
    m = dict.fromkeys(MEASURES, 0)
    m["count"] = 1
    if isinstance(ev, Arrest):
        m["charged"] = int(ev.charged is True)
    elif isinstance(ev, Warrant):
        m["executed"] = int(ev.executed)
    elif isinstance(ev, Seizure):
        m["weapons"] = ev.weapons_count
        m["drugs_mg"] = round(ev.drugs_grams * 1000)
        m["cash_pence"] = round(ev.cash_gbp * 100)
    elif isinstance(ev, CourtOutcome):
        m["sentence_months"] = ev.sentence_months
    elif isinstance(ev, (Safeguarding, GangInjunction)):
        m["people"] = ev.people
    return tuple(m[name] for name in MEASURES)


def keys(ev: Event) -> list[Key]:
    """Monthly keys at res 8, 7 and 6; weekly ones too and a daily res-6 one when the day is known."""
    cell8 = h3.latlng_to_cell(ev.lat, ev.lon, 8)
    cells = {8: cell8, 7: h3.cell_to_parent(cell8, 7), 6: h3.cell_to_parent(cell8, 6)}
    day = ev.occurred_at.astimezone(LONDON).date()
    out: list[Key] = [("month", r, cells[r], day.replace(day=1).isoformat(), ev.kind) for r in cells]
    if ev.time_precision != "month":
        monday = (day - timedelta(days=day.weekday())).isoformat()
        out += [("week", r, cells[r], monday, ev.kind) for r in cells]
        out.append(("day", 6, cells[6], day.isoformat(), ev.kind))
    return out


@dataclass
class Truth:
    rollups: dict[Key, list[int]] = field(default_factory=dict)
    event_ids: set[str] = field(default_factory=set)

    def add(self, ev: Event) -> None:
        if ev.event_id in self.event_ids:
            return
        self.event_ids.add(ev.event_id)
        delta = measures(ev)
        for key in keys(ev):
            sums = self.rollups.setdefault(key, [0] * len(MEASURES))
            for i, value in enumerate(delta):
                sums[i] += value

    @classmethod
    def of(cls, events: list[Event]) -> Truth:
        truth = cls()
        for ev in events:
            truth.add(ev)
        return truth


class AtLeastOnceProducer:
    """The product's publisher, used as a real producer must be: a chunk the broker did not
    acknowledge in full (a send that timed out, a broker that died) is sent again whole.
    The worker drops the re-sent copies by event_id."""

    def __init__(self, config: StackConfig, source: str, rate: float | None = None) -> None:
        self.settings = ProducerSettings(bootstrap=config.bootstrap, topic_prefix=config.topic_prefix)
        self.source = source
        self.rate = rate
        self.publisher: EventPublisher | None = None
        self.sent = 0  # events acknowledged by the broker, counting each chunk once
        self.resends = 0  # chunks sent again after a failure
        self.errors: list[str] = []
        self.started = time.monotonic()
        self.stop = threading.Event()

    def send(self, events: list[Event]) -> None:
        while not self.stop.is_set():
            try:
                if self.publisher is None:
                    self.publisher = EventPublisher(self.settings, self.source)
                self.publisher.send_all(events)
                break
            except (PublishError, KafkaError) as exc:
                # EventPublisher's failures are sticky: drop it and start afresh.
                self.errors.append(str(exc)[:200])
                self.resends += 1
                self._drop()
                time.sleep(1.0)
        self.sent += len(events)
        if self.rate:
            ahead = self.sent / self.rate - (time.monotonic() - self.started)
            if ahead > 0:
                self.stop.wait(ahead)

    def _drop(self) -> None:
        if self.publisher is not None:
            # Closing a producer whose broker is gone may fail; it is discarded either way.
            with contextlib.suppress(Exception):
                self.publisher.producer.close(timeout=1)
            self.publisher = None

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.close()
            self.publisher = None


def produce(replay: Replay, producer: AtLeastOnceProducer, truth: Truth) -> None:
    """Send every chunk (at least once) and fold its unique events into the truth."""
    for k in range(replay.chunks):
        if producer.stop.is_set():
            return
        chunk = replay.chunk(k)
        for ev in chunk:
            truth.add(ev)
        producer.send(chunk)
