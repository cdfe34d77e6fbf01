"""kill -9 the worker, the sink and the broker during a replay: every count and sum stays exact.

The reduced form (200k events, 20 kills) runs with `pytest tests/faults`; `make test-faults` the
full one (1M events). docs/exactness.md explains the mechanism and records a full run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.faults.chaos import COMPONENTS, Chaos, plan
from tests.faults.conftest import fault_size
from tests.faults.replay import AtLeastOnceProducer, Replay, Truth, produce
from tests.faults.scenario import hole_seeks, wait_caught_up, wait_spikes_folded
from tests.faults.verify import check_store

SIZE = fault_size()
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900 + SIZE.events // 100)]


def test_kill9_during_replay_keeps_every_count_and_sum_exact(fault_stack, tmp_path) -> None:
    replay = Replay(events=SIZE.events, seed=SIZE.seed, tag="chaos", years=(2009, 2011))
    truth = Truth()
    producer = AtLeastOnceProducer(fault_stack, "test:chaos", rate=SIZE.rate)
    chaos = Chaos(fault_stack, plan(SIZE.seed, SIZE.kills, SIZE.events), progress=lambda: producer.sent)
    started = time.monotonic()
    chaos.start()
    try:
        produce(replay, producer, truth)
        produced = time.monotonic() - started
        while not chaos.planned_done.wait(1.0):
            assert chaos.is_alive(), "the chaos thread stopped"
        assert chaos.error is None, f"chaos failed: {chaos.error!r}\n" + "\n".join(chaos.log.lines)
        # Everything sent is now in the topic; the services may still be catching up.
        wait_caught_up(fault_stack, timeout=600 + SIZE.events / 200)
        caught_up = time.monotonic() - started
    finally:
        chaos.halt.set()
        chaos.join(timeout=60)
        producer.close()
    assert chaos.error is None, f"chaos failed: {chaos.error!r}\n" + "\n".join(chaos.log.lines)

    verdict, reconciled = check_store(fault_stack, replay, truth, tmp_path)
    report = {
        "events": len(truth.event_ids), "sent": producer.sent, "chunks_resent": producer.resends,
        "kills": dict(chaos.log.kills), "unplanned_exits": dict(chaos.log.crashes),
        "restart_seconds": chaos.log.restart_seconds,
        "produced_s": round(produced), "caught_up_s": round(caught_up),
        "elapsed_s": round(time.monotonic() - started),
        "rollup_keys": verdict.keys_expected, "wrong_keys": verdict.wrong_keys,
        "raw_events_after_final": verdict.events_stored,
        "hole_seeks": hole_seeks(fault_stack),
        "reconcile": {k: reconciled.get(k) for k in ("ok", "keys_checked", "drifted_keys",
                                                      "duplicate_event_id_count", "exit_code", "error")},
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"faults-chaos-{SIZE.events}.json").write_text(
        json.dumps({**report, "log": chaos.log.lines}, indent=2))
    print(json.dumps(report))
    context = f"{json.dumps(report)}\n" + "\n".join(chaos.log.lines)

    assert sum(chaos.log.kills.values()) == SIZE.kills, context
    assert all(chaos.log.kills[name] > 0 for name in COMPONENTS), context
    # The sink starts a new loop in-process when a broker outage ends one (SupervisedLoop);
    # before that, each broker kill could end the sink process for the chaos thread to revive.
    assert chaos.log.crashes["sink"] == 0, f"the sink exited by itself\n{context}"
    assert verdict.ok, f"{verdict}\n{context}"
    assert reconciled["ok"] and reconciled["drifted_keys"] == 0, f"{reconciled}\n{context}"
    assert reconciled["exit_code"] == 0, reconciled
    assert reconciled["keys_checked"] == verdict.keys_expected, context
    wait_spikes_folded(fault_stack, timeout=300)  # raises, naming what is behind
