"""One frozen settings class per stage. Every field is read from ``HOTSPOTS_<FIELD>``.

``hotspots config`` prints each setting with its environment variable and value.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hotspots.contract import Admission


def _default_data_dir() -> Path:
    return Path.home() / ".hotspots"


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "hotspots"


SecurityProtocol = Literal["PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
_KAFKA_FILES = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")


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
                          "for district rollups (when none is given explicitly) and district spike "
                          "alerts. Unset: none.")
    cutover: date | None = Field(
        None, description="London date that splits the rollups between two writers: the live worker "
                          "folds each period that starts on or after it (the first week and month "
                          "from then on), and `hotspots backfill` builds the periods before it from "
                          "the raw events. Unset: the worker folds every period, and backfill refuses.")
    # Kafka client security, for every client of every stage (hotspots/kafka_security.py).
    security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", description="Kafka security protocol: PLAINTEXT, SASL_PLAINTEXT, SSL or SASL_SSL.")
    sasl_mechanism: SaslMechanism = Field(
        "SCRAM-SHA-512",
        description="SASL mechanism (SASL_* protocols): SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN.")
    sasl_username: str | None = Field(None, description="SASL user name (SASL_* protocols).")
    sasl_password: SecretStr | None = Field(
        None, description="SASL password (SASL_* protocols); never shown.")
    ssl_cafile: Path | None = Field(
        None, description="PEM CA certificates that verify the brokers (SSL protocols). Unset: system CAs.")
    ssl_certfile: Path | None = Field(
        None, description="PEM client certificate chain, for brokers that require client certificates.")
    ssl_keyfile: Path | None = Field(None, description="PEM private key of ssl_certfile.")
    ssl_check_hostname: bool = Field(
        True, description="Check that a broker's certificate names the host it was reached at.")

    @field_validator("accepted_area")
    @classmethod
    def _four_numbers(cls, value: str) -> str:
        parts = [float(p) for p in value.split(",")]
        if len(parts) != 4 or parts[0] >= parts[2] or parts[1] >= parts[3]:
            raise ValueError("accepted_area must be min_lon,min_lat,max_lon,max_lat")
        return value

    @field_validator("sasl_username", "sasl_password", *_KAFKA_FILES, "boundaries", "cutover", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose files pass unset variables as "" (${VAR:-}); an empty path would be ".".
        return None if value == "" else value

    @model_validator(mode="after")
    def _kafka_security(self) -> _Common:
        protocol = self.security_protocol
        if protocol in SASL_PROTOCOLS:
            password = self.sasl_password.get_secret_value() if self.sasl_password else ""
            if not self.sasl_username or not password:
                raise ValueError(f"security_protocol {protocol} needs sasl_username and sasl_password "
                                 "(HOTSPOTS_SASL_USERNAME, HOTSPOTS_SASL_PASSWORD)")
        elif self.sasl_username or self.sasl_password is not None:
            # Refused rather than ignored: the user expects to authenticate and would not.
            raise ValueError(f"sasl_username/sasl_password are set but security_protocol is {protocol}: "
                             "use SASL_PLAINTEXT or SASL_SSL")
        files = {name: getattr(self, name) for name in _KAFKA_FILES if getattr(self, name) is not None}
        if files and protocol not in TLS_PROTOCOLS:
            raise ValueError(f"{', '.join(files)} set but security_protocol is {protocol}: "
                             "use SSL or SASL_SSL")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("ssl_keyfile is set without ssl_certfile")
        for name, path in files.items():
            if not path.is_file():
                raise ValueError(f"{name} (HOTSPOTS_{name.upper()}): no such file {path}")
        return self

    def admission(self) -> Admission:
        lon0, lat0, lon1, lat1 = (float(p) for p in self.accepted_area.split(","))
        return Admission(area=(lon0, lat0, lon1, lat1),
                         max_future=timedelta(hours=self.max_future_hours))

    @property
    def events_topic(self) -> str:
        return f"{self.topic_prefix}.events.v1"

    @property
    def history_topic(self) -> str:
        """History for `hotspots backfill`, which loads it into the store (not the worker's)."""
        return f"{self.topic_prefix}.history.v1"

    @property
    def accepted_topic(self) -> str:
        """Events the worker validated and accepted, with their cells: the raw table's feed."""
        return f"{self.topic_prefix}.accepted.v1"

    @property
    def rollups_topic(self) -> str:
        return f"{self.topic_prefix}.rollups.v2"

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic_prefix}.deadletter.v1"

    @property
    def transitions_topic(self) -> str:
        """Emerging hot spot class changes (sinks.ehsa), keyed by cell."""
        return f"{self.topic_prefix}.transitions.v1"

    @property
    def alerts_topic(self) -> str:
        """Spike alerts (streams.alerts), keyed by alert id."""
        return f"{self.topic_prefix}.alerts.v1"

    @property
    def district_events_topic(self) -> str:
        """Internal: accepted events re-keyed by district for the district spike detector."""
        return f"{self.topic_prefix}.district-events.v1"

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
    # The local broker's client listener follows security_protocol (hotspots/broker/security.py).
    broker_ssl_certfile: Path | None = Field(
        None, description="Local broker's PEM certificate chain (SSL and SASL_SSL protocols).")
    broker_ssl_keyfile: Path | None = Field(
        None, description="Local broker's PEM private key, unencrypted PKCS#8 (SSL and SASL_SSL).")


class ProducerSettings(_Common):
    linger_ms: int = Field(20, ge=0, description="kafka-python linger.ms: batching delay.")
    compression: str = Field(
        "lz4", description="Producer compression codec: lz4 or gzip. kafka-python's gzip is "
                           "level 9: 10.8 us an event against 0.26 for lz4 (docs/bench.md).")
    bulk_linger_ms: int = Field(
        20, ge=0, description="Longest an event waits in a partial bulk record before it is sent "
                              "(producers with --bulk > 1). 0: partial bulks wait for flush().")


class WorkerSettings(_Common):
    # -v2: rollup states are kept in groups since rollups.v2; a new id makes an upgraded
    # worker fold the events topic again from the start instead of onto empty groups.
    app_id: str = Field("hotspots-worker-v2", description="Faust app id, also its consumer group.")
    commit_interval: float = Field(1.0, gt=0, description="Seconds between offset commits.")
    linger_ms: int = Field(20, ge=0, description="Worker producer linger: batching of changelog writes.")
    fold_batch: int = Field(500, ge=1, description="Records (single or bulk) the worker takes at once.")
    fold_events: int = Field(20000, ge=1,
                             description="Events folded together before their keys are written.")
    fold_within: float = Field(0.1, gt=0, description="Seconds the worker waits to fill a fold batch.")
    fetch_max_wait_ms: int = Field(
        100, ge=0, description="Longest the broker holds the worker's fetch for data (faust's "
                               "own 1,500 ms delayed folds by up to a second; streams/faust_app.py).")
    metrics_port: int = Field(0, ge=0, le=65535,
                              description="Port of the worker's Prometheus exporter (0: off).")
    spikes_metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of the spike alerts process's exporter (0: off).")
    metrics_host: str = Field("127.0.0.1", description="Bind address of the worker's Prometheus exporter.")
    spike_live_days: float = Field(
        7.0, gt=0, description="Spike alerts are raised only for events at most this many days "
                               "old when processed; older ones (backfills, replays) only update "
                               "the baselines.")

    @property
    def spikes_app_id(self) -> str:
        """The spike alerts app's id and consumer group (``python -m streams spikes``)."""
        return f"{self.app_id}-spikes"

    def group_source(self, app: str = "worker") -> tuple[str, str]:
        """(consumer group, source topic) of a stream process: "worker" (the rollups) or
        "spikes" (the spike alerts)."""
        if app == "worker":
            return self.app_id, self.events_topic
        if app == "spikes":
            return self.spikes_app_id, self.accepted_topic
        raise ValueError(f"no stream process {app!r}: 'worker' or 'spikes'")


class SinkSettings(_Common):
    clickhouse_url: str | None = Field(
        None, description="ClickHouse server URL (http://user:pass@host:8123). Unset: embedded chDB.")
    database: str = Field("hotspots", description="ClickHouse database name.")
    sink_group: str = Field("hotspots-sink", description="Consumer group of the sink.")
    backfill_group: str = Field("hotspots-backfill",
                                description="Consumer group of `hotspots backfill` on the history topic.")
    backfill_chunk: int = Field(500_000, ge=1,
                                description="Lines the backfill checks in one statement, then commits: "
                                            "planning a check takes about 0.35 s, so not too few.")
    backfill_spike_weeks: int = Field(
        26, ge=0, description="Weeks before the cutover whose events the backfill also sends to the worker, "
                              "for the spike agents' baselines (they compare a week with the 26 before it); "
                              "the worker folds none of their keys. 0: only events from the cutover on.")
    backfill_poll_records: int = Field(500, ge=1,
                                       description="Records (mostly bulk ones) a backfill poll takes.")
    batch_max: int = Field(50_000, ge=1, description="Rows buffered before a flush (fewer, larger parts).")
    flush_interval: float = Field(0.5, gt=0, description="Seconds between flushes of a partial batch.")
    flush_quiet: float = Field(
        0.05, ge=0, description="Flush a partial batch as soon as no record has come for this "
                                "many seconds (0: by size and interval only): prompt when the "
                                "input is light, large batches when it is heavy.")
    api_host: str = Field("127.0.0.1", description="HTTP API bind address.")
    api_port: int = Field(8765, description="HTTP API port.")
    ehsa_interval: float = Field(
        3600.0, ge=0, description="Seconds between emerging-hot-spot updates (0: off).")
    webhook_url: str | None = Field(
        None, description="POST each spike alert here as signed JSON (sinks.webhook). Unset: off.")
    webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key signing each webhook body; required with webhook_url.")

    @field_validator("webhook_url", "webhook_secret", mode="before")
    @classmethod
    def _empty_webhook_is_unset(cls, value: object) -> object:
        # As compose passes them unset (${VAR:-}): no webhook, and never an empty signing key.
        return None if value == "" else value

    # Access control and the audit log (sinks.auth, sinks.audit; README "Access, privacy and audit").
    api_tokens_file: Path | None = Field(
        None, description="API tokens file (SHA-256 hashes, names, scopes; mode 0600). "
                          "Unset: <data_dir>/run/api-tokens.json.")
    session_hours: float = Field(
        8.0, gt=0, le=24 * 7, description="Hours a map sign-in (session cookie) lasts: one shift.")
    audit_retention_days: int = Field(
        2190, ge=1, description="Days the audit log keeps an entry (ClickHouse TTL). 2190 = 6 "
                                "years: DPA 2018 s.62 sets no period; this covers the 6-year "
                                "limitation period for civil claims and internal or criminal "
                                "proceedings that start late.")

    @property
    def chdb_path(self) -> Path:
        return self.data_dir / "chdb"

    @property
    def tokens_path(self) -> Path:
        return self.api_tokens_file or self.run_dir / "api-tokens.json"


class ClientSettings(_Common):
    """What the CLI sends with each query to the API (and records when it opens the store)."""

    api_token: SecretStr | None = Field(
        None, description="Bearer token for the API. Unset: <data_dir>/run/operator-token, the "
                          "admin token the sink writes for its operator on first start.")
    justification: str | None = Field(
        None, description="Why you are querying (e.g. a case or tasking reference): recorded "
                          "in the audit log with each query. Required; or pass --justification.")


STAGE_SETTINGS: tuple[type[_Common], ...] = (
    BrokerSettings, ProducerSettings, WorkerSettings, SinkSettings, ClientSettings)
