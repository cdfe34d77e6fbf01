"""A slow sink under a fast stream: its lag grows, its memory does not, and it drains exactly."""

from __future__ import annotations

import time

import pytest

from tests.faults.replay import Replay
from tests.faults.scenario import (
    Background,
    outputs_written,
    read_stats,
    sink_lag,
    start_harness,
    wait_caught_up,
)
from tests.faults.verify import check_store

pytestmark = [pytest.mark.faults, pytest.mark.timeout(1200)]  # a loaded 2-core machine is slow
SLOW = 2.0  # seconds added to every store insert while throttled
BATCH_MAX = 2000
INSERTS = 10  # throttled inserts at least: the buffer's size is recorded at each


def test_slow_sink_lag_grows_memory_stays_bounded_then_drains(fault_stack, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOTSPOTS_BATCH_MAX", str(BATCH_MAX))  # read by the harness at start
    stats_path, flag = start_harness(fault_stack, tmp_path, "slow", SLOW)
    flag.touch()  # throttled from the start
    replay = Replay(events=40000, seed=31, tag="slow", years=(2006, 2006))
    background = Background(fault_stack, replay, rate=None)  # as fast as the producer goes
    lags: list[int] = []
    try:
        while background.thread.is_alive():
            lags.append(sink_lag(fault_stack))
            time.sleep(1.0)
        truth = background.join()
        # The worker is still folding the tail of the replay. Stay throttled for 10 s, and
        # until the sink has made enough inserts to say its buffer stays bounded: a fast
        # replay (40k events) can end before it has (9 inserts on 2026-11-29).
        settle = time.monotonic() + 10
        deadline = settle + 120
        while time.monotonic() < settle or (len(read_stats(stats_path)["buffered"]) < INSERTS
                                            and time.monotonic() < deadline):
            lags.append(sink_lag(fault_stack))
            time.sleep(1.0)
        throttled = read_stats(stats_path)
        written = outputs_written(fault_stack)
        flag.unlink()  # the sink speeds up again and must drain everything
        wait_caught_up(fault_stack, timeout=300)
    finally:
        flag.unlink(missing_ok=True)
        background.stop()
    assert sink_lag(fault_stack) == 0

    # Back-pressure: the sink fell far behind (most of what the worker wrote was waiting:
    # records are envelopes of many rows); the backlog waits in Kafka, not in its memory.
    assert max(lags) > written / 2, (written, lags)
    # Bounded memory: what the sink buffers does not grow with the lag. A flush is due at
    # batch_max rows, and polls are sized so that one poll adds about that many rows
    # (sinks/sink.py: poll_size), whatever the records carry.
    buffered = throttled["buffered"]  # at every insert, when the buffer is fullest
    assert len(buffered) >= INSERTS, throttled
    assert max(buffered) <= 3 * BATCH_MAX, f"buffered rows peaked at {max(buffered)}"
    rss = throttled["rss_kb"]
    warm = rss[len(rss) // 4]  # once the sink's first batches have been through (chDB included)
    assert max(rss) - warm < 250_000, f"sink RSS grew by {(max(rss) - warm) // 1000} MB while lagging"
    print(f"slow sink: lag peaked at {max(lags)} records; buffered rows peaked at {max(buffered)} "
          f"(batch_max {BATCH_MAX}); RSS {warm // 1000} -> {max(rss) // 1000} MB")

    verdict, reconciled = check_store(fault_stack, replay, truth, tmp_path)
    assert verdict.ok, str(verdict)
    assert reconciled["ok"] and reconciled["drifted_keys"] == 0, reconciled
