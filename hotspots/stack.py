"""Start, check and stop the local stack (broker, worker, sink+API) as background processes.

State lives in ``<data_dir>/run``: one pid file per service and ``stack.json`` with the
ports, so that `status`, `wait`, queries and `down` find a stack started with other flags.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from hotspots import broker
from hotspots.kafka_security import kafka_kwargs
from hotspots.settings import BrokerSettings, WorkerSettings
from hotspots.topics import ensure_topics

SERVICES = ("broker", "worker", "spikes", "sink")


class StackError(RuntimeError):
    pass


@dataclass(frozen=True)
class StackConfig:
    data_dir: str
    kafka_port: int
    controller_port: int
    api_port: int
    topic_prefix: str
    partitions: int
    # Set when the broker and API are not the local stack's (e.g. inside docker-compose).
    bootstrap_servers: str = ""
    api_host: str = "127.0.0.1"
    # The worker's Prometheus exporter on 127.0.0.1 (0: off), the spike alerts process's on the
    # next port. The sink serves /metrics on api_port.
    metrics_port: int = 0

    @property
    def spikes_metrics_port(self) -> int:
        return self.metrics_port + 1 if self.metrics_port else 0

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    @property
    def api_url(self) -> str:
        host = "127.0.0.1" if self.api_host in ("", "0.0.0.0") else self.api_host
        return f"http://{host}:{self.api_port}"

    def env(self) -> dict[str, str]:
        """Environment for every child process: one source of truth for ports and paths."""
        return {**os.environ,
                "HOTSPOTS_DATA_DIR": self.data_dir,
                "HOTSPOTS_BOOTSTRAP": self.bootstrap,
                "HOTSPOTS_KAFKA_PORT": str(self.kafka_port),
                "HOTSPOTS_CONTROLLER_PORT": str(self.controller_port),
                "HOTSPOTS_API_PORT": str(self.api_port),
                "HOTSPOTS_TOPIC_PREFIX": self.topic_prefix,
                "HOTSPOTS_PARTITIONS": str(self.partitions),
                "HOTSPOTS_METRICS_PORT": str(self.metrics_port),
                "HOTSPOTS_SPIKES_METRICS_PORT": str(self.spikes_metrics_port)}

    @property
    def run_dir(self) -> Path:
        return Path(self.data_dir) / "run"

    def save(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "stack.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, data_dir: Path) -> StackConfig | None:
        path = data_dir / "run" / "stack.json"
        return cls(**json.loads(path.read_text())) if path.exists() else None


def _pid(config: StackConfig, name: str) -> int | None:
    path = config.run_dir / f"{name}.pid"
    if not path.exists():
        return None
    pid = int(path.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    # A zombie child (ours, exited, not reaped) is not running.
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"):
        return None
    return pid


def start_service(config: StackConfig, name: str, argv: list[str]) -> int:
    logs = Path(config.data_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=config.env(), start_new_session=True, cwd=config.data_dir)
    (config.run_dir / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def service_argv(name: str, config: StackConfig) -> list[str]:
    if name == "broker":
        return broker.server_command(BrokerSettings(**_settings_kwargs(config)))
    if name in ("worker", "spikes"):
        return [sys.executable, "-m", "streams", name]
    return [sys.executable, "-m", "sinks", "serve"]


def _settings_kwargs(config: StackConfig) -> dict[str, Any]:
    return {"data_dir": Path(config.data_dir), "bootstrap": config.bootstrap,
            "kafka_port": config.kafka_port, "controller_port": config.controller_port,
            "topic_prefix": config.topic_prefix, "partitions": config.partitions}


def worker_ready(config: StackConfig, members: int = 1, app: str = "worker") -> bool:
    """The worker's group (``app`` "spikes": the spike alerts app's) is stable, with at least
    ``members`` members, and some member owns its source topic."""
    from kafka import KafkaAdminClient

    settings = WorkerSettings(**_settings_kwargs(config))
    group_id, events = settings.group_source(app)
    try:
        admin = KafkaAdminClient(**kafka_kwargs(settings), request_timeout_ms=3000)
    except Exception:
        return False
    try:
        group = admin.describe_groups([group_id])[group_id]
        assigned = {a["topic"] for m in group["members"]
                    for a in m["member_assignment"]["assigned_partitions"]}
        return (group["group_state"] == "Stable" and len(group["members"]) >= members
                and events in assigned)
    except Exception:
        return False
    finally:
        admin.close()


def spikes_ready(config: StackConfig) -> bool:
    return worker_ready(config, app="spikes")


def sink_ready(config: StackConfig) -> bool:
    try:
        return httpx.get(f"{config.api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _await(what: str, check: Callable[[StackConfig], bool], config: StackConfig, name: str,
           timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _pid(config, name) is None:
            log = Path(config.data_dir) / "logs" / f"{name}.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise StackError(f"{name} exited during start-up; last log lines:\n{tail}")
        if check(config):
            return
        time.sleep(0.3)
    raise StackError(f"{what} not ready after {timeout:.0f}s (see {config.data_dir}/logs/{name}.log)")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _ports(config: StackConfig, name: str) -> list[int]:
    if name == "broker":
        return [config.kafka_port, config.controller_port]
    if name == "worker":
        return [config.metrics_port] if config.metrics_port else []
    if name == "spikes":
        return [config.spikes_metrics_port] if config.spikes_metrics_port else []
    return [config.api_port] if name == "sink" else []


def up(config: StackConfig, timeout: float = 120.0,
       echo: Callable[[str], object] = print) -> dict[str, float]:
    """Start whatever is not running; return each service's start time in seconds."""
    bsettings = BrokerSettings(**_settings_kwargs(config))
    Path(config.data_dir).mkdir(parents=True, exist_ok=True)
    config.save()
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    broker.fetch_jars(bsettings)
    timings["fetch_jars"] = time.monotonic() - t0
    checks = {"broker": lambda c: broker.is_ready(c.bootstrap, bsettings), "worker": worker_ready,
              "spikes": spikes_ready, "sink": sink_ready}
    # The two faust apps start side by side: each takes ~10-30 s to join its group.
    for names in (("broker",), ("worker", "spikes"), ("sink",)):
        started: dict[str, float] = {}
        for name in names:
            if _pid(config, name) is not None:
                echo(f"{name}: already running")
                continue
            busy = [p for p in _ports(config, name) if not _port_free(p)]
            if busy:
                raise StackError(f"{name}: port {busy[0]} on 127.0.0.1 is taken by another "
                                 "process; choose other ports (see `hotspots up --help`)")
            started[name] = time.monotonic()
            if name == "broker":
                broker.format_storage(bsettings)
            start_service(config, name, service_argv(name, config))
        for name, t0 in started.items():
            _await(name, checks[name], config, name, timeout)
            if name == "broker":
                ensure_topics(bsettings)
            timings[name] = time.monotonic() - t0
            echo(f"{name}: ready in {timings[name]:.1f}s")
    return timings


def scale_workers(config: StackConfig, total: int, timeout: float = 120.0) -> list[str]:
    """Start worker processes until ``total`` share the worker's group (faust splits the
    partitions between them); `down` stops them too. Returns the added ones' names."""
    names = [f"worker{i}" for i in range(2, total + 1)]
    # Same data dir (memory tables: faust keeps nothing there); no exporter, whose port
    # is the first worker's.
    quiet = replace(config, metrics_port=0)
    for name in names:
        if _pid(config, name) is None:
            start_service(quiet, name, service_argv("worker", quiet))
    for name in names:
        _await(f"{total} workers", lambda c: worker_ready(c, total), config, name, timeout)
    return names


def added_workers(config: StackConfig) -> list[str]:
    """The names of the workers scale_workers started."""
    return sorted(p.stem for p in config.run_dir.glob("worker?*.pid"))


def status(config: StackConfig) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for name in SERVICES:
        pid = _pid(config, name)
        out[name] = {"pid": pid, "running": pid is not None}
    out["broker"]["healthy"] = out["broker"]["running"] and broker.is_ready(config.bootstrap)
    out["sink"]["healthy"] = out["sink"]["running"] and sink_ready(config)
    out["worker"]["healthy"] = out["worker"]["running"] and worker_ready(config)
    out["spikes"]["healthy"] = out["spikes"]["running"] and spikes_ready(config)
    return out


def stop_service(config: StackConfig, name: str, sig: int = signal.SIGTERM,
                 timeout: float = 30.0) -> bool:
    pid = _pid(config, name)
    if pid is None:
        return False
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid(config, name) is not None:
        time.sleep(0.1)
    if _pid(config, name) is not None:
        os.killpg(pid, signal.SIGKILL)
        while _pid(config, name) is not None:
            time.sleep(0.1)
    (config.run_dir / f"{name}.pid").unlink(missing_ok=True)
    return True


def down(config: StackConfig, echo: Callable[[str], object] = print) -> None:
    # Consumers first, so they commit and leave their groups while the broker is still up.
    for name in ("sink", "spikes", *added_workers(config), "worker", "broker"):
        if stop_service(config, name):
            echo(f"{name}: stopped")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def throwaway(data_dir: Path, prefix: str, partitions: int = 4,
              timeout: float = 240) -> Iterator[StackConfig]:
    """A whole stack on free ports with its own topics and store, stopped on exit: for tests
    and benchmarks that must not meet a developer's stack or each other."""
    config = StackConfig(str(data_dir), free_port(), free_port(), free_port(),
                         topic_prefix=f"{prefix}-{uuid.uuid4().hex[:8]}", partitions=partitions)
    try:
        up(config, timeout=timeout, echo=lambda _msg: None)
        yield config
    finally:
        down(config, echo=lambda _msg: None)
