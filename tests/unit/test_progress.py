"""A record faust never delivered to the agent is read again, not skipped (streams/progress.py).

Regression for the loss found by tests/faults/test_rebalance.py: faust drops and acknowledges
a record that reaches a stream while flow is suspended during a rebalance, so its offset
was committed and the event never counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from faust import Topic
from faust.types import TP

from hotspots.settings import WorkerSettings
from streams import progress as progress_log
from streams.app import build_app
from streams.progress import SourceGuard, SourceProgress, committed_offsets, tail_seeks
from tests.unit.test_agent import (  # noqa: F401  (sent is a fixture)
    ARREST,
    ARREST_2,
    SEIZURE,
    SENTINEL,
    WEEK8,
    accepted_ids,
    put,
    sent,
    states,
    table,
)

THIRD = ARREST.model_copy(update={"event_id": "a-3"})


def test_guard_admits_in_order_and_redeliveries() -> None:
    guard = SourceGuard()
    assert [guard.admit(0, o, None) for o in (5, 6, 7)] == [True] * 3  # unknown start: any
    assert guard.admit(0, 6, None)  # a redelivery: folded again, idempotently
    assert guard.advanced() == {0: 8} and guard.take_seeks() == {}
    assert guard.admit(0, 8, 8) and guard.admit(1, 0, None)
    assert guard.advanced() == {0: 9, 1: 1}


def test_guard_holds_records_past_a_hole_until_it_is_read() -> None:
    guard = SourceGuard()
    assert guard.admit(0, 10, 10)
    assert not guard.admit(0, 13, 10)  # 11 and 12 never arrived
    assert not guard.admit(0, 14, 10)  # fetched before the seek: not folded either
    assert guard.admit(2, 3, 3)  # other partitions go on
    assert guard.take_seeks() == {0: 11}
    assert guard.advanced() == {0: 11, 2: 4}  # written: the hole is where to start again
    # Still in flight from before the seek: skipped, and the seek is made again (faust's
    # read offset moved past the hole with it, so it would drop the records read again).
    assert not guard.admit(0, 14, 11)
    assert guard.take_seeks() == {0: 11}
    assert guard.admit(0, 9, 11)  # a redelivery from before the hole: folded, hole still open
    assert not guard.admit(0, 15, 11) and guard.take_seeks() == {0: 11}
    assert not guard.admit(0, 16, 11)
    assert [guard.admit(0, o, 11) for o in (11, 12, 13, 14)] == [True] * 4  # the hole is read
    assert guard.take_seeks() == {}  # so the seek asked for in this fold is dropped
    assert guard.advanced() == {0: 15}


def test_guard_asks_the_log_when_the_same_record_comes_first_again() -> None:
    guard = SourceGuard()
    assert not guard.admit(0, 7, 5)
    assert guard.take_seeks() == {0: 5} and guard.take_suspects() == {}
    # The same record first again after the seek: faust may have dropped 5 and 6 again.
    assert not guard.admit(0, 7, 5)
    assert guard.take_suspects() == {0: (5, 7)} and guard.take_seeks() == {0: 5}
    assert guard.checked(0, (5, 7), 5) is None  # the log has 5: read it again
    assert guard.checked(0, (5, 7), None) is None  # the log did not answer: read again
    assert not guard.admit(0, 7, 5) and guard.take_seeks() == {0: 5}
    assert [guard.admit(0, o, 5) for o in (5, 6, 7)] == [True] * 3  # read at last
    assert guard.take_suspects() == {} and guard.advanced() == {0: 8}


def test_guard_accepts_a_gap_the_log_confirms() -> None:
    guard = SourceGuard()
    assert not guard.admit(0, 7, 5) and not guard.admit(0, 7, 5)
    hole = guard.take_suspects()[0]
    assert guard.checked(0, hole, 7) == 7  # the log's first record from 5 on is 7
    assert guard.take_seeks() == {0: 5}
    assert guard.admit(0, 7, 5)  # so 7, when it comes again after the seek, is folded
    assert guard.advanced() == {0: 8} and guard.take_seeks() == {}
    assert not guard.admit(0, 10, 8)  # a later hole is a new one: the log is asked again
    assert not guard.admit(0, 10, 8) and guard.take_suspects() == {0: (8, 10)}


def test_guard_narrows_a_gap_to_what_the_log_lost() -> None:
    """Retention removed 5 and 6 of the hole 5-9: 7 and 8 are still to be read."""
    guard = SourceGuard()
    assert not guard.admit(0, 9, 5) and not guard.admit(0, 9, 5)
    assert guard.checked(0, guard.take_suspects()[0], 7) == 7
    assert not guard.admit(0, 9, 5)  # still past what is left of the hole
    assert [guard.admit(0, o, 5) for o in (7, 8, 9)] == [True] * 3
    assert guard.advanced() == {0: 10}


def test_guard_forgets_holes_on_a_rebalance() -> None:
    guard = SourceGuard()
    assert not guard.admit(0, 7, 5)
    guard.forget()
    assert not guard.admit(0, 7, 5)  # found afresh: a new seek, not taken for a real gap
    assert guard.take_seeks() == {0: 5}


def test_agent_reads_a_dropped_record_again_and_counts_each_event_once(tmp_path, sent) -> None:  # noqa: F811
    """Offsets 0, then 2 and 3 (1 dropped by faust), then 1, 2, 3 again after the seek."""
    settings = WorkerSettings(data_dir=tmp_path, partitions=1, fold_within=0.3)
    app = build_app(settings)
    seeks: list[dict[Any, int]] = []

    async def seek_wait(partitions: dict[Any, int]) -> None:
        seeks.append(dict(partitions))

    async def main() -> None:
        async with app.agents["aggregate"].test_context() as agent:
            app.consumer.seek_wait = seek_wait  # no broker here: record the seek
            await put(agent, ARREST)  # 0
            agent.sent_offset = 2
            await put(agent, SEIZURE)  # 2: reveals the hole at 1
            await put(agent, THIRD)  # 3: fetched before the seek
            await asyncio.sleep(settings.fold_within * 3)
            assert [{tp.partition: o for tp, o in s.items()} for s in seeks] == [{0: 1}]
            agent.sent_offset = 1  # what the seek makes the consumer deliver
            await put(agent, ARREST_2)  # 1
            await put(agent, SEIZURE)  # 2
            await put(agent, THIRD)  # 3
            await agent.put(SENTINEL, key=b"sentinel")  # 4
            await asyncio.sleep(settings.fold_within * 3)

    asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert len(seeks) == 1
    assert accepted_ids(sent) == ["a-1", "a-2", "s-1", "a-3"]
    assert states(app)[WEEK8][1] == 3  # a-1, a-2 and a-3: each once
    assert table(app, "progress") == {"0": 5}
    written = [orjson.loads(v) if isinstance(v, bytes) else v
               for _, v, _ in sent.to("progress-changelog")]
    assert written[-1] == 5


def test_progress_is_written_only_once_the_folds_other_writes_have_landed(
        tmp_path, sent, monkeypatch) -> None:  # noqa: F811
    """A worker killed mid-fold leaves some writes on the broker and not others. Were the
    progress among them, the records it covers would be taken for folded on restart, and
    faust may then drop them unseen: lost from the raw table and the rollups alike."""
    held: list[asyncio.Future] = []
    deliver = Topic.send_soon  # the ``sent`` fixture's: recorded and acknowledged at once

    def send_soon(self: Any, **kw: Any) -> asyncio.Future:
        fut = deliver(self, **kw)
        if not self.get_topic_name().endswith(".accepted.v1"):
            return fut
        pending = asyncio.get_running_loop().create_future()  # the broker has not answered yet
        held.append(pending)
        return pending

    monkeypatch.setattr(Topic, "send_soon", send_soon)
    settings = WorkerSettings(data_dir=tmp_path, partitions=1, fold_within=0.1)
    app = build_app(settings)

    async def main() -> None:
        async with app.agents["aggregate"].test_context() as agent:
            await put(agent, ARREST)
            await asyncio.sleep(settings.fold_within * 5)
            assert accepted_ids(sent) == ["a-1"] and len(held) == 1
            assert sent.to("rollups-changelog") and not sent.to("progress-changelog")
            held[0].set_result(None)
            await asyncio.sleep(settings.fold_within * 3)
            assert [v for _, v, _ in sent.to("progress-changelog")] == [1]

    asyncio.run(asyncio.wait_for(main(), timeout=30))


@pytest.mark.parametrize("log_first", [1, 2])
def test_agent_asks_the_log_before_it_skips_a_hole(tmp_path, sent, monkeypatch, log_first) -> None:  # noqa: F811
    """Offsets 0, then 2 (1 dropped); after the seek 2 comes first again. If the log still
    has 1 (faust dropped it again) it is read again; if the log starts at 2 (retention), 2 is
    folded without it."""
    settings = WorkerSettings(data_dir=tmp_path, partitions=1, fold_within=0.3)
    app = build_app(settings)
    seeks: list[int] = []
    asked: list[tuple[str, int, int]] = []

    async def seek_wait(partitions: dict[Any, int]) -> None:
        seeks.extend(partitions.values())

    def first_offset(_settings: Any, topic: str, partition: int, offset: int) -> int:
        asked.append((topic, partition, offset))
        return log_first

    monkeypatch.setattr(progress_log, "first_offset", first_offset)

    async def main() -> None:
        async with app.agents["aggregate"].test_context() as agent:
            app.consumer.seek_wait = seek_wait
            await put(agent, ARREST)  # 0
            agent.sent_offset = 2
            await put(agent, SEIZURE)  # 2: reveals the hole at 1
            await asyncio.sleep(settings.fold_within * 3)
            agent.sent_offset = 2
            await put(agent, SEIZURE)  # 2 first again after the seek: the log is asked
            await asyncio.sleep(settings.fold_within * 3)
            if log_first == 1:
                agent.sent_offset = 1
                await put(agent, ARREST_2)  # 1
            agent.sent_offset = 2
            await put(agent, SEIZURE)  # 2
            await agent.put(SENTINEL, key=b"sentinel")  # 3
            await asyncio.sleep(settings.fold_within * 3)

    asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert asked == [(settings.events_topic, 0, 1)] and seeks == [1, 1]
    expected = ["a-1", "a-2", "s-1"] if log_first == 1 else ["a-1", "s-1"]
    assert accepted_ids(sent) == expected  # each once, in offset order
    assert table(app, "progress") == {"0": 4}


def test_tail_seeks_only_behind_partitions_with_progress() -> None:
    tp0, tp1, tp2 = (TP("events", p) for p in range(3))
    done = {"0": 7, "1": 7}  # partition 2 has folded nothing yet
    assert tail_seeks({tp0: 10, tp1: 7, tp2: 5}, done, {}) == {tp0: 7}


def test_tail_seeks_back_to_a_committed_offset_behind_folded_records() -> None:
    """A new group over folded records (as after the spike agents' upgrade): faust never
    acknowledged offsets 9 to 11 of partition 0, so it stayed committed at 9 while the log
    and the progress both reached 12. Read again, they are skipped and acknowledged."""
    tp0, tp1, tp2, tp3 = (TP("accepted", p) for p in range(4))
    done = {"0": 12, "1": 11, "2": 11, "3": 10}
    ends = {tp0: 12, tp1: 11, tp2: 11, tp3: 10}
    committed = {tp0: 9, tp1: 11, tp2: None}  # 2: nothing acknowledged yet; 3: not known
    assert tail_seeks(ends, done, committed) == {tp0: 9}
    # Behind its progress as well: the progress comes first (everything past it is unread).
    assert tail_seeks({tp0: 14}, done, committed) == {tp0: 12}


def test_the_committed_offsets_are_read_where_faust_keeps_them(tmp_path) -> None:
    """faust has no public accessor: if a faust upgrade moved them, the check above would
    silently never fire."""
    consumer = build_app(WorkerSettings(data_dir=tmp_path, partitions=2)).consumer
    assert committed_offsets(consumer) is consumer._committed_offset
    assert committed_offsets(consumer)[TP("events", 0)] is None  # nothing committed yet


def test_a_quiet_partition_whose_log_holds_more_is_read_again(tmp_path) -> None:
    """faust dropped the last records of partition 0 (offsets 7-9): nothing follows them, so no
    hole shows. Once the partition has been quiet, the tail check seeks back to 7."""
    settings = WorkerSettings(data_dir=tmp_path, partitions=2)
    app = build_app(settings)
    tp0, tp1 = TP(settings.events_topic, 0), TP(settings.events_topic, 1)
    seeks: list[dict[Any, int]] = []

    async def highwaters(*tps: Any) -> dict[Any, int]:
        return {tp: {tp0: 10, tp1: 4}[tp] for tp in tps}

    async def seek_wait(partitions: dict[Any, int]) -> None:
        seeks.append(dict(partitions))

    # Partition 1 is folded to its end, but faust has committed only offset 2 of it.
    consumer = SimpleNamespace(assignment=lambda: {tp0, tp1, TP("other", 0)},
                               highwaters=highwaters, seek_wait=seek_wait,
                               _committed_offset={tp0: 5, tp1: 2})
    progress = SourceProgress(app, SimpleNamespace(name="p", data={"0": 7, "1": 4}),
                              settings.events_topic, settings, tail_idle=60.0)
    progress.app = SimpleNamespace(consumer=consumer, timer=app.timer)
    asyncio.run(progress.check_tail())  # first seen now: its quiet starts
    assert seeks == []
    progress.heard[0] = time.monotonic()  # a record just came
    asyncio.run(progress.check_tail())
    assert seeks == []
    progress.heard[0] -= 61
    asyncio.run(progress.check_tail())
    assert seeks == [{tp0: 7}]  # partition 1 has not been quiet long enough
    asyncio.run(progress.check_tail())
    assert seeks == [{tp0: 7}]  # once per quiet spell: the records read again need time
    progress.heard[1] -= 61
    warnings: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    progress_log.log.addHandler(handler)
    try:
        asyncio.run(progress.check_tail())
    finally:
        progress_log.log.removeHandler(handler)
    assert seeks == [{tp0: 7}, {tp1: 2}]  # read again to be acknowledged, and committed
    assert any("offsets 2 to 3 are folded but were never acknowledged" in w for w in warnings)
