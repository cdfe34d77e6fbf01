"""Prometheus metrics of every stage, defined once in the default registry.

Each stage labels its samples with ``stage`` ("producer", "worker", "sink"). The worker
exports them on ``HOTSPOTS_METRICS_PORT`` (:func:`start_exporter`); the sink serves them at
``/metrics`` on its HTTP API; the producer CLI only counts (nothing scrapes a short run).
Alert and recording rules: ``dashboards/prometheus/rules.yml``.

Hot loops count into a local dict and call :func:`add_counts` once per batch: one
``inc(n)`` per label, not one per event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

EVENTS_IN = Counter("hotspots_events_in", "Records a stage received, by event kind.",
                    ["stage", "kind"])
EVENTS_OUT = Counter("hotspots_events_out", "Events a stage passed on (sent, accepted), by kind.",
                     ["stage", "kind"])
INVALID = Counter("hotspots_invalid", "Records a stage refused to the dead-letter topic, by reason.",
                  ["stage", "reason"])
BATCH_SIZE = Histogram("hotspots_batch_size", "Records per processed batch.", ["stage"],
                       buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 20000))
PROCESSING_LAG = Gauge("hotspots_processing_lag_seconds",
                       "Now minus the Kafka timestamp of the newest record of the last batch.",
                       ["stage"])
SINK_LAG = Gauge("hotspots_sink_lag_seconds",
                 "Now minus the Kafka timestamp of the newest record of the last flush.")
SINK_FLUSH = Histogram("hotspots_sink_flush_seconds",
                       "Duration of a sink flush to the store, retries included.",
                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
SINK_ROWS = Counter("hotspots_sink_rows", "Rows the sink wrote to the store, by table.", ["table"])
ALERTS = Counter("hotspots_alerts", "Spike alerts the worker raised (streams.alerts).",
                 ["kind", "method", "area_type"])
SPIKES_SILENT = Counter("hotspots_spikes_silent",
                        "Spikes found in events too old to page for (backfill, replays): not raised.",
                        ["area_type"])
OPEN_ALERTS = Gauge("hotspots_spike_open_alerts",
                    "Areas and kinds whose spike alert is open in the current London week.",
                    ["area_type"])
WEBHOOK = Counter("hotspots_webhook_deliveries",
                  "Spike alerts posted to HOTSPOTS_WEBHOOK_URL, by outcome "
                  "(delivered, failed after retries, stale, duplicate).", ["outcome"])
WEBHOOK_RETRIES = Counter("hotspots_webhook_retries", "Webhook attempts that are retried.")
UP = Gauge("hotspots_up", "1 while the stage's process runs.", ["stage"])

UNKNOWN_KIND = "unknown"  # the kind label of a record refused before its kind could be trusted


def add_counts(counter: Counter, stage: str, counts: Mapping[str, int]) -> None:
    """``counter{stage, <label>}`` += n for each (label, n) of a batch's local counts."""
    for label, n in counts.items():
        if n:
            counter.labels(stage, label).inc(n)


def observe_lag(stage: str, newest_timestamp: float | None, now: float | None = None) -> None:
    """Set the stage's processing lag from the newest record's Kafka timestamp (seconds)."""
    if newest_timestamp:
        lag = (time.time() if now is None else now) - newest_timestamp
        PROCESSING_LAG.labels(stage).set(max(lag, 0.0))


def mark_up(stage: str) -> None:
    UP.labels(stage).set(1)


def start_exporter(stage: str, port: int, addr: str = "127.0.0.1") -> bool:
    """Serve the default registry on ``addr:port`` (0: off); True when it serves.

    A port in use is logged, not raised: the stage keeps processing without an exporter
    (Prometheus then reports its target down, which the WorkerDown alert catches).
    """
    mark_up(stage)
    if port == 0:
        return False
    try:
        start_http_server(port, addr)
    except OSError as exc:
        log.error("metrics exporter not started on %s:%d: %s", addr, port, exc)
        return False
    log.info("metrics exporter on http://%s:%d/metrics", addr, port)
    return True
