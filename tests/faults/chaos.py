"""kill -9 the stack's services at seeded random moments, restart them, and act as their supervisor.

Only processes of the fault stack are touched, through its own pid files.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from kafka import KafkaAdminClient

from hotspots import broker, stack
from hotspots.settings import WorkerSettings

COMPONENTS = ("worker", "spikes", "sink", "broker")
READY_TIMEOUT = 300.0


def running(config: stack.StackConfig, name: str) -> bool:
    return stack._pid(config, name) is not None


def group_members(config: stack.StackConfig, group_id: str, topic: str) -> tuple[str, dict[str, set[int]]]:
    """A consumer group's state and, per member id, the partitions of ``topic`` it owns."""
    admin = KafkaAdminClient(bootstrap_servers=config.bootstrap, request_timeout_ms=3000)
    try:
        group = admin.describe_groups([group_id])[group_id]
    finally:
        admin.close()
    members = {m["member_id"]: {p for a in m["member_assignment"]["assigned_partitions"]
                                if a["topic"] == topic for p in a["partitions"]}
               for m in group["members"]}
    return group["group_state"], members


def worker_members(config: stack.StackConfig, app: str = "worker") -> tuple[str, dict[str, set[int]]]:
    """The worker group's state and, per member id, the events partitions it owns (``app``
    "spikes": the spike alerts group's, and the accepted partitions)."""
    settings = WorkerSettings(bootstrap=config.bootstrap, topic_prefix=config.topic_prefix)
    return group_members(config, *settings.group_source(app))


def worker_ready(config: stack.StackConfig, gone: set[str], members: int = 1,
                 app: str = "worker") -> bool:
    """Stable, ``members`` members none of which is a dead one, every source partition owned."""
    try:
        state, owned = worker_members(config, app)
    except Exception:
        return False
    partitions = set().union(*owned.values()) if owned else set()
    return (state == "Stable" and len(owned) == members and not owned.keys() & gone
            and partitions == set(range(config.partitions)))


@dataclass(frozen=True)
class Kill:
    component: str
    at: int  # after this many events were acknowledged by the broker
    downtime: float  # seconds dead before the restart


def plan(seed: int, kills: int, events: int) -> list[Kill]:
    """Seeded: each component killed about kills/4 times, in random order, at random moments."""
    rng = random.Random(seed)
    order = [COMPONENTS[i % len(COMPONENTS)] for i in range(kills)]
    rng.shuffle(order)
    moments = sorted(rng.randrange(int(events * 0.02), int(events * 0.98)) for _ in order)
    return [Kill(name, at, round(rng.uniform(0.2, 3.0), 2)) for name, at in zip(order, moments, strict=True)]


@dataclass
class ChaosLog:
    kills: Counter[str] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)  # exits nobody asked for, then restarted
    restart_seconds: dict[str, list[float]] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


class Chaos(threading.Thread):
    """Runs the plan against a live stack while ``progress()`` counts the replay's acknowledged events.

    Between kills, and after the plan until halted, it restarts any service that exited."""

    def __init__(self, config: stack.StackConfig, kills: list[Kill], progress: Callable[[], int]) -> None:
        super().__init__(name="chaos", daemon=True)
        self.config = config
        self.kills = kills
        self.progress = progress
        self.log = ChaosLog()
        self.halt = threading.Event()
        self.planned_done = threading.Event()
        self.error: BaseException | None = None
        self.started = time.monotonic()

    def note(self, text: str) -> None:
        self.log.lines.append(f"{time.monotonic() - self.started:7.1f}s {text}")

    def run(self) -> None:
        try:
            for kill in self.kills:
                while self.progress() < kill.at and not self.halt.is_set():
                    self.supervise()
                    self.halt.wait(0.2)
                if self.halt.is_set():
                    return
                self.kill(kill)
            self.planned_done.set()
            while not self.halt.wait(1.0):
                self.supervise()
        except BaseException as exc:  # reported by the test
            self.error = exc
            self.planned_done.set()

    def kill(self, kill: Kill) -> None:
        name = kill.component
        gone = set(worker_members(self.config, name)[1]) if name in ("worker", "spikes") else set()
        assert stack.stop_service(self.config, name, signal.SIGKILL), f"{name} was not running"
        self.log.kills[name] += 1
        self.note(f"kill -9 {name} at {self.progress()} events; down {kill.downtime}s")
        time.sleep(kill.downtime)
        self.restart(name, gone)

    def restart(self, name: str, gone: set[str] | None = None) -> None:
        started = time.monotonic()
        stack.start_service(self.config, name, stack.service_argv(name, self.config))
        checks: dict[str, Callable[[], bool]] = {
            "broker": lambda: broker.is_ready(self.config.bootstrap),
            "sink": lambda: stack.sink_ready(self.config),
            "worker": lambda: worker_ready(self.config, gone or set()),
            "spikes": lambda: worker_ready(self.config, gone or set(), app="spikes"),
        }
        deadline = started + READY_TIMEOUT
        while not checks[name]():
            if self.halt.is_set():  # the test is over: start nothing more
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready {READY_TIMEOUT:.0f}s after its restart")
            if not running(self.config, name):  # it died while starting: start it again
                self.log.crashes[name] += 1
                self.note(f"{name} exited while starting; starting it again")
                stack.start_service(self.config, name, stack.service_argv(name, self.config))
            for other in COMPONENTS:
                if other != name and not running(self.config, other):
                    self._revive(other)
            time.sleep(0.3)
        took = time.monotonic() - started
        self.log.restart_seconds.setdefault(name, []).append(round(took, 1))
        self.note(f"{name} ready {took:.1f}s after its restart")

    def supervise(self) -> None:
        for name in COMPONENTS:
            if not running(self.config, name):
                self._revive(name)

    def _revive(self, name: str) -> None:
        self.log.crashes[name] += 1
        self.note(f"{name} exited by itself; restarting it")
        stack.start_service(self.config, name, stack.service_argv(name, self.config))
