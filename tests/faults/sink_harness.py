"""`python tests/faults/sink_harness.py STATS FLAG MODE [SECONDS]`: the real sink with a store at fault.

Runs the product's SinkLoop (its real consumer, batching, backoff and commits) on the real
store, wrapped so that while the file FLAG exists every insert (rows, or envelopes for
ClickHouse to parse) either fails (MODE ``outage``: the store is unavailable) or first
sleeps SECONDS (MODE ``slow``: a slow consumer). It is started as the stack's ``sink``
service and stops on SIGTERM, flushing and committing as the real sink does. At every
insert attempt (when its buffer is fullest) and at exit it writes what it saw to STATS as
JSON, with its RSS.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hotspots.settings import SinkSettings
from sinks.sink import SinkLoop
from sinks.store import Store


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class FaultyStore:
    """The real store; while ``flag`` exists an insert raises (outage) or is delayed (slow)."""

    def __init__(self, store: Store, flag: Path, mode: str, seconds: float, stats_path: Path) -> None:
        self.store, self.flag, self.mode, self.seconds = store, flag, mode, seconds
        self.stats_path = stats_path
        self.loop: SinkLoop | None = None
        self.failing = False  # the last insert attempt failed
        self.stats: dict[str, Any] = {"attempts": 0, "failures": 0, "failure_times": [], "inserted_rows": 0,
                                      "commits": 0, "commits_while_failing": 0, "buffered": [],
                                      "rss_kb": [], "throttled": False}

    def write(self) -> None:
        tmp = self.stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.stats))
        tmp.replace(self.stats_path)

    def _attempt(self) -> None:
        """Record an insert attempt; while the flag exists fail it (outage) or delay it (slow)."""
        self.stats["attempts"] += 1
        faulty = self.flag.exists()
        if self.loop is not None:
            self.stats["buffered"].append(self.loop.sink.size)
            self.stats["rss_kb"].append(rss_kb())
            self.stats["throttled"] = faulty
            self.write()
        if faulty:
            if self.mode == "outage":
                self.failing = True
                self.stats["failures"] += 1
                self.stats["failure_times"].append(round(time.monotonic(), 3))
                raise ConnectionError("store unavailable (injected by the fault suite)")
            time.sleep(self.seconds)

    def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        self._attempt()
        self.store.insert(table, rows, columns)
        self.failing = False
        self.stats["inserted_rows"] += len(rows)

    def insert_raw(self, table: str, column: str, body: bytes, fmt: str) -> None:
        """The worker's envelopes, parsed by ClickHouse (sinks/landing.py): the same faults."""
        self._attempt()
        self.store.insert_raw(table, column, body, fmt)
        self.failing = False
        self.stats["inserted_rows"] += body.count(b"\n") + 1  # lines: at least one row each

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def main(stats_path: str, flag: str, mode: str, seconds: float = 0.0) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s %(message)s")
    settings = SinkSettings()
    store = Store(settings)
    faulty = FaultyStore(store, Path(flag), mode, seconds, Path(stats_path))
    loop = SinkLoop(faulty, settings)  # type: ignore[arg-type]  # a Store in all but name
    faulty.loop = loop
    faulty.stats["batch_max"] = settings.batch_max

    def counted(consumer: Any) -> Any:
        commit = consumer.commit

        def counted_commit(*args: Any, **kwargs: Any) -> Any:
            faulty.stats["commits"] += 1
            if faulty.failing:  # an offset committed while its rows are not in the store
                faulty.stats["commits_while_failing"] += 1
            return commit(*args, **kwargs)

        consumer.commit = counted_commit
        return consumer

    # The loop replaces its consumer when it finds it stuck: count that one's commits too.
    connect = loop._connect
    loop._connect = lambda: counted(connect())  # type: ignore[method-assign]
    counted(loop.consumer)
    signal.signal(signal.SIGTERM, lambda *_: loop.stop.set())
    faulty.write()  # the test waits for this file: the harness is up
    try:
        loop.run()
    finally:
        store.close()
        faulty.write()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], *(float(a) for a in sys.argv[4:5]))
