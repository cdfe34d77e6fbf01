"""The fault suite's own stacks: a broker that gets killed is not shared with other tests.

Sizes come from the environment. The defaults are the reduced form that `make test` and CI
run; `make test-faults` runs the full form (HOTSPOTS_FAULT_EVENTS=1000000).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from hotspots import stack


@dataclass(frozen=True)
class FaultSize:
    events: int  # unique events in the chaos replay (1% more are sent, as re-sent duplicates)
    kills: int  # kill -9s in all, spread over worker, sink and broker
    seed: int
    rate: float  # events per second the replay is paced to, so the kills fall within it


def fault_size() -> FaultSize:
    events = int(os.environ.get("HOTSPOTS_FAULT_EVENTS", "200000"))
    # Paced so that the replay lasts about as long as 20 kills and restarts take.
    rate = float(os.environ.get("HOTSPOTS_FAULT_RATE", "0")) or max(1000.0, events / 400)
    return FaultSize(events=events, kills=int(os.environ.get("HOTSPOTS_FAULT_KILLS", "20")),
                     seed=int(os.environ.get("HOTSPOTS_FAULT_SEED", "8")), rate=rate)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fault_stack(tmp_path_factory: pytest.TempPathFactory,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[stack.StackConfig]:
    """A fresh stack (broker, worker, sink) on free ports, for one test, stopped afterwards."""
    # faust's own setting, read from the environment by the worker: a worker killed with -9
    # never leaves its group, so its successor waits until the dead member's session expires
    # (faust's default, 60 s). 20 s makes the many restarts affordable; it changes when the
    # group rebalances, not what is committed.
    monkeypatch.setenv("BROKER_SESSION_TIMEOUT", "20")
    data_dir = tmp_path_factory.mktemp("faults")
    config = stack.StackConfig(str(data_dir), _free_port(), _free_port(), _free_port(),
                               topic_prefix=f"faults-{uuid.uuid4().hex[:8]}", partitions=4)
    try:
        stack.up(config, timeout=240, echo=lambda _msg: None)
        yield config
    finally:
        stack.down(config, echo=lambda _msg: None)
