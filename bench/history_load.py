"""The history load through ``hotspots backfill`` (sinks.backfill), against the bare loop.

    python -m bench.history_load [--events 1000000] [--runs 1] [--check store|python]

Issue #7 asks for ten years of national data (70M events) in an hour on two cores. The
worker keeps every rollup key's state in Python and writes it to Kafka twice (changelog,
rollups topic); a 10-year replay touches each key about once, so that state costs as much
as the events (docs/bench.md, ninth pass). The backfill does it the other way round
(docs/bench.md, tenth to twelfth passes). On the same broker and events as ``bench.pipeline``:

* a producer frames N events (``bench.pipeline.event_lines``) as they are onto the history
  topic, as ``hotspots produce jsonl --history`` does (:func:`frame`; 2,000 to a bulk record,
  nothing checked there), while
* a loader process runs the product's backfill: its group reads the records, the store
  checks their lines a chunk at a time (``--check store``; or the Python admission) into
  ``events``, and the offsets are committed after each chunk;
* once every event is loaded, the store builds every rollup key from ``events FINAL`` (the
  cutover here is after all the events). The clock stops there.

Baseline: the bare loop over the same topic, in the same run (the median of three passes).
Afterwards the rollups must count exactly N events by kind, and reconcile must find no drift.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import queue
import statistics
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bench.pipeline import (
    RESULTS,
    bare_loop,
    cpu_seconds,
    event_lines,
    expected_by_kind,
    machine,
)
from hotspots import stack
from hotspots.settings import ProducerSettings, SinkSettings
from producers.history import HISTORY_BULK
from sinks.backfill import backfill
from sinks.reconcile import reconcile
from sinks.store import Store

# After every event of the replay (2015-2025): the backfill builds every period.
CUTOVER = date(2100, 1, 1)
# The bare loop's figure is the median of this many passes over the topic: one pass of 1M
# events ran anywhere from 480k to 854k events/s in one half hour (fourteenth pass), and
# that noise went straight into the ratio.
BARE_PASSES = 3


def loader(config: stack.StackConfig, expected: int, data_dir: str, out: Any, check: str) -> None:
    """The loader process: ``hotspots backfill`` (sinks.backfill) until ``expected`` lines are
    in, then its build; put "ready", then (loaded at, built at, CPU seconds, events counted by
    kind, reconcile ok, the build's CPU seconds) on ``out``."""
    settings = SinkSettings(data_dir=Path(data_dir), clickhouse_url=None, database="history",
                            bootstrap=config.bootstrap, topic_prefix=config.topic_prefix,
                            cutover=CUTOVER)
    store = Store(settings)
    out.put("ready")
    report = backfill(store, settings, check, lines=expected, echo=lambda _: None)
    built_at = time.time()
    loaded_at = built_at - report.build_seconds
    rows = store.query("SELECT kind, sum(count) AS n FROM {db}.rollups FINAL "
                       "WHERE period = 'month' AND res = 6 GROUP BY kind")
    check_ok = reconcile(store)["ok"]
    store.close()
    out.put((loaded_at, built_at, report.load_cpu_seconds + report.build_cpu_seconds,
             {r["kind"]: int(r["n"]) for r in rows}, check_ok, report.build_cpu_seconds))


def _next(proc: Any, out: Any, timeout: float) -> Any:
    """The loader's next message; an error as soon as the loader has died instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return out.get(timeout=2)
        except queue.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"the loader exited with code {proc.exitcode}") from None
    raise TimeoutError(f"no word from the loader in {timeout:.0f} s")


def frame(config: stack.StackConfig, lines: list[bytes], bulk: int) -> float:
    """A replay file's lines framed as ``hotspots produce jsonl --history`` frames them
    (producers.history: ``bulk`` to a record, nothing checked there, the product producer's
    settings); seconds taken until every line is acknowledged."""
    from producers.history import HistoryFramer

    settings = ProducerSettings(bootstrap=config.bootstrap, topic_prefix=config.topic_prefix)
    started = time.perf_counter()
    with HistoryFramer(settings, "bench", bulk) as framer:
        framer.add(lines)
        framer.flush()
    assert framer.acked == len(lines), (framer.acked, len(lines))
    return time.perf_counter() - started


def one_run(n: int, partitions: int, seed: int, bulk: int, check: str = "store") -> dict[str, Any]:
    lines = event_lines(n, seed, date(2015, 1, 1), 3652, f"history{seed}")
    with (tempfile.TemporaryDirectory(prefix="hotspots-history-") as tmp,
          stack.throwaway(Path(tmp), "history", partitions) as config):
        for name in ("worker", "spikes", "sink"):  # the broker alone: nothing else reads
            stack.stop_service(config, name)
        spawn = mp.get_context("spawn")  # chDB opens its store in the loader only
        out: Any = spawn.Queue()
        proc = spawn.Process(target=loader, args=(config, n, str(Path(tmp) / "store"), out, check))
        proc.start()
        if _next(proc, out, 300) != "ready":  # the loader's imports and store: not timed
            raise RuntimeError("the loader did not start")
        broker_cpu = cpu_seconds(config, "broker")
        started = time.time()
        producer_cpu = time.process_time()
        produced = frame(config, lines, bulk)
        producer_cpu = (time.process_time() - producer_cpu) / n * 1e6
        loaded_at, built_at, loader_cpu, counted, reconciled, build_cpu = _next(proc, out, 3600)
        broker_cpu = (cpu_seconds(config, "broker") - broker_cpu) / n * 1e6
        proc.join(60)
        expected = expected_by_kind(lines)
        if counted != expected or not reconciled:
            raise AssertionError(f"inexact: counted {counted}, expected {expected}; reconcile {reconciled}")
        bare_cpu = time.process_time()
        history = ProducerSettings(topic_prefix=config.topic_prefix).history_topic
        baseline = bare_loop(config, n, BARE_PASSES, topic=history)
        bare_cpu = (time.process_time() - bare_cpu) / (n * BARE_PASSES) * 1e6
        elapsed = built_at - started
        return {"events": n, "bulk": bulk, "partitions": partitions, "check": check,
                "history_eps": n / elapsed, "history_seconds": elapsed,
                "load_seconds": loaded_at - started, "build_seconds": built_at - loaded_at,
                "producer_eps": n / produced, "baseline_eps": baseline,
                "ratio": n / elapsed / baseline, "counted": sum(counted.values()),
                "loader_cpu_us": loader_cpu / n * 1e6, "build_cpu_us": build_cpu / n * 1e6,
                "producer_cpu_us": producer_cpu,
                "broker_cpu_us": broker_cpu,
                "bare_cpu_us": bare_cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--bulk", type=int, default=HISTORY_BULK)
    parser.add_argument("--check", choices=("store", "python"), default="store",
                        help="who checks each line by the contract: the store (sinks.admission_sql, "
                             "the backfill's default on chDB) or Python (its way on a server)")
    args = parser.parse_args()
    runs = [one_run(args.events, args.partitions, seed, args.bulk, args.check)
            for seed in range(1, args.runs + 1)]
    for key in ("history_eps", "baseline_eps", "ratio", "load_seconds", "build_seconds",
                "loader_cpu_us", "build_cpu_us", "producer_cpu_us", "broker_cpu_us", "bare_cpu_us"):
        values = [r[key] for r in runs]
        print(f"{key}: median {statistics.median(values):.4g} (spread {min(values):.4g}–{max(values):.4g})")
    out = RESULTS / f"history-load-{datetime.now(UTC):%Y-%m-%dT%H%M%S%z}.json"
    out.write_text(json.dumps({"machine": machine(), "runs": runs}, indent=2) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
