"""Pieces the smaller fault scenarios share: a replay in the background, the sink swapped for
the fault harness, and the sink group's lag."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hotspots import caughtup, stack
from hotspots.settings import SinkSettings, WorkerSettings
from hotspots.topics import committed_offsets, end_offsets
from tests.faults.chaos import group_members
from tests.faults.replay import AtLeastOnceProducer, Replay, Truth, produce


class Background:
    """A replay produced at least once from a thread; ``join()`` re-raises its failure."""

    def __init__(self, config: stack.StackConfig, replay: Replay, rate: float | None) -> None:
        self.truth = Truth()
        self.producer = AtLeastOnceProducer(config, f"test:{replay.tag}", rate=rate)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(replay,), daemon=True)
        self.thread.start()

    def _run(self, replay: Replay) -> None:
        try:
            produce(replay, self.producer, self.truth)
        except BaseException as exc:
            self.error = exc

    def wait_for(self, sent: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while self.producer.sent < sent:
            assert self.thread.is_alive() or self.producer.sent >= sent, f"producer stopped: {self.error!r}"
            assert time.monotonic() < deadline, f"only {self.producer.sent} of {sent} events sent"
            time.sleep(0.2)

    def join(self) -> Truth:
        self.thread.join()
        self.producer.close()
        assert self.error is None, f"producer failed: {self.error!r}"
        return self.truth

    def stop(self) -> None:
        self.producer.stop.set()
        self.thread.join(timeout=60)
        self.producer.close()


def start_harness(config: stack.StackConfig, work: Path, mode: str,
                  seconds: float = 0.0) -> tuple[Path, Path]:
    """Stop the real sink and start the fault harness as the stack's sink; return (stats, flag)."""
    stats, flag = work / f"sink-{mode}.json", work / f"store-{mode}.flag"
    settings = SinkSettings(bootstrap=config.bootstrap, topic_prefix=config.topic_prefix)
    gone = set(group_members(config, settings.sink_group, settings.accepted_topic)[1])
    stack.stop_service(config, "sink")
    # A script path, not -m: services run in the data dir, where the tests package is not found.
    harness = Path(__file__).with_name("sink_harness.py")
    stack.start_service(config, "sink", [sys.executable, str(harness), str(stats), str(flag), mode,
                                         str(seconds)])
    # Up, and owning the partitions: a sink stopped early may not have left its group, and
    # then the harness gets them only when that member's session expires.
    deadline = time.monotonic() + 180
    while not (stats.exists() and _sole_owner(config, settings, gone)):
        assert stack._pid(config, "sink") is not None, "the sink harness exited while starting"
        assert time.monotonic() < deadline, "the sink harness did not start or join its group"
        time.sleep(0.5)
    return stats, flag


def _sole_owner(config: stack.StackConfig, settings: SinkSettings, gone: set[str]) -> bool:
    try:
        state, owned = group_members(config, settings.sink_group, settings.accepted_topic)
    except Exception:
        return False
    return (state == "Stable" and len(owned) == 1 and not owned.keys() & gone
            and set().union(*owned.values()) == set(range(config.partitions)))


def read_stats(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def sink_lag(config: stack.StackConfig) -> int:
    """Records on the worker's output topics that the sink has not committed yet."""
    settings = SinkSettings(bootstrap=config.bootstrap, topic_prefix=config.topic_prefix)
    ends = end_offsets(config.bootstrap, caughtup.sink_outputs(settings, spikes=False))
    done = committed_offsets(config.bootstrap, settings.sink_group)
    return sum(end - max(done.get(tp, 0), 0) for tp, end in ends.items())


def outputs_written(config: stack.StackConfig) -> int:
    """Records on the worker's output topics (a fresh stack: every offset starts at 0)."""
    settings = SinkSettings(bootstrap=config.bootstrap, topic_prefix=config.topic_prefix)
    return sum(end_offsets(config.bootstrap, caughtup.sink_outputs(settings, spikes=False)).values())


def sink_committed(config: stack.StackConfig) -> dict[Any, int]:
    settings = SinkSettings(bootstrap=config.bootstrap, topic_prefix=config.topic_prefix)
    return committed_offsets(config.bootstrap, settings.sink_group)


def wait_caught_up(config: stack.StackConfig, timeout: float) -> None:
    """The worker folded every event produced (its ``progress`` table), then the sink committed
    every output the worker wrote: `hotspots wait` (hotspots/caughtup.py), without the spike
    agents and alerts, which the suite does not check."""
    worker = WorkerSettings(bootstrap=config.bootstrap, topic_prefix=config.topic_prefix)
    sink = SinkSettings(bootstrap=config.bootstrap, topic_prefix=config.topic_prefix)
    caughtup.wait_pipeline(config.bootstrap, worker, sink, time.monotonic() + timeout,
                           spikes=False, settle=2.0)


def wait_spikes_folded(config: stack.StackConfig, timeout: float) -> None:
    """The spike agents folded every accepted and re-keyed record (their progress tables):
    they did not stall at a hole. The suite does not check their series against a truth."""
    worker = WorkerSettings(bootstrap=config.bootstrap, topic_prefix=config.topic_prefix)
    deadline = time.monotonic() + timeout
    for agent in ("spikes", "district_spikes"):
        caughtup.wait_folded(config.bootstrap, worker, deadline, agent=agent)


def hole_seeks(*configs: stack.StackConfig) -> int:
    """Seeks back to a hole the worker made (streams/progress.py logs each one)."""
    logs = [Path(c.data_dir) / "logs" / "worker.log" for c in configs]
    return sum(log.read_text(errors="replace").count("was never folded") for log in logs if log.exists())
