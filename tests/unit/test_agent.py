"""The Faust agent, driven through faust's test_context() with no broker.

Topic sends (outputs and table changelogs) are captured instead of produced. The agent folds
batches (take_events): a scenario's puts land in one batch, closed by a sentinel, and the
test waits past the batch window before it looks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any

import faust
import orjson
import pytest
from aiokafka.client import AIOKafkaClient
from faust.topics import Topic

from hotspots import accepted, kafka_metadata
from hotspots.contract import BULK_CONTENT_TYPE, Arrest, Seizure, content_digest, encode_event
from hotspots.geo import cell_of, partition_key, partition_of
from hotspots.settings import WorkerSettings
from streams.app import build_app
from streams.rollup import INDEX_BITS, MAX_PER_RECORD, position

SENTINEL = b"end of scenario"
ARREST = Arrest(event_id="a-1", occurred_at=datetime(2023, 7, 1, 12, tzinfo=UTC),
                lat=51.7356, lon=0.4685, force="essex", charged=True)
ARREST_2 = ARREST.model_copy(update={"event_id": "a-2", "charged": False})
SEIZURE = Seizure(event_id="s-1", occurred_at=datetime(2023, 7, 2, 9, tzinfo=UTC),
                  lat=51.7356, lon=0.4685, force="essex", drugs_grams=2.5, drug_class="B")
WEEK8 = f"week|8|{cell_of(ARREST.lat, ARREST.lon)}|2023-06-26|arrest"


class Sent:
    """Every send the worker made: (topic, key, value, partition)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, Any, Any, int | None]] = []

    def to(self, suffix: str) -> list[tuple[Any, Any, int | None]]:
        return [(k, v, p) for t, k, v, p in self.records if t.endswith(suffix)]

    def dead(self) -> list[str]:
        return [orjson.loads(v)["reason"] for _, v, _ in self.to(".deadletter.v1")
                if orjson.loads(v)["raw"] != SENTINEL.decode()]


@pytest.fixture
def sent(monkeypatch) -> Sent:
    sent = Sent()

    def record(topic: Any, kw: dict[str, Any]) -> None:
        sent.records.append((topic.get_topic_name(), kw.get("key"), kw.get("value"),
                             kw.get("partition")))

    async def send(self: Any, **kw: Any) -> None:
        record(self, kw)

    def send_soon(self: Any, **kw: Any) -> asyncio.Future:
        """A delivered write: an already-resolved future (the agent awaits them), with the
        ``.message.partition`` that tables read."""
        record(self, kw)
        fut = _Delivered(loop=asyncio.get_running_loop())
        fut.message = SimpleNamespace(partition=kw.get("partition"))
        fut.set_result(None)
        return fut

    monkeypatch.setattr(Topic, "send", send)
    monkeypatch.setattr(Topic, "send_soon", send_soon)
    return sent


class _Delivered(asyncio.Future):
    message: Any


Scenario = Callable[[Any], Awaitable[None]]


def run(tmp_path, partitions: int, scenario: Scenario, **options: Any) -> faust.App:
    """Build the worker app and run ``scenario(agent_ctx)`` inside the agent's test context."""
    settings = WorkerSettings(data_dir=tmp_path, partitions=partitions, fold_within=0.3, **options)
    app = build_app(settings)

    async def main() -> None:
        async with app.agents["aggregate"].test_context() as agent:
            await scenario(agent)
            await agent.put(SENTINEL, key=b"sentinel")
            await asyncio.sleep(settings.fold_within * 3)

    asyncio.run(asyncio.wait_for(main(), timeout=30))
    return app


async def put(agent: Any, event: Any, partition: int = 0) -> None:
    await agent.put(encode_event(event), key=partition_key(event.lat, event.lon),
                    partition=partition)


def accepted_ids(sent: Sent) -> list[str]:
    """Event ids of the accepted envelopes, in order."""
    return [row["event_id"] for _, v, _ in sent.to(".accepted.v1") for row in accepted.rows(v)]


def table(app: faust.App, name: str) -> dict[str, Any]:
    return dict(app.tables[name].items())


def states(app: faust.App) -> dict[str, list[int]]:
    """The rollups table's groups flattened: key name -> [seq, *measures]."""
    return {name: state for group in table(app, "rollups").values()
            for name, state in group["k"].items()}


def published(sent: Sent) -> list[tuple[list[Any], int | None]]:
    """Rows of the rollups topic's envelopes, with the partition each went to."""
    return [(row, p) for _, v, p in sent.to(".rollups.v2") for row in orjson.loads(v)]


def seen_ids(app: faust.App) -> dict[str, list[Any]]:
    """The seen table's per-fold records flattened: event_id -> [partition, offset, digest]."""
    out = {}
    for key, ids in table(app, "seen").items():
        _, partition, _ = key.split("|")
        for event_id, (pos, digest) in ids.items():
            assert pos & (MAX_PER_RECORD - 1) == 0  # single records: index 0
            out[event_id] = [int(partition), pos >> INDEX_BITS, digest]
    return out


def test_valid_events_are_rolled_up_and_invalid_refused(tmp_path, sent):
    async def scenario(agent):
        await put(agent, ARREST)  # offset 0
        await put(agent, ARREST_2)  # offset 1
        await agent.put(b'{"kind": "arrest", "date_of_birth": "1990-01-01"}', key=b"k")  # 2
        await put(agent, SEIZURE)  # offset 3

    app = run(tmp_path, 1, scenario)
    rollups = states(app)
    assert rollups[WEEK8] == [2, 2, 1, 0, 0, 0, 0, 0, 0]  # seq, then count, charged, ...
    # Both arrests share all seven keys (same cell, same day); the seizure has its own seven.
    assert sorted(k.split("|")[0] for k in rollups) == ["day"] * 2 + ["month"] * 6 + ["week"] * 6
    assert all(s[1] == (2 if k.endswith("arrest") else 1) for k, s in rollups.items())
    seizure_day = f"day|6|{cell_of(SEIZURE.lat, SEIZURE.lon, 6)}|2023-07-02|seizure"
    assert rollups[seizure_day][5] == 2500  # drugs_mg
    # ...in two groups: the cell's July, and its June (the week of 26 June), each with the
    # last position it applied.
    groups = table(app, "rollups")
    cell6 = cell_of(ARREST.lat, ARREST.lon, 6)
    assert groups.keys() == {f"{cell6}|2023-07", f"{cell6}|2023-06"}
    assert all(g["off"] == {"0": position(3)} for g in groups.values())
    assert all(k.startswith("week") for k in groups[f"{cell6}|2023-06"]["k"])
    assert seen_ids(app) == {"a-1": [0, 0, content_digest(ARREST)],
                             "a-2": [0, 1, content_digest(ARREST_2)],
                             "s-1": [0, 3, content_digest(SEIZURE)]}
    assert list(table(app, "seen")) == ["fold|0|0"]  # one record per fold and partition
    assert sent.dead() == ["personal_data"]
    assert accepted_ids(sent) == ["a-1", "a-2", "s-1"]
    # The table's changelog: one record per changed group per fold, on the source partition.
    assert sorted(k for k, _, p in sent.to("rollups-changelog")) == sorted(groups)
    # The rollups topic: one envelope with the full state of every changed key.
    assert len(sent.to(".rollups.v2")) == 1
    rows = published(sent)
    assert len(rows) == 2 * 7 and {p for _, p in rows} == {0}
    assert {r[0]: r[1:] for r, _ in rows} == rollups


def test_with_a_cutover_the_periods_before_it_are_accepted_but_not_folded(tmp_path, sent):
    async def scenario(agent):
        await put(agent, ARREST)  # Saturday 1 July 2023: its week began on 26 June
        await put(agent, SEIZURE)  # Sunday 2 July

    # From 1 July: July and its days are live; the week of 26 June is the backfill's (the
    # first live week starts on Monday 3 July).
    app = run(tmp_path, 1, scenario, cutover=date(2023, 7, 1))
    assert sorted(k.split("|")[0] + "|" + k.split("|")[3] for k in states(app)) == [
        "day|2023-07-01", "day|2023-07-02", *["month|2023-07-01"] * 6]
    assert {r[0] for r, _ in published(sent)} == set(states(app))
    # Both are still accepted: the raw table holds them for the backfill's build.
    assert accepted_ids(sent) == ["a-1", "s-1"]
    assert sent.dead() == []


def test_resent_event_is_counted_once(tmp_path, sent):
    conflicting = ARREST.model_copy(update={"charged": False})

    async def scenario(agent):
        await put(agent, ARREST)  # offset 0: counted
        await put(agent, ARREST)  # offset 1: a producer retry, same content
        await put(agent, conflicting)  # offset 2: same id, other content
        agent.sent_offset = 0
        await put(agent, ARREST)  # offset 0 again: a redelivery after a crash

    app = run(tmp_path, 1, scenario)
    rollups = states(app)
    assert len(rollups) == 7  # 3 monthly, 3 weekly, 1 daily
    assert all(s == [1, 1, 1, 0, 0, 0, 0, 0, 0] for s in rollups.values())
    assert all(g["off"] == {"0": position(0)} for g in table(app, "rollups").values())
    assert seen_ids(app) == {"a-1": [0, 0, content_digest(ARREST)]}
    assert sent.dead() == ["duplicate_conflict"]
    assert accepted_ids(sent) == ["a-1", "a-1"]  # the first delivery and the redelivery
    # One fold: each key's state sent once, each of its two groups written once.
    assert sorted(r[1] for r, _ in published(sent)) == [1] * 7
    assert len(sent.to("rollups-changelog")) == 2


def test_a_redelivery_in_a_later_fold_sends_the_states_again_but_writes_no_group(tmp_path, sent):
    """The crash that causes a redelivery may come after a fold's group records were written
    but before its rollups envelope was: the redelivered events' keys are sent again."""
    async def scenario(agent):
        await put(agent, ARREST)  # offset 0
        await put(agent, ARREST_2)  # offset 1
        await asyncio.sleep(0.9)  # the fold ends
        sent.records.clear()
        agent.sent_offset = 0
        await put(agent, ARREST)  # the redelivery of both
        await put(agent, ARREST_2)

    app = run(tmp_path, 1, scenario)
    assert states(app)[WEEK8] == [2, 2, 1, 0, 0, 0, 0, 0, 0]
    assert sent.to("rollups-changelog") == []  # nothing changed
    rows = published(sent)
    assert len(rows) == 7 and {r[0]: r[1:] for r, _ in rows} == states(app)


def test_event_on_the_wrong_partition_is_forwarded_home(tmp_path, sent):
    key = partition_key(ARREST.lat, ARREST.lon)
    home = partition_of(key, 4)
    away = (home + 1) % 4

    async def scenario(agent):
        await put(agent, ARREST, partition=away)
        await put(agent, ARREST_2, partition=home)

    app = run(tmp_path, 4, scenario)
    assert sent.to(".events.v1") == [(key, encode_event(ARREST), home)]
    assert seen_ids(app) == {"a-2": [home, 1, content_digest(ARREST_2)]}
    assert states(app)[WEEK8] == [1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert all(g["off"] == {str(home): position(1)} for g in table(app, "rollups").values())
    assert {p for _, p in published(sent)} == {home}


BULK_HEADERS = {"content-type": BULK_CONTENT_TYPE.encode()}


async def put_bulk(agent: Any, lines: list[bytes], partition: int = 0) -> None:
    await agent.put(b"\n".join(lines), key=b"bulk", partition=partition, headers=BULK_HEADERS)


def test_a_bulk_record_is_folded_event_by_event_and_only_once(tmp_path, sent):
    third = ARREST.model_copy(update={"event_id": "a-3"})

    async def scenario(agent):
        lines = [encode_event(ARREST), b'{"kind": "arrest"}', encode_event(ARREST_2), b""]
        await put_bulk(agent, lines)  # offset 0: two events, one refusal, a trailing newline
        agent.sent_offset = 0
        await put_bulk(agent, lines)  # offset 0 again: the redelivery of a crashed batch
        await put(agent, ARREST)  # offset 1: the first event re-sent on its own
        await put_bulk(agent, [encode_event(third)])  # offset 2

    app = run(tmp_path, 1, scenario)
    assert states(app)[WEEK8] == [3, 3, 2, 0, 0, 0, 0, 0, 0]
    assert all(g["off"] == {"0": position(2, 0)} for g in table(app, "rollups").values())
    seen = {k: v for ids in table(app, "seen").values() for k, v in ids.items()}
    assert seen == {"a-1": [position(0, 0), content_digest(ARREST)],
                    "a-2": [position(0, 2), content_digest(ARREST_2)],
                    "a-3": [position(2, 0), content_digest(third)]}
    assert sent.dead() == ["missing_field"] * 2  # the bad line, in each delivery of its record
    where = [orjson.loads(v)["source"] for _, v, _ in sent.to(".deadletter.v1")
             if orjson.loads(v)["raw"] != SENTINEL.decode()]
    assert where[0].endswith("[0]@0#1")
    rows = [row for _, v, _ in sent.to(".accepted.v1") for row in accepted.rows(v)]
    assert [(r["event_id"], r["src"]) for r in rows] == [
        ("a-1", [0, position(0, 0)]), ("a-2", [0, position(0, 2)]),
        ("a-1", [0, position(0, 0)]), ("a-2", [0, position(0, 2)]),  # redelivered: same src
        ("a-3", [0, position(2, 0)])]


def test_a_bulk_record_with_too_many_lines_is_refused_whole(tmp_path, sent):
    async def scenario(agent):
        await put_bulk(agent, [b"{}"] * (MAX_PER_RECORD + 1))

    run(tmp_path, 1, scenario)
    assert sent.dead() == ["bulk_too_large"]


def test_seen_ids_are_recovered_from_the_table_after_a_restart(tmp_path, sent):
    """A fresh worker whose seen table holds records of earlier folds (and one written per
    event, as before folds) drops those events when they are sent again."""
    settings = WorkerSettings(data_dir=tmp_path, partitions=1, fold_within=0.3)
    app = build_app(settings)
    seen = app.tables["seen"]
    seen.data["fold|0|0"] = {"a-1": [position(0), content_digest(ARREST)]}
    seen.data["a-2"] = [0, 1, content_digest(ARREST_2)]  # the per-event form

    async def main() -> None:
        async with app.agents["aggregate"].test_context() as agent:
            agent.sent_offset = 5
            await put(agent, ARREST)
            await put(agent, ARREST_2)
            await put(agent, SEIZURE)
            await agent.put(SENTINEL, key=b"sentinel")
            await asyncio.sleep(settings.fold_within * 3)

    asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert accepted_ids(sent) == ["s-1"]


def test_the_seen_record_of_a_large_fold_is_split_below_kafkas_message_limit(tmp_path, sent,
                                                                             monkeypatch):
    import streams.app

    monkeypatch.setattr(streams.app, "SEEN_PER_RECORD", 2)
    events = [ARREST.model_copy(update={"event_id": f"a-{i}"}) for i in range(5)]

    async def scenario(agent):
        await put_bulk(agent, [encode_event(e) for e in events])  # offset 0: five new ids

    app = run(tmp_path, 1, scenario)
    records = table(app, "seen")
    assert sorted(len(ids) for ids in records.values()) == [1, 2, 2]
    assert sorted(records) == sorted(f"fold|0|{position(0, i)}" for i in (0, 2, 4))
    assert {k for ids in records.values() for k in ids} == {e.event_id for e in events}


def test_a_full_seen_record_with_the_longest_ids_stays_far_below_1_mb():
    from streams.app import SEEN_PER_RECORD, seen_pieces

    ids = {f"{i:0128d}": [position(10**9, i % MAX_PER_RECORD), "f" * 24]
           for i in range(3 * SEEN_PER_RECORD + 1)}
    pieces = list(seen_pieces(ids))
    assert [len(p) for p in pieces] == [SEEN_PER_RECORD] * 3 + [1]
    assert max(len(orjson.dumps(p)) for p in pieces) < 512 * 1024
    assert [k for p in pieces for k in p] == list(ids)  # position order kept


def test_the_worker_tracks_every_topic_its_producer_sends_to(tmp_path):
    # hotspots/kafka_metadata.py: without it, a send to a new topic can strand the others.
    kafka_metadata.as_released()
    build_app(WorkerSettings(data_dir=tmp_path))
    assert AIOKafkaClient._wait_on_metadata is kafka_metadata._wait_on_metadata
