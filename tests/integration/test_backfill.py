"""`hotspots backfill` against the real broker: killed -9 mid-load and run again, every event
counts once and every refused line is one dead letter; on the live stack, it pauses the sink
that holds the embedded store and starts it again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from hotspots import stack
from hotspots.contract import BULK_CONTENT_TYPE, encode_event
from hotspots.geo import to_str
from hotspots.periods import LONDON
from hotspots.settings import SinkSettings
from hotspots.topics import end_offsets, ensure_topics
from sinks.reconcile import reconcile
from sinks.store import Store
from tests.integration.conftest import cli_json, run_cli
from tests.integration.truth import random_events, weekly_truth

pytestmark = pytest.mark.integration
BULK = [("content-type", BULK_CONTENT_TYPE.encode())]


def _backfill(data_dir: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "hotspots.cli", "backfill", "--data-dir", str(data_dir),
                             *args], env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _committed(consumer: KafkaConsumer, parts: list[TopicPartition]) -> int:
    return sum(consumer.committed(tp) or 0 for tp in parts)


@pytest.mark.parametrize("check", ["store", "python"])
def test_a_backfill_killed_mid_load_counts_every_event_once(live_stack, tmp_path, check) -> None:
    prefix, group = f"bf-{uuid.uuid4().hex[:8]}", f"bf-{uuid.uuid4().hex[:8]}"
    env = {"HOTSPOTS_BOOTSTRAP": live_stack.bootstrap, "HOTSPOTS_TOPIC_PREFIX": prefix,
           "HOTSPOTS_BACKFILL_GROUP": group,
           # The store plans each chunk's check (~0.5 s): fewer chunks there, still several.
           "HOTSPOTS_BACKFILL_CHUNK": "5000" if check == "store" else "1000",
           "HOTSPOTS_BACKFILL_POLL_RECORDS": "5", "HOTSPOTS_CUTOVER": "2019-01-01",
           "HOTSPOTS_BACKFILL_SPIKE_WEEKS": "2"}
    settings = SinkSettings(bootstrap=live_stack.bootstrap, topic_prefix=prefix)
    ensure_topics(settings)
    events = random_events(2018, 30000, tag=f"bf{check}", seed=5)
    # From the cutover on: loaded, and forwarded to the live events topic for the worker.
    live = [e for e in random_events(2019, 3000, tag=f"bflive{check}", seed=6)
            if e.occurred_at.month == 1][:100]
    events += live
    lines = [encode_event(e) for e in events]
    off_the_map = {**orjson.loads(lines[0]), "event_id": "bf-bad", "lat": 95}
    bad = {7: orjson.dumps(off_the_map), 20011: b"not json", 29990: b'{"kind": "arrest"}'}
    for at, line in bad.items():
        lines.insert(at, line)
    producer = KafkaProducer(bootstrap_servers=live_stack.bootstrap, acks="all")
    for n, first in enumerate(range(0, len(lines), 100)):
        producer.send(settings.history_topic, b"\n".join(lines[first:first + 100]), partition=n % 4,
                      headers=BULK)
    producer.send(settings.history_topic, b"\n".join([b"{}"] * 70000), partition=1, headers=BULK)
    producer.flush()
    producer.close()
    parts = [TopicPartition(settings.history_topic, p) for p in range(4)]
    total = sum(end_offsets(live_stack.bootstrap, [settings.history_topic]).values())

    data_dir = tmp_path / "store"
    offsets = KafkaConsumer(bootstrap_servers=live_stack.bootstrap, group_id=group, enable_auto_commit=False)
    first = _backfill(data_dir, {**env, "HOTSPOTS_DATA_DIR": str(data_dir)}, "--check", check)
    deadline = time.monotonic() + 120
    while _committed(offsets, parts) == 0:  # at least one chunk in
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "no chunk committed in 120 s"
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert 0 < _committed(offsets, parts) < total  # killed mid-load

    second = _backfill(data_dir, {**env, "HOTSPOTS_DATA_DIR": str(data_dir)}, "--check", check)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    report = json.loads(out)
    assert 0 < report["records"] < total and report["check"] == check
    assert _committed(offsets, parts) == total
    offsets.close()
    # On the worker's topic: every event from the cutover on, and those of the two weeks
    # before its week (from Monday 17 December 2018) for the spike baselines; twice, if the
    # kill came between the send and the commit (the worker's seen table counts it once).
    sent = KafkaConsumer(settings.events_topic, bootstrap_servers=live_stack.bootstrap,
                         auto_offset_reset="earliest", consumer_timeout_ms=5000)
    forwarded = [orjson.loads(line)["event_id"] for r in sent for line in r.value.split(b"\n")]
    sent.close()
    seeds = [e for e in events if e.occurred_at.astimezone(LONDON).date() >= date(2018, 12, 17)]
    assert len(seeds) > len(live)
    assert set(forwarded) == {e.event_id for e in seeds} and report["forwarded"] <= len(seeds)

    store = Store(SinkSettings(data_dir=data_dir))
    try:
        counted = store.query("SELECT count() AS n FROM {db}.events FINAL")[0]["n"]
        assert counted == len(events)
        rows = store.query("SELECT toString(cell) AS cell, toString(period_start) AS week, kind, "
                           "sum(count) AS n FROM {db}.rollups FINAL WHERE period = 'week' AND res = 6 "
                           "GROUP BY cell, week, kind")
        got = {(to_str(int(r["cell"])), r["week"], r["kind"]): r["n"] for r in rows}
        # The weeks before Monday 7 January 2019 (the first from the cutover) are built,
        # with the events of 1-6 January too; the later ones are the worker's.
        assert got == {key: n for key, n in weekly_truth(events, 6).items() if key[1] < "2019-01-07"}
        letters = store.query("SELECT reason, source, count() AS n FROM {db}.dead_letters FINAL "
                              "GROUP BY reason, source ORDER BY reason")
        assert sorted(r["reason"] for r in letters) == [
            "bad_coordinates", "bulk_too_large", "missing_field", "not_json"], letters
        assert all(r["n"] == 1 for r in letters)
        assert reconcile(store, None, date(2018, 12, 31))["ok"]  # the worker's periods: none here
    finally:
        store.close()


def test_backfill_refuses_without_a_cutover(live_stack, tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HOTSPOTS_CUTOVER"}
    proc = subprocess.run([sys.executable, "-m", "hotspots.cli", "backfill", "--data-dir", str(tmp_path)],
                          env={**env, "HOTSPOTS_BOOTSTRAP": live_stack.bootstrap}, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "HOTSPOTS_CUTOVER is not set" in proc.stderr, proc.stderr


def test_backfill_on_the_live_stack_pauses_the_sink_and_the_map_has_the_history(live_stack, tmp_path):
    year = 1971  # no other test writes it; the cutover leaves every later period to the worker
    events = random_events(year, 3000, tag="bflive", seed=9)
    # After the cutover (Saturday 1 January 1972): every key is the worker's, which gets them
    # from the backfill.
    later = [e.model_copy(update={"event_id": f"bflater-{i}",
                                  "occurred_at": e.occurred_at.replace(year=1972)})
             for i, e in enumerate(events[:100]) if e.occurred_at.month == 1 and e.occurred_at.day >= 3]
    assert later
    source = tmp_path / "history.jsonl"
    source.write_bytes(b"\n".join(encode_event(e) for e in events + later) + b"\n")
    produced = json.loads(run_cli(live_stack, "produce", "jsonl", str(source), "--history"))
    assert produced["produced"] == len(events) + len(later)
    # No spike baselines' weeks: the session's worker has no cutover, and would fold them.
    proc = subprocess.run([sys.executable, "-m", "hotspots.cli", "backfill",
                           "--data-dir", live_stack.data_dir],
                          env={**os.environ, "HOTSPOTS_CUTOVER": "1972-01-01",
                               "HOTSPOTS_BACKFILL_SPIKE_WEEKS": "0"}, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "sink: paused" in proc.stderr
    report = orjson.loads(proc.stdout)
    assert (report["dead_lettered"], report["forwarded"]) == (0, len(later))
    assert stack.status(live_stack)["sink"]["healthy"]
    run_cli(live_stack, "wait", "--timeout", "300")  # the forwarded events, through the worker
    for events_of_year, first in ((events, year), (later, year + 1)):
        rows = cli_json(live_stack, "query", "cells", "--from", f"{first}-01-01", "--to", f"{first}-12-31",
                        "--res", "6")
        got = {(r["cell"], r["period_start"], r["kind"]): r["count"] for r in rows
               if r["period_start"] >= f"{first}-01-01" or first == year}  # not 1971's last week
        assert got == dict(weekly_truth(events_of_year, 6))
    run_cli(live_stack, "reconcile", "--from", f"{year - 1}-12-01", "--to", f"{year + 1}-01-31")
