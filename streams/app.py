"""The Faust worker: validate events, route them by cell, fold them into weekly and daily rollups.

Topology (topics are prefixed by HOTSPOTS_TOPIC_PREFIX):

    events.v1 --aggregate--> rollups.v2    envelopes of the full states of the rollup keys
                        |                  each fold changed (the sink's rollups table)
                        \\--> accepted.v1   validated events with their cells (raw table)
                        \\--> deadletter.v1 refused records, with a reason

Changelogged tables make redelivery harmless: ``rollups`` keeps groups of key states
(streams/rollup.py), each with the last source position it applied; ``seen`` keeps where
each event_id was first seen, so the same event sent twice (a producer retry, a replayed
file) is counted once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import faust
import orjson

from hotspots import accepted as accepted_topic
from hotspots.caughtup import SOURCES
from hotspots.contract import (
    BULK_CONTENT_TYPE,
    ROWS_PER_ENVELOPE,
    InvalidEvent,
    content_digest,
    dead_letter,
    where,
)
from hotspots.geo import PARTITION_RES, cells_of, partition_of, to_str
from hotspots.heap import Heap
from hotspots.metrics import BATCH_SIZE, EVENTS_IN, EVENTS_OUT, INVALID, UNKNOWN_KIND, add_counts, observe_lag
from hotspots.settings import WorkerSettings
from streams.faust_app import new_app
from streams.progress import SourceProgress
from streams.rollup import INDEX_BITS, MAX_PER_RECORD, RollupFold, live_from, position

log = logging.getLogger(__name__)
ENVELOPE_BYTES = 256 * 1024
BULK = BULK_CONTENT_TYPE.encode()
SEEN_BATCH = "fold"  # key prefix of the seen table's per-fold records


# Ids per record of the seen table: at most 128 characters, a position and a 24-digit digest
# each, so a record stays far below Kafka's 1 MB limit. (One record per fold and partition
# reached 1.16 MB with 20,000 new ids and stopped the worker.)
SEEN_PER_RECORD = 2000


def seen_pieces(ids: dict[str, list[Any]]) -> Iterator[dict[str, list[Any]]]:
    """``ids`` (in position order) in records of at most SEEN_PER_RECORD ids."""
    if len(ids) <= SEEN_PER_RECORD:
        yield ids  # the usual case: no copy
        return
    items = list(ids.items())
    for i in range(0, len(items), SEEN_PER_RECORD):
        yield dict(items[i:i + SEEN_PER_RECORD])


def build_app(settings: WorkerSettings) -> faust.App:
    """The rollups app (``python -m streams worker``); the spike agents are an app of their
    own (streams.alerts.build_spikes_app)."""
    app = new_app(settings, settings.app_id)
    events = app.topic(settings.events_topic, key_serializer="raw", value_serializer="raw",
                       partitions=settings.partitions)
    accepted = app.topic(settings.accepted_topic, key_serializer="raw", value_serializer="raw",
                         partitions=settings.partitions)
    dlq = app.topic(settings.dlq_topic, key_serializer="raw", value_serializer="raw",
                    partitions=1)
    # Groups of rollup states (streams/rollup.py): one changelog record per group per fold.
    # The sink does not read this changelog: it gets the changed keys' states on the
    # rollups topic, a few envelopes per fold instead of a record per key.
    rollups = app.Table("rollups", default=None, partitions=settings.partitions)
    rollups_out = app.topic(settings.rollups_topic, key_serializer="raw", value_serializer="raw",
                            partitions=settings.partitions)
    seen = app.Table("seen", default=None, partitions=settings.partitions)
    # The next source offset to fold, per partition: faust can drop (and ack) a record during
    # a rebalance; streams/progress.py reads such a hole again instead of skipping it.
    progress = SourceProgress(app, app.Table(SOURCES["aggregate"][1], default=None,
                                             partitions=settings.partitions),
                              settings.events_topic, settings)

    admission = settings.admission()
    # With a cutover, periods before it are `hotspots backfill`'s: their events are still
    # accepted (the raw table, which the backfill's build reads) but not folded.
    since = live_from(settings.cutover)
    homes: dict[int, int] = {}  # res-6 cell -> the partition that owns it

    sent: list[Any] = []  # this batch's writes, awaited before its events are acked

    def refuse(raw: bytes, reason: str, detail: str, where: str) -> None:
        record = dead_letter(raw, reason, detail, where)
        sent.append(dlq.send_soon(key=reason.encode(), value=orjson.dumps(record)))

    # Where each event id was first accepted: {partition: {event_id: [partition, position,
    # digest]}}. The ``seen`` table stores one record per fold and partition (writing one per
    # event cost as much as all the rollups); this index is rebuilt from it after a rebalance,
    # by which time faust has recovered the table.
    seen_index: dict[int, dict[str, list[Any]]] = {}

    def seen_in(partition: int) -> dict[str, list[Any]]:
        index = seen_index.get(partition)
        if index is None:
            index = seen_index[partition] = {}
            prefix = f"{SEEN_BATCH}|{partition}|"
            for key, value in seen.data.items():
                if isinstance(value, dict):
                    if key.startswith(prefix):
                        for event_id, (pos, digest) in value.items():
                            index[event_id] = [partition, pos, digest]
                elif value[0] == partition:  # one event's record, as written before batches
                    index[key] = value
        return index

    async def forget_seen(*_args: Any, **_kwargs: Any) -> None:
        seen_index.clear()
        progress.forget()

    app.on_partitions_revoked.connect(forget_seen)
    app.on_partitions_assigned.connect(forget_seen)

    def fold(records: list[Any]) -> None:
        """Fold records (single events or bulk ones); write each changed group once, at the end.

        Every write's future lands in ``sent``; the agent awaits them all before take_events
        acks the records. faust's own pre-commit flush gives up after 0.1 s with messages still
        queued, so without this an offset could be committed ahead of its changelog writes.
        """
        # Groups are updated in place: a fold's writes are all acknowledged (so already
        # serialized) before the next fold, and a failed one ends the process.
        folding = RollupFold(rollups.data, since)
        new_seen: dict[int, dict[str, list[Any]]] = {}
        rows: dict[int, list[bytes]] = {}  # by source partition
        # Metrics: counted locally, added to the registry once per label per batch.
        kinds_in: Counter[str] = Counter()
        kinds_out: Counter[str] = Counter()
        invalid: Counter[str] = Counter()
        newest = 0.0
        now = datetime.now(UTC)  # the clock of the future_timestamp check, read once per fold
        for record in records:
            msg = record.message
            if not progress.admit(msg):
                continue  # past a hole in its partition: read again after the seek
            if msg.timestamp and msg.timestamp > newest:
                newest = msg.timestamp
            value: bytes = record.value if isinstance(record.value, bytes) else bytes(record.value)
            origin = f"{msg.topic}[{msg.partition}]@{msg.offset}"
            bulk = record.headers.get("content-type") == BULK
            lines = value.split(b"\n") if bulk else [value]
            if len(lines) > MAX_PER_RECORD:
                refuse(value, "bulk_too_large", f"{len(lines)} lines > {MAX_PER_RECORD}", origin)
                invalid["bulk_too_large"] += 1
                continue
            index_here = seen_in(msg.partition)
            for index, raw in enumerate(lines):
                if bulk and not raw.strip():
                    continue
                try:
                    ev = admission.admit(raw, now)
                except InvalidEvent as exc:
                    refuse(raw, exc.reason, exc.detail, where(origin, bulk, index))
                    kinds_in[UNKNOWN_KIND] += 1
                    invalid[exc.reason] += 1
                    continue
                kinds_in[ev.kind] += 1
                cells = cells_of(ev.lat, ev.lon)  # once per event: the key, the rollups, the row
                home = homes.get(cells[PARTITION_RES])
                if home is None:
                    home = homes[cells[PARTITION_RES]] = partition_of(
                        to_str(cells[PARTITION_RES]).encode(), settings.partitions)
                if msg.partition != home:
                    # Written by a producer that keyed it differently: send it to the partition
                    # that owns its cell. A duplicate made by a crash here is caught by ``seen``.
                    sent.append(events.send_soon(key=to_str(cells[PARTITION_RES]).encode(),
                                                 value=raw, partition=home))
                    continue
                pos = position(msg.offset, index)
                digest = content_digest(ev)
                first = index_here.get(ev.event_id)
                if first is not None and (first[0] != msg.partition or first[1] != pos):
                    if first[2] != digest:
                        refuse(raw, "duplicate_conflict", f"event_id {ev.event_id} first seen at "
                               f"offset {first[1] >> INDEX_BITS} with different content",
                               where(origin, bulk, index))
                        invalid["duplicate_conflict"] += 1
                    continue  # a redelivery of an event already counted
                if first is None:
                    index_here[ev.event_id] = [msg.partition, pos, digest]
                    new_seen.setdefault(msg.partition, {})[ev.event_id] = [pos, digest]
                rows.setdefault(msg.partition, []).append(
                    folding.add(ev, cells, msg.partition, pos, raw))
                kinds_out[ev.kind] += 1
        for partition, group_key, group in folding.changed_groups():
            sent.append(rollups.send_changelog(partition, group_key, group))
        for partition, key_rows in folding.state_rows().items():
            for i in range(0, len(key_rows), ROWS_PER_ENVELOPE):
                sent.append(rollups_out.send_soon(
                    key=None, value=orjson.dumps(key_rows[i:i + ROWS_PER_ENVELOPE]),
                    partition=partition))
        for partition, ids in new_seen.items():
            for piece in seen_pieces(ids):
                # Keyed by its first position: a re-run of the same records rewrites the same
                # records (and an id in two records of different runs has one value anyway).
                key = f"{SEEN_BATCH}|{partition}|{min(pos for pos, _ in piece.values())}"
                seen.data[key] = piece
                sent.append(seen.send_changelog(partition, key, piece))
        # Envelopes of accepted events: the raw table's feed, deduplicated there by event.
        # Each stays well under Kafka's 1 MB message limit, whatever the batch size. They go
        # to the source's partition number, so a consumer of the accepted topic sees each
        # area's events in order (spike detection relies on it).
        for partition, part_rows in rows.items():
            for envelope in accepted_topic.envelopes(part_rows, ENVELOPE_BYTES):
                sent.append(accepted.send_soon(key=None, value=envelope, partition=partition))
        add_counts(EVENTS_IN, "worker", kinds_in)
        add_counts(EVENTS_OUT, "worker", kinds_out)
        add_counts(INVALID, "worker", invalid)
        BATCH_SIZE.labels("worker").observe(sum(kinds_in.values()))
        observe_lag("worker", newest)

    def chunks(records: list[Any]) -> Iterator[list[Any]]:
        """Slices of about ``fold_events`` events: a slice's writes are awaited before the
        next is folded, bounding memory and keeping the event loop (heartbeats) responsive."""
        chunk: list[Any] = []
        size = 0
        for record in records:
            chunk.append(record)
            size += (record.value.count(b"\n") + 1
                     if record.headers.get("content-type") == BULK else 1)
            if size >= settings.fold_events:
                yield chunk
                chunk, size = [], 0
        if chunk:
            yield chunk

    async def landed() -> None:
        """Wait until the broker has acknowledged every write in ``sent``."""
        try:
            await asyncio.gather(*sent)
        except Exception:
            # A write the broker refused after its retries: stop, so that the batch
            # is read again from the last committed offset by the restarted worker.
            log.critical("a write was not acknowledged; exiting", exc_info=True)
            os._exit(70)
        sent.clear()

    heap = Heap()

    @app.agent(events, name="aggregate")
    async def aggregate(stream: Any) -> None:
        async for batch in stream.take_events(settings.fold_batch, within=settings.fold_within):
            for chunk in chunks(batch):
                fold(chunk)
                await landed()
                # Only now: a worker killed mid-fold leaves some writes on the broker and
                # not others, and a record below the stored progress counts as folded.
                sent.extend(progress.mark())
                await landed()
                await progress.seek_holes()
                heap.settle()  # the fold's new state out of the collector's sight

    return app
