"""A real single-node Apache Kafka broker (KRaft), fetched from Maven Central and run on loopback."""

from __future__ import annotations

import base64
import contextlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from hotspots.broker import security
from hotspots.kafka_security import kafka_kwargs
from hotspots.settings import BrokerSettings, _Common


class BrokerError(RuntimeError):
    pass


def jars_dir(settings: BrokerSettings) -> Path:
    return settings.cache_dir / f"kafka-{settings.kafka_version}" / "libs"


def fetch_jars(settings: BrokerSettings) -> Path:
    """Copy the broker and its runtime dependencies into the cache (once per version)."""
    libs = jars_dir(settings)
    done = libs.parent / ".complete"
    if done.exists():
        return libs
    if shutil.which("mvn") is None:
        raise BrokerError("mvn not found: install Maven (Debian package 'maven') to fetch Kafka")
    staging = libs.parent / f".staging-{uuid.uuid4().hex}"
    pom = resources.files("hotspots.broker") / "pom.xml"
    with resources.as_file(pom) as pom_path:
        result = subprocess.run(
            ["mvn", "-B", "-q", "-f", str(pom_path), f"-Dkafka.version={settings.kafka_version}",
             "dependency:copy-dependencies", f"-DoutputDirectory={staging}"],
            capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        raise BrokerError(f"mvn could not fetch Kafka {settings.kafka_version}:\n"
                          f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    if libs.exists():
        shutil.rmtree(libs)
    staging.rename(libs)
    done.touch()
    return libs


@contextlib.contextmanager
def _as_broker_error() -> Iterator[None]:
    try:
        yield
    except security.SecurityConfigError as exc:
        raise BrokerError(str(exc)) from None


def broker_dir(settings: BrokerSettings) -> Path:
    return settings.data_dir / "kafka"


def write_config(settings: BrokerSettings) -> Path:
    root = broker_dir(settings)
    (root / "data").mkdir(parents=True, exist_ok=True)
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{settings.controller_port}",
        "listeners": (f"PLAINTEXT://127.0.0.1:{settings.kafka_port},"
                      f"CONTROLLER://127.0.0.1:{settings.controller_port}"),
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{settings.kafka_port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(root / "data"),
        "num.partitions": str(settings.partitions),
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        # Keep every event: replays and reconciliation need the history.
        "log.retention.hours": "-1",
    }
    with _as_broker_error():
        props |= security.listener_props(settings, root)  # nothing for PLAINTEXT
    path = root / "server.properties"
    # Owner-only: with SASL it holds the JAAS passwords.
    security.write_private(path, "".join(f"{k}={security.prop_value(v)}\n" for k, v in props.items()))
    return path


def _java_cmd(settings: BrokerSettings, main: str, *args: str, heap: bool = False) -> list[str]:
    log4j = resources.files("hotspots.broker") / "log4j.properties"
    cmd = ["java"]
    if heap:
        cmd += [f"-Xmx{settings.kafka_heap}", f"-Xms{settings.kafka_heap}", "-XX:+UseG1GC"]
    cmd += [f"-Dlog4j.configuration=file:{log4j}", "-cp", f"{jars_dir(settings)}/*", main, *args]
    return cmd


def _argfile_quote(arg: str) -> str:
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def new_cluster_id() -> str:
    """A random KRaft cluster id, never one starting with "-": StorageTool would take it for an
    option and refuse to format (1 fresh stack in 64). Kafka's own Uuid.randomUuid avoids them too."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def format_storage(settings: BrokerSettings) -> None:
    """Format KRaft storage once; an already formatted data dir is kept (and its topics)."""
    root = broker_dir(settings)
    formatted = (root / "data" / "meta.properties").exists()
    if formatted:  # checked before write_config replaces the JAAS passwords
        with _as_broker_error():
            security.check_formatted(settings, root)
    config = write_config(settings)
    if formatted:
        return
    with _as_broker_error():
        scram = security.scram_format_args(settings, root)
    cmd = _java_cmd(settings, "kafka.tools.StorageTool", "format", "-t", new_cluster_id(), "-c", str(config),
                    *scram)
    # A salted SCRAM password authenticates as well as the password: keep it off the command
    # line (other users can read it in /proc) in an owner-only java @argfile.
    argfile = root / ".format-args"
    security.write_private(argfile, "\n".join(_argfile_quote(arg) for arg in cmd[1:]) + "\n")
    try:
        result = subprocess.run([cmd[0], f"@{argfile}"], capture_output=True, text=True, check=False)
    finally:
        argfile.unlink(missing_ok=True)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        for arg in scram[1::2]:
            output = output.replace(arg, "<SCRAM credential>")
        raise BrokerError(f"formatting KRaft storage failed:\n{output}")


def server_command(settings: BrokerSettings) -> list[str]:
    return _java_cmd(settings, "kafka.Kafka", str(broker_dir(settings) / "server.properties"),
                     heap=True)


def is_ready(bootstrap: str, settings: _Common | None = None) -> bool:
    """The broker answers at ``bootstrap``, with the security of ``settings`` (default: environment)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(**kafka_kwargs(settings or _Common(), bootstrap),
                                 request_timeout_ms=3000, bootstrap_timeout_ms=3000)
    except (KafkaError, OSError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()
