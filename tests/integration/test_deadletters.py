"""Malformed records, through the CLI and straight onto the topic: each is dead-lettered with
its reason, and every valid record beside them is counted exactly once."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest
from kafka import KafkaProducer

from hotspots.contract import Arrest, encode_event
from hotspots.kafka_security import kafka_kwargs
from hotspots.settings import ProducerSettings
from tests.integration.conftest import cli_json, run_cli

pytestmark = pytest.mark.integration

BASE = {"kind": "arrest", "occurred_at": "2015-03-10T09:00:00+00:00", "lat": 51.7356,
        "lon": 0.4685, "force": "essex", "charged": True}


def bad_records(tag: str) -> list[tuple[bytes, str]]:
    def rec(**changes: object) -> bytes:
        body = {**BASE, "event_id": f"{tag}-bad", **changes}
        return orjson.dumps({k: v for k, v in body.items() if v is not ...})

    return [
        (b'{"kind": "arrest",', "not_json"),
        (b'{"kind": NaN}', "not_json"),
        (b"[1, 2, 3]", "not_object"),
        (b'"just a string"', "not_object"),
        (rec(kind="burglary"), "unknown_kind"),
        (rec(kind=...), "missing_field"),
        (rec(event_id=...), "missing_field"),
        (rec(charged="maybe"), "bad_field"),
        (rec(occurred_at="2015-03-10T09:00:00"), "naive_timestamp"),
        (rec(occurred_at="yesterday"), "bad_timestamp"),
        (rec(occurred_at=1426000000), "bad_timestamp"),
        (rec(occurred_at="2099-01-01T00:00:00+00:00"), "future_timestamp"),
        (rec(occurred_at="1965-03-10T09:00:00+00:00"), "too_old"),
        (rec(lat=95.0), "bad_coordinates"),
        (rec(lon=-200.0), "bad_coordinates"),
        (rec(lat=48.8566, lon=2.3522), "outside_area"),
        (rec(force="x" * 20000), "oversized"),
        (rec(surname="Smith"), "personal_data"),
        (rec(date_of_birth="1990-01-01"), "personal_data"),
        (rec(colour="red"), "unexpected_field"),
        (rec(v=2), "unsupported_version"),
        (rec(event_id="has spaces"), "bad_field"),
        (rec(kind="seizure", charged=..., drugs_grams=-1.0), "bad_field"),
        (rec(kind="seizure", charged=..., cash_gbp=10.005), "bad_field"),
        (rec(time_precision="year"), "bad_field"),
        (b"{}", "missing_field"),
    ]


def valid_events(tag: str, n: int) -> list[Arrest]:
    return [Arrest(event_id=f"{tag}-ok-{i}", occurred_at=datetime(2015, 3, 2 + i % 20, 12, tzinfo=UTC),
                   lat=51.7356 + i * 0.001, lon=0.4685, force="essex", charged=i % 2 == 0)
            for i in range(n)]


def dlq_counts(config) -> Counter:
    return Counter({r["reason"]: r["records"] for r in cli_json(config, "query", "dlq")})


def arrests_2015(config) -> int:
    return cli_json(config, "query", "summary", "--from", "2015-01-01", "--to", "2015-12-31")["arrests"]


def test_malformed_records_are_dead_lettered_with_their_reason(live_stack, tmp_path) -> None:
    run_cli(live_stack, "wait", "--timeout", "300")
    before = dlq_counts(live_stack)
    expected: Counter = Counter()

    # 1. Through the CLI: refused at the producer, dead-lettered there.
    cli_bad = bad_records("cli")
    good_cli = valid_events("cli", 30)
    lines = [encode_event(e) for e in good_cli[:15]] + [raw for raw, _ in cli_bad]
    lines += [encode_event(e) for e in good_cli[15:]]
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b"\n".join(lines) + b"\n")
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "hotspots.cli", "produce", "jsonl", str(feed),
                           "--data-dir", live_stack.data_dir], capture_output=True, text=True, check=False)
    assert proc.returncode == 3, proc.stderr  # some records were refused
    report = json.loads(proc.stdout)
    assert report["produced"] == 30 and report["dead_lettered"] == len(cli_bad)
    expected.update(reason for _, reason in cli_bad)

    # 2. Straight onto the topic with a raw client: refused by the worker.
    raw_bad = bad_records("raw")
    good_raw = valid_events("raw", 30)
    producer = KafkaProducer(**kafka_kwargs(ProducerSettings(bootstrap=live_stack.bootstrap)), acks="all")
    topic = f"{live_stack.topic_prefix}.events.v1"
    for i, (raw, _) in enumerate(raw_bad):
        producer.send(topic, value=encode_event(good_raw[i]) if i < len(good_raw) else b"")
        producer.send(topic, value=raw)
    for ev in good_raw[len(raw_bad):]:
        producer.send(topic, value=encode_event(ev))
    producer.flush()
    run_cli(live_stack, "wait", "--timeout", "300")
    # The same event id with other content, once the original is counted. (Sent earlier, with
    # no key, the two could reach the id's partition in either order: the first one wins.)
    producer.send(topic, value=encode_event(good_raw[0].model_copy(update={"charged": False})))
    producer.flush()
    producer.close()
    expected.update(reason for _, reason in raw_bad)
    expected["duplicate_conflict"] += 1
    if len(raw_bad) > len(good_raw):
        expected["not_json"] += len(raw_bad) - len(good_raw)  # the empty fillers

    run_cli(live_stack, "wait", "--timeout", "300")
    assert dlq_counts(live_stack) - before == expected
    assert arrests_2015(live_stack) == 60
    summary = cli_json(live_stack, "query", "summary", "--from", "2015-01-01", "--to", "2015-12-31")
    assert summary["charged"] == 30  # the conflicting copy of raw-ok-0 did not replace it
