"""One frozen settings class per stage. Every field is read from ``HOTSPOTS_<FIELD>``.

``hotspots config`` prints each setting with its environment variable and value.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hotspots.contract import Admission


def _default_data_dir() -> Path:
    return Path.home() / ".hotspots"


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "hotspots"


class _Common(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOTSPOTS_", frozen=True, extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir,
                           description="Where the stack keeps broker logs, the store and pid files.")
    bootstrap: str = Field("127.0.0.1:19092", description="Kafka bootstrap servers.")
    topic_prefix: str = Field("hotspots", description="Prefix of every topic the stack uses.")
    partitions: int = Field(4, ge=1, description="Partitions of the events topic and of the worker's tables.")
    accepted_area: str = Field("-8.7,49.8,1.8,60.9",
                               description="Accepted area min_lon,min_lat,max_lon,max_lat (default: UK).")
    max_future_hours: float = Field(24.0, ge=0,
                                    description="Hours past now an event's time may be before refusal.")
    boundaries: Path | None = Field(
        None, description="District outlines (GeoJSON/GeoPackage, a `name` property per polygon) "
                          "for district rollups when none is given explicitly. Unset: none.")

    @field_validator("accepted_area")
    @classmethod
    def _four_numbers(cls, value: str) -> str:
        parts = [float(p) for p in value.split(",")]
        if len(parts) != 4 or parts[0] >= parts[2] or parts[1] >= parts[3]:
            raise ValueError("accepted_area must be min_lon,min_lat,max_lon,max_lat")
        return value

    def admission(self) -> Admission:
        lon0, lat0, lon1, lat1 = (float(p) for p in self.accepted_area.split(","))
        return Admission(area=(lon0, lat0, lon1, lat1),
                         max_future=timedelta(hours=self.max_future_hours))

    @property
    def events_topic(self) -> str:
        return f"{self.topic_prefix}.events.v1"

    @property
    def accepted_topic(self) -> str:
        """Events the worker validated and accepted, with their cells: the raw table's feed."""
        return f"{self.topic_prefix}.accepted.v1"

    @property
    def rollups_topic(self) -> str:
        return f"{self.topic_prefix}.rollups.v1"

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic_prefix}.deadletter.v1"

    @property
    def transitions_topic(self) -> str:
        """Emerging hot spot class changes (sinks.ehsa), keyed by cell."""
        return f"{self.topic_prefix}.transitions.v1"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"


class BrokerSettings(_Common):
    """The local single-node KRaft broker that `hotspots up` runs without Docker."""

    kafka_version: str = Field("3.9.1", description="Apache Kafka release fetched from Maven Central.")
    kafka_port: int = Field(19092, description="Broker listener port on 127.0.0.1.")
    controller_port: int = Field(19093, description="KRaft controller port on 127.0.0.1.")
    kafka_heap: str = Field("512m", description="Broker JVM heap (-Xmx and -Xms).")
    cache_dir: Path = Field(default_factory=_default_cache_dir,
                            description="Cache of the broker jars, outside the work tree.")


class ProducerSettings(_Common):
    linger_ms: int = Field(20, ge=0, description="kafka-python linger.ms: batching delay.")
    compression: str = Field("gzip", description="Producer compression codec.")


class WorkerSettings(_Common):
    app_id: str = Field("hotspots-worker", description="Faust app id, also its consumer group.")
    commit_interval: float = Field(1.0, gt=0, description="Seconds between offset commits.")
    linger_ms: int = Field(20, ge=0, description="Worker producer linger: batching of changelog writes.")
    fold_batch: int = Field(2000, ge=1, description="Events folded together before their keys are written.")
    fold_within: float = Field(0.1, gt=0, description="Seconds the worker waits to fill a fold batch.")
    metrics_port: int = Field(0, ge=0, le=65535,
                              description="Port of the worker's Prometheus exporter (0: off).")
    metrics_host: str = Field("127.0.0.1", description="Bind address of the worker's Prometheus exporter.")


class SinkSettings(_Common):
    clickhouse_url: str | None = Field(
        None, description="ClickHouse server URL (http://user:pass@host:8123). Unset: embedded chDB.")
    database: str = Field("hotspots", description="ClickHouse database name.")
    sink_group: str = Field("hotspots-sink", description="Consumer group of the sink.")
    batch_max: int = Field(5000, ge=1, description="Rows buffered before a flush.")
    flush_interval: float = Field(0.5, gt=0, description="Seconds between flushes of a partial batch.")
    api_host: str = Field("127.0.0.1", description="HTTP API bind address.")
    api_port: int = Field(8765, description="HTTP API port.")
    ehsa_interval: float = Field(
        3600.0, ge=0, description="Seconds between emerging-hot-spot updates (0: off).")

    @property
    def chdb_path(self) -> Path:
        return self.data_dir / "chdb"


STAGE_SETTINGS: tuple[type[_Common], ...] = (
    BrokerSettings, ProducerSettings, WorkerSettings, SinkSettings)
