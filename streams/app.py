"""The Faust worker: validate events, route them by cell, fold them into weekly and daily rollups.

Topology (topics are prefixed by HOTSPOTS_TOPIC_PREFIX):

    events.v1 --aggregate--> rollups.v1    full state of each changed rollup key (the
                        |                  changelog of the ``rollups`` table)
                        \\--> accepted.v1   validated events with their cells (raw table)
                        \\--> deadletter.v1 refused records, with a reason

Two changelogged tables make redelivery harmless: ``rollups`` keeps, per key, the last
source offset it applied; ``seen`` keeps where each event_id was first seen, so the
same event sent twice (a producer retry, a replayed file) is counted once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import faust
import orjson

from hotspots.contract import InvalidEvent, content_digest, dead_letter, measures_of
from hotspots.geo import PARTITION_RES, cells_of, partition_of, to_str
from hotspots.metrics import BATCH_SIZE, EVENTS_IN, EVENTS_OUT, INVALID, UNKNOWN_KIND, add_counts, observe_lag
from hotspots.settings import WorkerSettings
from streams.rollup import accepted_row, apply, position, rollup_keys

log = logging.getLogger(__name__)
ENVELOPE_BYTES = 256 * 1024


def envelopes(rows: list[bytes], limit: int) -> Iterator[bytes]:
    """JSON arrays of the encoded rows, each at most ``limit`` bytes (or one oversized row)."""
    chunk: list[bytes] = []
    size = 2
    for row in rows:
        if chunk and size + len(row) + 1 > limit:
            yield b"[" + b",".join(chunk) + b"]"
            chunk, size = [], 2
        chunk.append(row)
        size += len(row) + 1
    if chunk:
        yield b"[" + b",".join(chunk) + b"]"


def build_app(settings: WorkerSettings) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        store="memory://",
        datadir=str(settings.data_dir / "worker"),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        web_enabled=False,
        broker_commit_interval=settings.commit_interval,
        producer_acks=-1,
        # Without linger every changelog write is its own produce request: ~10x slower.
        producer_linger=settings.linger_ms / 1000,
        producer_max_batch_size=1 << 20,
        consumer_auto_offset_reset="earliest",
    )
    events = app.topic(settings.events_topic, key_serializer="raw", value_serializer="raw",
                       partitions=settings.partitions)
    accepted = app.topic(settings.accepted_topic, key_serializer="raw", value_serializer="raw",
                         partitions=settings.partitions)
    dlq = app.topic(settings.dlq_topic, key_serializer="raw", value_serializer="raw",
                    partitions=1)
    # The rollups table's changelog *is* the aggregates topic: each record is a key's full
    # state, written once per change, flushed by faust before the source offset is committed.
    rollups = app.Table("rollups", default=None, partitions=settings.partitions,
                        changelog_topic=app.topic(settings.rollups_topic,
                                                  partitions=settings.partitions,
                                                  compacting=True, deleting=False,
                                                  key_serializer="json", value_serializer="json"))
    seen = app.Table("seen", default=None, partitions=settings.partitions)

    admission = settings.admission()

    sent: list[Any] = []  # this batch's writes, awaited before its events are acked

    def refuse(raw: bytes, reason: str, detail: str, where: str) -> None:
        record = dead_letter(raw, reason, detail, where)
        sent.append(dlq.send_soon(key=reason.encode(), value=orjson.dumps(record)))

    def fold(batch: list[Any]) -> None:
        """Fold a batch of events; write each changed key once, after the whole batch.

        Every write's future lands in ``sent``; the agent awaits them all before take_events
        acks the batch. faust's own pre-commit flush gives up after 0.1 s with messages still
        queued, so without this an offset could be committed ahead of its changelog writes.
        """
        dirty: dict[str, tuple[int, dict[str, Any]]] = {}
        first_seen: dict[str, tuple[int, list[Any]]] = {}
        rows: dict[int, list[bytes]] = {}  # by source partition
        # Metrics: counted locally, added to the registry once per label per batch.
        kinds_in: Counter[str] = Counter()
        kinds_out: Counter[str] = Counter()
        invalid: Counter[str] = Counter()
        newest = 0.0
        for event in batch:
            msg = event.message
            if msg.timestamp and msg.timestamp > newest:
                newest = msg.timestamp
            raw: bytes = event.value if isinstance(event.value, bytes) else bytes(event.value)
            where = f"{msg.topic}[{msg.partition}]@{msg.offset}"
            try:
                ev = admission.admit(raw)
            except InvalidEvent as exc:
                refuse(raw, exc.reason, exc.detail, where)
                kinds_in[UNKNOWN_KIND] += 1
                invalid[exc.reason] += 1
                continue
            kinds_in[ev.kind] += 1
            cells = cells_of(ev.lat, ev.lon)  # once per event: the key, the rollups and the row
            key = to_str(cells[PARTITION_RES]).encode()
            home = partition_of(key, settings.partitions)
            if msg.partition != home:
                # Written by a producer that keyed it differently: send it to the partition
                # that owns its cell. A duplicate made by a crash here is caught by ``seen``.
                sent.append(events.send_soon(key=key, value=raw, partition=home))
                continue
            here = [msg.partition, msg.offset]
            digest = content_digest(ev)
            first = first_seen[ev.event_id][1] if ev.event_id in first_seen else seen.data.get(ev.event_id)
            if first is not None and first[:2] != here:
                if first[2] != digest:
                    refuse(raw, "duplicate_conflict", f"event_id {ev.event_id} first seen at "
                           f"offset {first[1]} with different content", where)
                    invalid["duplicate_conflict"] += 1
                continue  # a redelivery of an event already counted
            if first is None:
                first_seen[ev.event_id] = (msg.partition, [*here, digest])
            delta = measures_of(ev)
            pos = position(msg.offset)
            for rkey in rollup_keys(ev, cells):
                name = rkey.encode()
                current = dirty[name][1] if name in dirty else rollups.data.get(name)
                state, changed = apply(current, delta, msg.partition, pos)
                if changed:
                    dirty[name] = (msg.partition, state)
            rows.setdefault(msg.partition, []).append(
                orjson.dumps(accepted_row(ev, raw, cells, (msg.partition, pos))))
            kinds_out[ev.kind] += 1
        for name, (partition, state) in dirty.items():
            rollups.data[name] = state
            sent.append(rollups.send_changelog(partition, name, state))
        for event_id, (partition, value) in first_seen.items():
            seen.data[event_id] = value
            sent.append(seen.send_changelog(partition, event_id, value))
        # Envelopes of accepted events: the raw table's feed, deduplicated there by event.
        # Each stays well under Kafka's 1 MB message limit, whatever the batch size. They go
        # to the source's partition number, so a consumer of the accepted topic sees each
        # area's events in order (spike detection relies on it).
        for partition, part_rows in rows.items():
            for envelope in envelopes(part_rows, ENVELOPE_BYTES):
                sent.append(accepted.send_soon(key=None, value=envelope, partition=partition))
        add_counts(EVENTS_IN, "worker", kinds_in)
        add_counts(EVENTS_OUT, "worker", kinds_out)
        add_counts(INVALID, "worker", invalid)
        BATCH_SIZE.labels("worker").observe(len(batch))
        observe_lag("worker", newest)

    @app.agent(events, name="aggregate")
    async def aggregate(stream: Any) -> None:
        async for batch in stream.take_events(settings.fold_batch, within=settings.fold_within):
            fold(batch)
            try:
                await asyncio.gather(*sent)
            except Exception:
                # A write the broker refused after its retries: stop, so that the batch is
                # read again from the last committed offset by the restarted worker.
                log.critical("a write was not acknowledged; exiting", exc_info=True)
                os._exit(70)
            sent.clear()

    return app
