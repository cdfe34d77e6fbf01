"""Fold every source offset, in order: a record that never reached the agent is read again.

faust (0.15.3) drops a message that reaches a stream while the app's flow control is
suspended (during a rebalance or a recovery) and *acknowledges* it, so its offset can be
committed without the message ever being folded: the event is lost (found by
tests/faults/test_rebalance.py). Offsets of the events topic have no gaps (its producers
are not transactional and it is not compacted), so the worker keeps, per source partition,
the next offset it must fold, in the changelogged ``progress`` table, written once each
fold's other writes have landed (a worker killed mid-fold leaves some of them on the
broker and not others, and a record below the stored progress is taken for folded, so
faust may drop it unnoticed). A record past that offset reveals a hole: it is not folded, and the
partition is sought back to the hole, again after every fold that skipped a record past it
(records fetched before a seek move faust's read offset past the hole, and faust then drops
the records read again from it). Records before the hole are folded as usual (redeliveries
are idempotent). When the record that revealed a hole comes first again after a seek,
the log itself is asked (``first_offset``) for its first record at or after the hole. Only
if that is past the hole (its records are gone, say by retention) is the gap accepted;
otherwise faust dropped the hole's records again, and they are read again. Records faust
drops at the end of a partition reveal no hole until another one comes, so a partition that
has been quiet while its log holds more than its progress is read again from its progress
(``check_tail``). So is one whose records are all folded while faust's committed offset
stays behind the log's end: faust never acknowledged some of them (seen once with a new
consumer group over folded records), so its consumer lag would never reach zero; read
again, they are redeliveries, skipped and acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from faust.types import TP
from kafka import KafkaConsumer, TopicPartition

from hotspots.kafka_security import kafka_kwargs

log = logging.getLogger(__name__)


class SourceGuard:
    """Decides, record by record, whether the agent may fold it; collects writes and seeks."""

    def __init__(self) -> None:
        self.next: dict[int, int] = {}  # partition -> next offset to fold, advanced this fold
        self.holes: dict[int, tuple[int, int]] = {}  # partition -> (missing offset, revealed by)
        self.seeks: dict[int, int] = {}  # partition -> offset to seek to after this fold
        # Holes whose revealing record came first again after a seek: the log is to be asked
        # (suspects), and those it confirmed have no record before that one (gaps).
        self.suspects: dict[int, tuple[int, int]] = {}
        self.gaps: dict[int, tuple[int, int]] = {}

    def admit(self, partition: int, offset: int, stored: int | None) -> bool:
        """May the record at ``offset`` be folded? ``stored``: the table's next offset."""
        expected = self.next.get(partition, stored)
        if expected is not None and offset > expected:
            hole = self.holes.get(partition)
            if hole is None or hole[0] != expected:
                self.holes[partition] = (expected, offset)
            elif hole[1] == offset:  # read again from the hole, and still first
                if self.gaps.get(partition) == hole:  # the log has nothing before it
                    return self._fold(partition, expected, offset)
                self.suspects[partition] = hole
            # Seek (again): a record fetched before the last seek moves faust's read offset
            # past the hole, and faust then drops the records read again from it.
            self.seeks[partition] = expected
            return False
        return self._fold(partition, expected, offset)

    def _fold(self, partition: int, expected: int | None, offset: int) -> bool:
        # At or past the hole: it is read (or really empty), so no seek back over it. A
        # redelivery from before the hole leaves it open.
        if (expected is None or offset >= expected) and partition in self.holes:
            del self.holes[partition]
            self.seeks.pop(partition, None)
            self.suspects.pop(partition, None)
            self.gaps.pop(partition, None)
        self.next[partition] = max(expected or 0, offset + 1)
        return True

    def advanced(self) -> dict[int, int]:
        """The next offsets this fold reached (to write), and forget them."""
        out, self.next = self.next, {}
        return out

    def take_seeks(self) -> dict[int, int]:
        out, self.seeks = self.seeks, {}
        return out

    def take_suspects(self) -> dict[int, tuple[int, int]]:
        """Holes to check in the log: partition -> (missing offset, revealed by)."""
        out, self.suspects = self.suspects, {}
        return out

    def checked(self, partition: int, hole: tuple[int, int], first: int | None) -> int | None:
        """The log's first record at or after the hole is at ``first`` (None: not known).
        If that is past the hole, the hole is a real gap up to it: returns ``first``, and the
        record there is folded when it comes. None: the hole's records are there to read."""
        if first is None or first <= hole[0] or self.holes.get(partition) != hole:
            return None
        self.holes[partition] = self.gaps[partition] = (hole[0], first)
        return first

    def forget(self) -> None:
        """On a rebalance: faust seeks to committed offsets, so holes are found afresh."""
        self.next.clear()
        self.holes.clear()
        self.seeks.clear()
        self.suspects.clear()
        self.gaps.clear()


def first_offset(settings: Any, topic: str, partition: int, offset: int,
                 timeout_s: float = 10.0) -> int | None:
    """The offset of the log's first record at or after ``offset`` (the earliest one if
    retention has removed it); None if none came within the timeout. Blocking: run it in
    an executor."""
    consumer = KafkaConsumer(**kafka_kwargs(settings), enable_auto_commit=False,
                             auto_offset_reset="earliest", max_poll_records=1)
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        records = consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=1)
        return min((r.offset for r in records.get(tp, [])), default=None)
    finally:
        consumer.close()


TAIL_IDLE = 10.0  # seconds a partition must be quiet before its tail is checked


def tail_seeks(ends: dict[Any, int], done: Any, committed: Any) -> dict[Any, int]:
    """{partition: offset to read again from} for quiet partitions whose log ends (``ends``)
    past their progress (``done``: partition number as text -> next offset to fold), or,
    folded to the end, past faust's committed offset (``committed``: partition -> offset,
    None or absent when nothing is committed). A partition with no progress yet has
    nothing to compare with."""
    seeks = {}
    for tp, end in ends.items():
        next_offset = done.get(str(tp.partition))
        if next_offset is None or end is None:
            continue
        behind = committed.get(tp)
        if end > next_offset:
            seeks[tp] = next_offset
        elif behind is not None and end > behind:
            # Not when None: faust has committed nothing here, and its first commit starts
            # at the first record acknowledged, holes before it included (nor would a seek
            # to 0 reset its read offset: seek_wait).
            seeks[tp] = behind
    return seeks


def committed_offsets(consumer: Any) -> Any:
    """faust's committed offset per partition: the last it committed, or found committed
    when the partition was assigned. faust (0.15.3) has no public accessor for it."""
    return consumer._committed_offset  # tests/unit/test_progress.py holds faust to it


class SourceProgress:
    """An agent's guard, bound to its source topic, its ``progress`` table and the consumer.

    Per fold: ``admit`` each record; once the fold's other writes have landed, ``mark``
    (and await what it returns); then ``seek_holes``. Call ``forget`` on every rebalance.
    """

    def __init__(self, app: Any, table: Any, topic: str, settings: Any,
                 tail_idle: float = TAIL_IDLE) -> None:
        self.app, self.table, self.topic, self.settings = app, table, topic, settings
        self.guard = SourceGuard()
        self.announced: dict[int, int] = {}  # partition -> hole last logged (may take a few seeks)
        self.heard: dict[int, float] = {}  # partition -> when a record of it last came
        self.tail_idle = tail_idle
        app.timer(interval=tail_idle / 2, name=f"{table.name}_tail")(self.check_tail)

    def admit(self, message: Any) -> bool:
        self.heard[message.partition] = time.monotonic()
        return self.guard.admit(message.partition, message.offset,
                                self.table.data.get(str(message.partition)))

    async def check_tail(self) -> None:
        """A record faust drops at the end of a partition reveals no hole, as none follows it:
        read a partition again from its progress when it has been quiet for ``tail_idle``
        seconds while its log holds more."""
        now = time.monotonic()
        try:
            # A partition's quiet starts when it is first seen here, not at boot.
            quiet = [tp for tp in self.app.consumer.assignment() if tp.topic == self.topic
                     and now - self.heard.setdefault(tp.partition, now) >= self.tail_idle]
            ends = await self.app.consumer.highwaters(*quiet) if quiet else {}
        except Exception:  # not started, or mid-rebalance: the next tick looks again
            log.debug("tail check of %s skipped", self.topic, exc_info=True)
            return
        done = self.table.data
        for tp, offset in tail_seeks(ends, done, committed_offsets(self.app.consumer)).items():
            self.heard[tp.partition] = now  # give the records read again time to come
            if offset < done.get(str(tp.partition)):
                log.warning("%s[%d]: offsets %d to %d are folded but were never acknowledged "
                            "(faust's committed offset is %d); reading them again", self.topic,
                            tp.partition, offset, ends[tp] - 1, offset)
            else:
                log.warning("%s[%d]: offsets %d to %d were never folded; reading again from %d",
                            self.topic, tp.partition, offset, ends[tp] - 1, offset)
            await self._seek(tp.partition, offset)

    def mark(self) -> list[Any]:
        """Write how far the fold reached: call it only once the fold's other writes have
        landed (a record below the stored progress is taken for folded). The writes' futures."""
        sent = []
        for partition, next_offset in self.guard.advanced().items():
            self.table.data[str(partition)] = next_offset
            sent.append(self.table.send_changelog(partition, str(partition), next_offset))
        return sent

    def forget(self) -> None:
        self.guard.forget()

    async def seek_holes(self) -> None:
        """Read each partition with a hole again from the hole."""
        for partition, hole in self.guard.take_suspects().items():
            loop = asyncio.get_running_loop()
            try:
                first = await loop.run_in_executor(None, first_offset, self.settings, self.topic,
                                                   partition, hole[0])
            except Exception:
                log.warning("could not read %s[%d] at %d", self.topic, partition, hole[0],
                            exc_info=True)
                first = None
            resume = self.guard.checked(partition, hole, first)
            if resume is not None:
                log.error("%s[%d]: the log has no record at offsets %d to %d (removed by "
                          "retention?); going on from %d", self.topic, partition, hole[0],
                          resume - 1, resume)
        for partition, offset in self.guard.take_seeks().items():
            if self.announced.get(partition) != offset:
                self.announced[partition] = offset
                log.warning("%s[%d]: offset %d was never folded; reading again from it",
                            self.topic, partition, offset)
            await self._seek(partition, offset)

    async def _seek(self, partition: int, offset: int) -> None:
        try:
            await self.app.consumer.seek_wait({TP(self.topic, partition): offset})
        except Exception:  # no longer ours after a rebalance: the new owner reads it
            log.warning("could not seek %s[%d]", self.topic, partition, exc_info=True)
