"""Two workers in one group: a second joins mid-replay, then the first is killed. Counts stay exact."""

from __future__ import annotations

import dataclasses
import signal
import time

import pytest

from hotspots import stack
from tests.faults.chaos import worker_members, worker_ready
from tests.faults.replay import Replay
from tests.faults.scenario import Background, hole_seeks, wait_caught_up
from tests.faults.verify import check_store

pytestmark = [pytest.mark.faults, pytest.mark.timeout(1200)]  # a loaded 2-core machine is slow
EVENTS = 40000


def wait_group(config: stack.StackConfig, members: int, gone: set[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not worker_ready(config, gone, members):
        assert time.monotonic() < deadline, f"worker group not stable with {members} members: " \
                                            f"{worker_members(config)}"
        time.sleep(0.5)


def test_second_worker_joins_then_first_is_killed(fault_stack, tmp_path) -> None:
    # The second worker: same app id and group, its own data dir, logs and pid file.
    second = dataclasses.replace(fault_stack, data_dir=str(tmp_path / "worker2"))
    second.save()
    replay = Replay(events=EVENTS, seed=41, tag="rebalance", years=(2007, 2007))
    background = Background(fault_stack, replay, rate=1500)
    try:
        background.wait_for(EVENTS // 4)
        first_member = set(worker_members(fault_stack)[1])
        stack.start_service(second, "worker", stack.service_argv("worker", second))
        wait_group(fault_stack, members=2, gone=set())  # the partitions are now split

        background.wait_for(EVENTS * 2 // 3)
        split = worker_members(fault_stack)[1]
        assert len(split) == 2 and all(split.values()), f"not split between two workers: {split}"
        assert stack.stop_service(fault_stack, "worker", signal.SIGKILL)  # the first worker
        wait_group(fault_stack, members=1, gone=first_member)  # the second owns every partition

        truth = background.join()
        wait_caught_up(fault_stack, timeout=300)
        verdict, reconciled = check_store(fault_stack, replay, truth, tmp_path)
    finally:
        background.stop()
        stack.stop_service(second, "worker")
    print(f"rebalance: the worker sought back to a hole {hole_seeks(fault_stack, second)} times")
    assert verdict.ok, str(verdict)
    assert reconciled["ok"] and reconciled["drifted_keys"] == 0, reconciled
