"""Spike alerts through the real pipeline (bench.spikes_pipeline), on a stack of its own.

The session stack is shared by tests that produce other years; the detector's baselines and
coverage must not see them, so this module starts its own broker, worker and sink (with the
Essex outlines and a webhook to a local receiver that refuses each alert's first attempt).
"""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from bench.receiver import Receiver
from bench.spikes_pipeline import (
    DEMO_RATE,
    SECRET,
    execute,
    make_plan,
    own_stack,
    produce,
    score,
    stored_alerts,
    topic_alerts,
    wait,
)
from hotspots import stack
from hotspots.geo import cells_of, to_str
from hotspots.periods import LONDON
from hotspots.settings import WorkerSettings
from tests.integration.conftest import log_tail, run_cli
from tests.shared_data import ESSEX_CSVS, ESSEX_OUTLINES, needs

pytestmark = [pytest.mark.integration, needs(ESSEX_CSVS), needs(ESSEX_OUTLINES)]

SEED, CELLS, PER_SIZE = 7, 500, 10  # ~3,800 events, 70 planted spikes, ~2,400 quiet cell-weeks


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    with Receiver(SECRET) as receiver, \
            own_stack(tmp_path_factory.mktemp("spikes"), receiver.url) as config:
        plan = make_plan(SEED, CELLS, PER_SIZE)
        run = execute(config, plan, DEMO_RATE, receiver)
        yield config, run, score(run), receiver


def test_seeded_evaluation_meets_the_targets(evaluated):
    config, _run, result, _ = evaluated
    table = json.dumps({k: v for k, v in result.items() if k != "false_detail"}, indent=1,
                       default=str)
    print(f"recall>=5 {result['recall_ge5']:.3f}; false alarms {result['false_alarms']} in "
          f"{result['quiet_cell_weeks']} quiet cell-weeks; delay to topic {result['delay']['topic']}; "
          f"by size { {s: r['recall'] for s, r in result['by_size'].items()} }; load {result['load']}")
    assert result["mean_rate"] <= 1 and result["sparse_share"] > 0.9, table
    assert result["recall_ge5"] >= 0.9, table
    assert result["quiet_cell_weeks"] >= 1000, table
    assert result["false_per_1000"] <= 1.0, (result["false_detail"], table)
    assert result["delay"]["topic"]["n"] == result["alerts"] > 0
    assert result["delay"]["topic"]["p99"] < 5.0, (table, log_tail(config, "worker"))
    # Each spike alerts once, not once per event: one alert per area, kind and week, and no
    # alert id twice on the topic.
    assert all(r["max_alerts_per_spike"] <= 1 for r in result["by_size"].values()), table
    assert result["duplicates"] == {"topic_records": 0, "area_kind_weeks": 0}, table
    assert result["by_size"][2]["detected"] == 0  # below the minimum count: never


def test_alerts_are_stored_served_and_posted_once(evaluated):
    config, run, result, receiver = evaluated
    ids = {a["alert_id"] for a, _ in run.topic}
    assert {r["alert_id"] for r in run.stored} == ids and len(run.stored) == len(ids)
    assert result["stored_missing"] == [] and result["webhook"]["missing"] == []
    # Signed, retried after the receiver's refusal, and delivered once each.
    assert receiver.refused == 0
    assert sorted(receiver.keys()) == sorted(ids)
    assert all(d.attempt == 2 and d.alert["alert_id"] == d.key for d in receiver.accepted)

    listed = json.loads(run_cli(config, "alerts", "list", "--area-type", "district", "--limit", "1000",
                                "--format", "json", "--justification", "spike alert tests"))
    assert {a["alert_id"] for a in listed} == {a["alert_id"] for a in run.stored
                                              if a["area_type"] == "district"}
    assert all(a["area_type"] == "district" and a["res"] == 0 for a in listed)
    text = run_cli(config, "alerts", "list", "--kind", "arrest", "--since",
                   datetime.now(LONDON).date().isoformat(), "--justification", "spike alert tests")
    assert "poisson-week" in text or "ears-c2" in text or text.strip() == "(no rows)"


def test_killed_worker_and_spikes_resume_without_raising_again(evaluated):
    """Both stream processes killed: the spike state (since the eighth pass in the spike alerts
    process, not the worker) comes back from its changelogs."""
    config, run, _result, receiver = evaluated
    plan = run.plan
    alerts = {a["alert_id"]: a for a, _ in run.topic}
    spiked = {(a["area"], a["kind"]) for a in alerts.values() if a["area_type"] == "cell"}
    # A planted spike that alerted, and a quiet series (no plant, no alert in it or its parent).
    (cell, kind), alert_id = next(((a["area"], a["kind"]), i) for i, a in alerts.items()
                                  if a["res"] == 7 and (a["area"], a["kind"]) in plan.plants)
    quiet = min((e for e in plan.events
                 if (to_str(cells_of(e.lat, e.lon)[7]), e.kind) not in spiked | set(plan.plants)
                 and (to_str(cells_of(e.lat, e.lon)[6]), e.kind) not in spiked),
                key=lambda e: plan.rates[(to_str(cells_of(e.lat, e.lon)[7]), e.kind)])
    loud = next(e for e in plan.events if (to_str(cells_of(e.lat, e.lon)[7]), e.kind) == (cell, kind))

    assert stack.stop_service(config, "worker", sig=signal.SIGKILL)
    assert stack.stop_service(config, "spikes", sig=signal.SIGKILL)
    stack.up(config, timeout=240, echo=lambda _m: None)

    now = datetime.now(UTC)
    monday = datetime.combine(now.astimezone(LONDON).date() - timedelta(days=now.astimezone(
        LONDON).weekday()), datetime.min.time(), LONDON)
    start = max(monday, now - timedelta(minutes=10))
    more = [loud.model_copy(update={"event_id": f"restart-more-{i}",
                                    "occurred_at": start + timedelta(seconds=i)}) for i in range(6)]
    fresh = [quiet.model_copy(update={"event_id": f"restart-fresh-{i}",
                                      "occurred_at": start + timedelta(seconds=10 + i)})
             for i in range(8)]
    produce(config, more + fresh, None)
    wait(config)

    after = [a for a, _ in topic_alerts(config)]
    ids = [a["alert_id"] for a in after]
    assert ids.count(alert_id) == 1, log_tail(config, "worker")
    assert len(ids) == len(set(ids)), "an alert was raised again after the restart"
    quiet_cell = to_str(cells_of(quiet.lat, quiet.lon)[7])
    new = [a for a in after if a["alert_id"] not in alerts]
    # The restarted worker still knows its baselines: the fresh spike alerts at once, once.
    (fresh_alert,) = [a for a in new if a["area_type"] == "cell" and a["res"] == 7]
    assert (fresh_alert["area"], fresh_alert["kind"]) == (quiet_cell, quiet.kind)
    assert fresh_alert["triggering_event_id"].startswith("restart-fresh-")
    stored = stored_alerts(config)
    assert [r["alert_id"] for r in stored].count(alert_id) == 1
    assert len(stored) == len(set(ids))
    wait_for = set(ids)
    deadline = time.monotonic() + 60
    while not wait_for <= set(receiver.keys()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sorted(receiver.keys()) == sorted(wait_for)  # posted once each, restart or not


def test_a_new_spikes_group_reads_everything_again_without_raising_again(evaluated):
    """As after the upgrade that moved the spike agents out of the worker (docs/exactness.md):
    a spike alerts group with no committed offsets, over the tables the old app wrote. It
    reads the accepted topic from its start and raises nothing again."""
    config = evaluated[0]
    before = sorted(a["alert_id"] for a, _ in topic_alerts(config))
    group, accepted_topic = WorkerSettings(topic_prefix=config.topic_prefix).group_source("spikes")
    assert stack.stop_service(config, "spikes")  # SIGTERM: it leaves its group, as in an upgrade
    admin = KafkaAdminClient(bootstrap_servers=config.bootstrap, request_timeout_ms=10000)
    consumer = KafkaConsumer(bootstrap_servers=config.bootstrap)
    try:
        assert admin.delete_groups([group]) == {group: "OK"}
        stack.up(config, timeout=240, echo=lambda _m: None)
        partitions = [TopicPartition(accepted_topic, p) for p in range(config.partitions)]
        ends = consumer.end_offsets(partitions)
        deadline = time.monotonic() + 120
        committed: dict[TopicPartition, int] = {}
        while time.monotonic() < deadline:  # it commits what it has read, folded or skipped
            committed = {tp: meta.offset for tp, meta in
                         admin.list_group_offsets([group]).get(group, {}).items() if tp in ends}
            if all(committed.get(tp, -1) >= end for tp, end in ends.items()):
                break
            time.sleep(0.5)
        assert committed == ends, log_tail(config, "spikes")
    finally:
        consumer.close()
        admin.close()
    assert sorted(a["alert_id"] for a, _ in topic_alerts(config)) == before, log_tail(config, "spikes")
