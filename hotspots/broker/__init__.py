"""A real single-node Apache Kafka broker (KRaft), fetched from Maven Central and run on loopback."""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from importlib import resources
from pathlib import Path

from hotspots.settings import BrokerSettings


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
    path = root / "server.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return path


def _java_cmd(settings: BrokerSettings, main: str, *args: str, heap: bool = False) -> list[str]:
    log4j = resources.files("hotspots.broker") / "log4j.properties"
    cmd = ["java"]
    if heap:
        cmd += [f"-Xmx{settings.kafka_heap}", f"-Xms{settings.kafka_heap}", "-XX:+UseG1GC"]
    cmd += [f"-Dlog4j.configuration=file:{log4j}", "-cp", f"{jars_dir(settings)}/*", main, *args]
    return cmd


def format_storage(settings: BrokerSettings) -> None:
    """Format KRaft storage once; an already formatted data dir is kept (and its topics)."""
    config = write_config(settings)
    if (broker_dir(settings) / "data" / "meta.properties").exists():
        return
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    result = subprocess.run(
        _java_cmd(settings, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)),
        capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BrokerError(f"formatting KRaft storage failed:\n{result.stdout}{result.stderr}")


def server_command(settings: BrokerSettings) -> list[str]:
    return _java_cmd(settings, "kafka.Kafka", str(broker_dir(settings) / "server.properties"),
                     heap=True)


def is_ready(bootstrap: str) -> bool:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    except (KafkaError, OSError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()
