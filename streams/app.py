"""The Faust worker: validate events, route them by cell, fold them into weekly and daily rollups.

Topology (topics are prefixed by HOTSPOTS_TOPIC_PREFIX):

    events.v1 --aggregate--> rollups.v1    full state of each changed rollup key
                        \\--> accepted.v1   validated events with their cells (raw table)
                        \\--> deadletter.v1 refused records, with a reason

Two changelogged tables make redelivery harmless: ``rollups`` keeps, per key, the last
source offset it applied; ``seen`` keeps where each event_id was first seen, so the
same event sent twice (a producer retry, a replayed file) is counted once.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
import orjson

from hotspots.contract import InvalidEvent, content_digest, dead_letter, measures_of, parse_event
from hotspots.geo import partition_key, partition_of
from hotspots.settings import WorkerSettings
from streams.rollup import accepted_row, apply, rollup_keys, rollup_row

log = logging.getLogger(__name__)


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
        consumer_auto_offset_reset="earliest",
    )
    events = app.topic(settings.events_topic, key_serializer="raw", value_serializer="raw",
                       partitions=settings.partitions)
    accepted = app.topic(settings.accepted_topic, key_serializer="raw", value_serializer="raw",
                         partitions=settings.partitions)
    rollups_out = app.topic(settings.rollups_topic, key_serializer="raw", value_serializer="raw",
                            partitions=settings.partitions)
    dlq = app.topic(settings.dlq_topic, key_serializer="raw", value_serializer="raw",
                    partitions=1)
    rollups = app.Table("rollups", default=None, partitions=settings.partitions)
    seen = app.Table("seen", default=None, partitions=settings.partitions)

    async def refuse(raw: bytes, reason: str, detail: str, where: str) -> None:
        record = dead_letter(raw, reason, detail, where)
        await dlq.send(key=reason.encode(), value=orjson.dumps(record))

    @app.agent(events, name="aggregate")
    async def aggregate(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            raw: bytes = event.value if isinstance(event.value, bytes) else bytes(event.value)
            where = f"{msg.topic}[{msg.partition}]@{msg.offset}"
            try:
                ev = parse_event(raw)
            except InvalidEvent as exc:
                await refuse(raw, exc.reason, exc.detail, where)
                continue
            key = partition_key(ev.lat, ev.lon)
            home = partition_of(key, settings.partitions)
            if msg.partition != home:
                # Written by a producer that keyed it differently: send it to the partition
                # that owns its cell. A duplicate made by a crash here is caught by ``seen``.
                await events.send(key=key, value=raw, partition=home)
                continue
            here = [msg.partition, msg.offset]
            digest = content_digest(ev)
            first = seen.get(ev.event_id)
            if first is not None and first[:2] != here:
                if first[2] != digest:
                    await refuse(raw, "duplicate_conflict",
                                 f"event_id {ev.event_id} first seen at offset {first[1]} "
                                 "with different content", where)
                continue  # a redelivery of an event already counted
            if first is None:
                seen[ev.event_id] = [*here, digest]
            delta = measures_of(ev)
            for rkey in rollup_keys(ev):
                name = rkey.encode()
                state, changed = apply(rollups.get(name), delta, msg.partition, msg.offset)
                if changed:
                    rollups[name] = state
                # Publish even when unchanged: after a crash the earlier publish may be lost.
                await rollups_out.send(key=name.encode(), value=orjson.dumps(rollup_row(rkey, state)))
            await accepted.send(key=ev.event_id.encode(),
                                value=orjson.dumps(accepted_row(ev, raw)))

    return app
