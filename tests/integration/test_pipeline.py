"""Events with known ground truth go through the real broker, worker and sink."""

from __future__ import annotations

from collections import Counter

import pytest
from kafka import KafkaProducer

from hotspots.contract import encode_event
from hotspots.kafka_security import kafka_kwargs
from hotspots.settings import ProducerSettings
from producers.publisher import EventPublisher
from tests.integration.conftest import cli_json, run_cli
from tests.integration.truth import random_events, weekly_truth

pytestmark = pytest.mark.integration


def _cells(config, year: int, res: int) -> Counter:
    rows = cli_json(config, "query", "cells", "--from", f"{year}-01-01", "--to", f"{year}-12-31",
                    "--res", str(res))
    got: Counter = Counter()
    for row in rows:
        key = (row["cell"], row["period_start"], row["kind"])
        assert key not in got, f"duplicate row for {key}"
        got[key] = row["count"]
    return got


def test_query_cells_equals_ground_truth_for_every_cell_week_and_kind(live_stack) -> None:
    year = 2019
    events = random_events(year, 3000, tag="e2e", seed=7)
    settings = ProducerSettings(bootstrap=live_stack.bootstrap, topic_prefix=live_stack.topic_prefix)
    with EventPublisher(settings, source="test:e2e") as publisher:
        assert publisher.send_all(events[:2700]) == 2700
        # The same events again, as a producer retrying after a timeout would: counted once.
        publisher.send_all(events[:300])
    # Another system writing straight to the topic with no key: the worker re-routes by cell.
    raw = KafkaProducer(**kafka_kwargs(settings), acks="all")
    for ev in events[2700:]:
        raw.send(settings.events_topic, value=encode_event(ev))
    raw.send(settings.events_topic, value=b"this is not json")
    raw.flush()
    raw.close()

    run_cli(live_stack, "wait", "--timeout", "180")

    for res in (8, 7, 6):
        assert _cells(live_stack, year, res) == weekly_truth(events, res), f"res {res}"

    summary = cli_json(live_stack, "query", "summary", "--from", f"{year}-01-01", "--to", f"{year}-12-31")
    arrests = [e for e in events if e.kind == "arrest"]
    assert summary["arrests"] == len(arrests)
    assert summary["charged"] == sum(e.charged for e in arrests)
    seizures = [e for e in events if e.kind == "seizure"]
    assert summary["weapons_seized"] == sum(e.weapons_count for e in seizures)
    assert round(summary["cash_gbp"] * 100) == sum(round(e.cash_gbp * 100) for e in seizures)
    assert round(summary["drugs_grams"] * 1000) == sum(round(e.drugs_grams * 1000) for e in seizures)
    assert summary["warrants_executed"] == sum(e.executed for e in events if e.kind == "warrant")
    assert summary["safeguarded"] == sum(e.people for e in events if e.kind == "safeguarding")

    # Every rollup the worker folded matches one recomputed from the raw events table.
    check = cli_json(live_stack, "reconcile", "--from", f"{year}-01-01", "--to", f"{year}-12-31")
    assert check["ok"] and check["drifted_keys"] == 0 and check["drift"] == [], check
    assert check["duplicate_event_ids"] == [] and check["keys_checked"] > 0


def test_weekly_cells_split_at_the_iso_week_in_london(live_stack) -> None:
    """Sunday 23:30 UTC in summer is Monday 00:30 in London: the next ISO week; not in winter."""
    from datetime import UTC, datetime

    from hotspots.contract import Arrest

    base = {"force": "essex", "lat": 51.7356, "lon": 0.4685, "charged": True}
    events = [
        Arrest(event_id="wk-1", occurred_at=datetime(2016, 7, 3, 22, 30, tzinfo=UTC), **base),
        Arrest(event_id="wk-2", occurred_at=datetime(2016, 7, 3, 23, 30, tzinfo=UTC), **base),
        Arrest(event_id="wk-3", occurred_at=datetime(2016, 12, 25, 23, 30, tzinfo=UTC), **base),
    ]
    settings = ProducerSettings(bootstrap=live_stack.bootstrap, topic_prefix=live_stack.topic_prefix)
    with EventPublisher(settings, source="test:weeks") as publisher:
        publisher.send_all(events)
    run_cli(live_stack, "wait", "--timeout", "120")
    rows = cli_json(live_stack, "query", "cells", "--from", "2016-06-01", "--to", "2016-12-25",
                    "--res", "8", "--kind", "arrest")
    assert [(r["period_start"], r["count"]) for r in rows] == [
        ("2016-06-27", 1), ("2016-07-04", 1), ("2016-12-19", 1)]
