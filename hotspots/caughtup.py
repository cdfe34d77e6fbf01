"""What `hotspots wait` waits for: every event folded by the worker, every output stored.

The worker is judged by its own ``progress`` table (streams/progress.py), not by faust's
committed offsets. faust 0.15.3 can drop, and acknowledge, a record during a rebalance; the
worker then reads the hole again, and meanwhile faust's committed offsets run ahead of what
was folded. In a full fault run they also stayed behind for good after a rebalance, although
every event had been folded, and a wait on them hung (docs/exactness.md). The table's
changelog, ``<app id>-progress-changelog``, holds for each events partition the next source
offset the worker must fold: key the partition number as a string, value that offset as JSON,
written to the changelog partition of the same number once each fold's other writes have
landed. The spike agents (streams/alerts.py) keep the same guard, and tables, over their own
sources (``SOURCES``).

The sink is judged by its committed offsets (``hotspots.topics.wait_caught_up``): it commits
only after a batch is stored.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType

import orjson
from kafka import KafkaConsumer, TopicPartition

from hotspots.kafka_security import kafka_kwargs
from hotspots.settings import SinkSettings, WorkerSettings
from hotspots.topics import wait_caught_up

READ_TIMEOUT = 15.0  # seconds to read the changelog's last records; unread counts as unfolded


# Worker agent -> (its source topic's setting, its progress table), as streams/ names them.
SOURCES = {"aggregate": ("events_topic", "progress"),
           "spikes": ("accepted_topic", "spikes_progress"),
           "district_spikes": ("district_events_topic", "district_spikes_progress")}


def progress_changelog(settings: WorkerSettings, agent: str = "aggregate") -> str:
    """The changelog topic of an agent's progress table (faust's naming)."""
    return f"{settings.app_id}-{SOURCES[agent][1]}-changelog"


def source_topic(settings: WorkerSettings, agent: str = "aggregate") -> str:
    topic: str = getattr(settings, SOURCES[agent][0])
    return topic


def progress_entry(key: bytes | None, value: bytes | None, partition: int) -> tuple[int, int] | None:
    """(events partition, next offset to fold) of one progress changelog record, read from
    changelog partition ``partition``; None for a record that holds no offset (a tombstone)."""
    if value is None:
        return None
    try:
        offset = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        return None
    source = partition
    if key is not None:
        text = key.decode("utf-8", "replace").strip().strip('"')  # raw (faust's default) or JSON
        if text.isdigit():
            source = int(text)
    return source, offset


def unfolded_by(ends: Mapping[int, int], folded: Mapping[int, int]) -> dict[int, int]:
    """Events not folded yet: {partition: count}, from the events topic's end offsets and the
    next offset to fold per partition. A partition with no events needs no progress record."""
    return {p: end - folded.get(p, 0) for p, end in sorted(ends.items()) if end > folded.get(p, 0)}


class FoldProgress:
    """Reads an agent's source topic's end offsets and its progress changelog, with one
    consumer that joins no group (it never commits, and the worker's group is not touched)."""

    def __init__(self, bootstrap: str, settings: WorkerSettings, agent: str = "aggregate") -> None:
        self.settings = settings
        self.topic = source_topic(settings, agent)
        self.changelog = progress_changelog(settings, agent)
        self.consumer = KafkaConsumer(**kafka_kwargs(settings, bootstrap), enable_auto_commit=False)

    def __enter__(self) -> FoldProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.consumer.close()

    def _ends(self, topic: str) -> dict[int, int]:
        partitions = self.consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        return {tp.partition: end for tp, end in self.consumer.end_offsets(tps).items()} if tps else {}

    def event_ends(self) -> dict[int, int]:
        return self._ends(self.topic)

    def folded(self, timeout: float = READ_TIMEOUT) -> dict[int, int]:
        """The next offset to fold per events partition: the last record of each changelog
        partition. A partition not read within ``timeout`` is left out (not folded)."""
        ends = self._ends(self.changelog)  # {} before the worker first started
        tps = [TopicPartition(self.changelog, p) for p, end in ends.items() if end > 0]
        if not tps:
            return {}
        self.consumer.assign(tps)
        for tp in tps:
            self.consumer.seek(tp, ends[tp.partition] - 1)
        out: dict[int, int] = {}
        read: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(read) < len(tps) and time.monotonic() < deadline:
            for tp, records in self.consumer.poll(timeout_ms=500).items():
                read.add(tp.partition)
                for record in records:  # in offset order: the last one wins
                    entry = progress_entry(record.key, record.value, tp.partition)
                    if entry is not None:
                        out[entry[0]] = entry[1]
        return out

    def unfolded(self, timeout: float = READ_TIMEOUT) -> dict[int, int]:
        """Events per partition that the worker has not folded yet ({} when all are)."""
        ends = self.event_ends()  # before the changelog, so that no fold is missed
        if not any(ends.values()):
            return {}
        return unfolded_by(ends, self.folded(timeout))


def unfolded(bootstrap: str, settings: WorkerSettings, timeout: float = READ_TIMEOUT,
             agent: str = "aggregate") -> dict[int, int]:
    with FoldProgress(bootstrap, settings, agent) as progress:
        return progress.unfolded(timeout)


def wait_folded(bootstrap: str, settings: WorkerSettings, deadline: float, poll: float = 0.5,
                agent: str = "aggregate") -> None:
    """Block until the agent has folded every record its source topic holds (as it grows)."""
    with FoldProgress(bootstrap, settings, agent) as progress:
        while behind := progress.unfolded(max(1.0, min(READ_TIMEOUT, deadline - time.monotonic()))):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"worker {settings.app_id} has not folded {sum(behind.values())} records of "
                    f"{progress.topic} (by its {progress.changelog}): "
                    + ", ".join(f"[{p}]={n}" for p, n in behind.items()))
            time.sleep(poll)


def sink_outputs(settings: SinkSettings, spikes: bool = True) -> list[str]:
    """The worker's outputs that the sink stores."""
    outputs = [settings.rollups_topic, settings.accepted_topic, settings.dlq_topic]
    return [*outputs, settings.alerts_topic] if spikes else outputs


def wait_pipeline(bootstrap: str, worker: WorkerSettings, sink: SinkSettings, deadline: float, *,
                  spikes: bool = True, settle: float = 1.0) -> None:
    """`hotspots wait`: block until everything produced so far is folded and stored.

    First the worker has folded every event (its progress changelog); then, with ``spikes``,
    its spike agents have folded what it accepted (cells, then districts; their progress
    changelogs); then the sink has committed every output. Twice: events re-routed to their
    home partition are folded after the progress record of the fold that re-routed them.
    Raises TimeoutError naming what is behind once ``deadline`` (time.monotonic()) passes.
    """
    for round_ in range(2):
        if round_:
            time.sleep(settle)
        wait_folded(bootstrap, worker, deadline)
        if spikes:
            for agent in ("spikes", "district_spikes"):
                wait_folded(bootstrap, worker, deadline, agent=agent)
        wait_caught_up(bootstrap, sink.sink_group, sink_outputs(sink, spikes), deadline, sink)
