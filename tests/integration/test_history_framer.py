"""`produce jsonl --history` frames a file's lines as they came onto the history topic, on the
real broker: every line in exactly one record, in order, records within Kafka's limit, blank
lines skipped and an oversized line dead-lettered with the reason the backfill would give."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer

from hotspots.contract import BULK_CONTENT_TYPE, MAX_RECORD_BYTES
from hotspots.kafka_security import kafka_kwargs
from hotspots.settings import ProducerSettings
from hotspots.topics import end_offsets, ensure_topics
from producers.history import HISTORY_BULK, HISTORY_BULK_BYTES, HistoryFramer
from tests.shared_data import ESSEX_CSVS, needs

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(live_stack) -> ProducerSettings:
    """Topics of their own (uuid prefix) on the session's broker: no backfill reads them."""
    settings = ProducerSettings(bootstrap=live_stack.bootstrap, topic_prefix=f"hist-{uuid.uuid4().hex[:8]}")
    ensure_topics(settings)
    return settings


def read_all(settings: ProducerSettings, topic: str) -> list[Any]:
    total = sum(end_offsets(settings.bootstrap, [topic]).values())
    consumer = KafkaConsumer(topic, **kafka_kwargs(settings), auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=10000)
    got = []
    for record in consumer:
        got.append(record)
        if len(got) == total:
            break
    consumer.close()
    assert len(got) == total
    return got


def test_lines_are_framed_in_order_and_oversized_ones_dead_lettered(settings, tmp_path) -> None:
    lines = [f'{{"n": {i}, "pad": "{"x" * 300}"}}'.encode() for i in range(25)]
    oversized = b'{"pad": "' + b"y" * MAX_RECORD_BYTES + b'"}'
    source = tmp_path / "history.jsonl"
    # CRLF endings, blank lines and a line over the contract's limit, as a real file may have.
    source.write_bytes(b"\r\n".join([*lines[:10], b"", b"  ", oversized, *lines[10:]]) + b"\r\n")
    out = subprocess.run([sys.executable, "-m", "hotspots.cli", "produce", "jsonl", str(source),
                          "--history", "--bulk", "7", "--data-dir", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HOTSPOTS_BOOTSTRAP": settings.bootstrap,
                              "HOTSPOTS_TOPIC_PREFIX": settings.topic_prefix})
    assert out.returncode == 3, out.stderr  # a line was dead-lettered
    assert json.loads(out.stdout)["produced"] == 25 and json.loads(out.stdout)["dead_lettered"] == 1
    # In the order sent: the records' partitions in turn.
    records = sorted(read_all(settings, settings.history_topic), key=lambda r: (r.offset, r.partition))
    assert [len(r.value.split(b"\n")) for r in records] == [7, 7, 7, 4]
    assert [r.partition for r in records] == [0, 1, 2, 3]
    assert all(dict(r.headers)["content-type"] == BULK_CONTENT_TYPE.encode() for r in records)
    assert [line for r in records for line in r.value.split(b"\n")] == lines
    [letter] = read_all(settings, settings.dlq_topic)
    letter = orjson.loads(letter.value)
    assert (letter["reason"], letter["source"]) == ("oversized", f"jsonl:{source}:13")


def test_a_record_stays_under_kafkas_limit_whatever_the_line_count(settings) -> None:
    line = b'{"pad": "' + b"z" * (MAX_RECORD_BYTES - 20) + b'"}'
    with HistoryFramer(settings, "test", bulk=10000) as framer:
        framer.add([line] * 200)
        framer.flush()
    assert framer.acked == 200
    records = read_all(settings, settings.history_topic)
    assert len(records) > 1 and all(len(r.value) <= HISTORY_BULK_BYTES for r in records)
    assert sum(len(r.value.split(b"\n")) for r in records) == 200


MONTH = ESSEX_CSVS / "2025-01-essex-street.csv.gz"


@needs(MONTH)
def test_replay_police_uk_to_the_history_topic_takes_the_history_records(settings, tmp_path) -> None:
    out = subprocess.run([sys.executable, "-m", "hotspots.cli", "replay", "police-uk", str(MONTH),
                          "--history", "--data-dir", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HOTSPOTS_BOOTSTRAP": settings.bootstrap,
                              "HOTSPOTS_TOPIC_PREFIX": settings.topic_prefix})
    assert out.returncode == 0, out.stderr
    acknowledged = json.loads(out.stdout)["acknowledged"]
    records = read_all(settings, settings.history_topic)
    sizes = [len(r.value.split(b"\n")) for r in records]
    assert sum(sizes) == acknowledged > 4 * HISTORY_BULK
    # Records of the history's size (the live feed's are 500 events at most), by cell's partition.
    assert max(sizes) == HISTORY_BULK and all(len(r.value) <= HISTORY_BULK_BYTES for r in records)
    assert all(dict(r.headers)["content-type"] == BULK_CONTENT_TYPE.encode() for r in records)
