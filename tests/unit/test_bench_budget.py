"""bench/budget.py's columnar fold counts what the worker's fold counts, so its cost is the
cost of the same answer (docs/bench.md, ninth pass)."""

from __future__ import annotations

from datetime import date

from bench.budget import bulk, columnar_fold, product_fold
from bench.pipeline import event_lines


def test_the_columnar_fold_gives_the_worker_s_rollup_counts() -> None:
    # Ten years, so weeks straddle months and London's clock changes.
    records = bulk(event_lines(3000, 5, date(2015, 1, 1), 3650, "budget-test"), 250)
    # (count, weapons, sentence months): streams.rollup's MEASURES places against the bench's
    worker = {name: (state[0], state[4], state[7]) for group in product_fold(records).values()
              for name, state in group["k"].items()}
    assert sum(count for count, _, _ in worker.values()) == 3000 * 7  # weekly, monthly x 3 res, daily
    assert sum(weapons for _, weapons, _ in worker.values()) > 0
    for per_fold in (1, 5):
        columnar = {name: (state[0], state[3], state[7])
                    for name, state in columnar_fold(records, per_fold).items()}
        assert columnar == worker
