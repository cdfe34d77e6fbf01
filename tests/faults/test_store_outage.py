"""The store is unavailable for a while: the sink backs off, commits nothing, resumes, loses nothing."""

from __future__ import annotations

import itertools
import os
import time
import uuid

import pytest

from tests.faults.replay import Replay
from tests.faults.scenario import (
    Background,
    read_stats,
    sink_committed,
    sink_lag,
    start_harness,
    wait_caught_up,
)
from tests.faults.verify import check_store

pytestmark = [pytest.mark.faults, pytest.mark.timeout(1200)]  # a loaded 2-core machine is slow
OUTAGE = 20.0  # seconds; the sink's backoff doubles from 0.5 s to a 30 s ceiling


@pytest.fixture(params=["embedded", "server"])
def store_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """chDB in the sink's process, or a ClickHouse server when HOTSPOTS_TEST_CLICKHOUSE_URL is set."""
    if request.param == "embedded":
        yield "embedded"
        return
    url = os.environ.get("HOTSPOTS_TEST_CLICKHOUSE_URL")
    if not url:
        pytest.skip("HOTSPOTS_TEST_CLICKHOUSE_URL is not set")
    import clickhouse_connect

    database = f"faults_{uuid.uuid4().hex[:8]}"
    # Every process the test starts from here on (harness, dump, reconcile, sink) uses the server.
    monkeypatch.setenv("HOTSPOTS_CLICKHOUSE_URL", url)
    monkeypatch.setenv("HOTSPOTS_DATABASE", database)
    yield "server"
    client = clickhouse_connect.get_client(dsn=url)
    client.command(f"DROP DATABASE IF EXISTS {database}")
    client.close()


def test_store_outage_sink_backs_off_and_resumes_exactly(store_kind, fault_stack, tmp_path) -> None:
    stats_path, flag = start_harness(fault_stack, tmp_path, "outage")
    replay = Replay(events=30000, seed=21, tag=f"outage-{store_kind}", years=(2005, 2005))
    background = Background(fault_stack, replay, rate=2000)
    try:
        deadline = time.monotonic() + 120
        while read_stats(stats_path)["inserted_rows"] == 0:  # the sink is storing rows
            assert time.monotonic() < deadline, "the sink stored nothing"
            time.sleep(0.2)
        flag.touch()  # the store goes away
        while read_stats(stats_path)["failures"] == 0:
            assert time.monotonic() < deadline, "no insert failed while the store was down"
            time.sleep(0.1)
        frozen = sink_committed(fault_stack)
        lags = []
        down_since = time.monotonic()
        while time.monotonic() - down_since < OUTAGE:
            assert sink_committed(fault_stack) == frozen, "an offset was committed while the store was down"
            lags.append(sink_lag(fault_stack))
            time.sleep(1.0)
        flag.unlink()  # the store is back
        truth = background.join()
        wait_caught_up(fault_stack, timeout=300)
    finally:
        flag.unlink(missing_ok=True)
        background.stop()
    stats = read_stats(stats_path)
    assert sink_committed(fault_stack) != frozen, "the sink did not resume"

    # Backed off: 0.5, 1, 2, 4, 8, 16 s... so a 20 s outage costs a handful of attempts, not hundreds.
    failures = stats["failure_times"]
    gaps = [b - a for a, b in itertools.pairwise(failures)]
    assert 3 <= len(failures) <= 8, failures
    assert all(later >= 1.8 * earlier for earlier, later in itertools.pairwise(gaps)), gaps
    assert stats["commits_while_failing"] == 0, stats
    assert max(lags) > lags[0], f"the sink's lag did not grow during the outage: {lags}"
    print(f"store outage {OUTAGE:.0f}s: {len(failures)} failed inserts, gaps "
          f"{[round(g, 1) for g in gaps]} s; lag {lags[0]} -> {max(lags)} records; no commit meanwhile")

    verdict, reconciled = check_store(fault_stack, replay, truth, tmp_path)
    assert verdict.ok, str(verdict)
    assert reconciled["ok"] and reconciled["drifted_keys"] == 0, reconciled
