"""The fault suite's comparator must be able to fail: a doubled or lost event is caught."""

from __future__ import annotations

from tests.faults.replay import Replay, Truth, keys, measures
from tests.faults.verify import compare


def _replay() -> tuple[list, Truth]:
    events = Replay(events=300, seed=5, tag="cmp", years=(2012, 2012)).chunk(0)
    return events, Truth.of(events)


def test_exact_store_passes() -> None:
    events, truth = _replay()
    stored = {k: tuple(v) for k, v in truth.rollups.items()}
    verdict = compare(truth, stored, sorted(truth.event_ids))
    assert verdict.ok, str(verdict)
    # The replay itself has what the suite claims: re-sent ids, month-precision events, sums.
    assert len(events) > len(truth.event_ids)
    assert any(ev.time_precision == "month" for ev in events)
    assert {k[0] for k in truth.rollups} == {"day", "week", "month"}


def test_a_doubled_event_is_caught() -> None:
    events, truth = _replay()
    doubled = next(ev for ev in events if ev.kind == "seizure")
    stored = {k: list(v) for k, v in truth.rollups.items()}
    for key in keys(doubled):  # the event folded twice, as a lost dedup would do
        stored[key] = [a + b for a, b in zip(stored[key], measures(doubled), strict=True)]
    ids = [*sorted(truth.event_ids), doubled.event_id]  # and held twice in the raw table
    verdict = compare(truth, {k: tuple(v) for k, v in stored.items()}, ids)
    assert not verdict.ok
    assert verdict.wrong_keys == len(keys(doubled)) == 7
    assert verdict.duplicate_ids == [doubled.event_id]
    assert "count" in verdict.wrong[0] and "drugs_mg" in verdict.wrong[0]


def test_a_lost_event_is_caught() -> None:
    events, truth = _replay()
    lost = next(ev for ev in events if ev.time_precision == "month")
    stored = {k: list(v) for k, v in truth.rollups.items()}
    for key in keys(lost):
        stored[key] = [a - b for a, b in zip(stored[key], measures(lost), strict=True)]
    ids = sorted(truth.event_ids - {lost.event_id})
    verdict = compare(truth, {k: tuple(v) for k, v in stored.items() if v[0]}, ids)
    assert not verdict.ok
    assert verdict.wrong_keys == len(keys(lost)) == 3  # month precision: monthly keys only
    assert verdict.missing_ids == [lost.event_id]
