"""streams.spikes: EARS C2, Poisson tails, the minimum count, cooldown, ids, state, evaluation."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, date, datetime, timedelta

import pytest
from scipy.stats import nbinom, poisson

from bench.spikes_eval import SIZES, evaluate
from streams.spikes import (
    Alert,
    Coverage,
    Detector,
    SpikeConfig,
    ears_c2,
    negbin_upper_p,
    poisson_upper_p,
    week_test,
)

START = date(2024, 1, 1)  # a Monday
CELL = "87195da49ffffff"


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def _feed(det: Detector, days: list[date], area: str = CELL, kind: str = "arrest") -> list:
    return [a for i, d in enumerate(days)
            if (a := det.observe(area, kind, d, f"e{d}-{i}", at=_at(d))) is not None]


def test_ears_c2_hand_example():
    # Baseline 1,2,0,1,3,1,2: mean 10/7, sd sqrt((20 - 100/7) / 6); the guard days (9, 9) are skipped.
    stat, alert = ears_c2([1, 2, 0, 1, 3, 1, 2, 9, 9, 6])
    assert stat == pytest.approx((6 - 10 / 7) / math.sqrt((20 - 100 / 7) / 6))
    assert stat == pytest.approx(4.6843, abs=1e-4) and alert
    assert ears_c2([0] * 9 + [1]) == (pytest.approx(5.0), True)  # sd floor 0.2: why min_count exists
    assert ears_c2([2] * 10) == (0.0, False)
    with pytest.raises(ValueError):
        ears_c2([0] * 9)


@pytest.mark.parametrize("k,mu", [(0, 1.0), (1, 0.3), (2, 0.05), (5, 0.0625), (6, 1.0), (3, 5.0),
                                  (10, 10.0), (30, 0.01), (12, 0.7)])
def test_poisson_upper_p_matches_scipy(k, mu):
    assert poisson_upper_p(k, mu) == pytest.approx(poisson.sf(k - 1, mu), rel=1e-12)


def test_poisson_upper_p_by_hand_and_edges():
    assert poisson_upper_p(1, 0.5) == pytest.approx(1 - math.exp(-0.5))
    assert poisson_upper_p(2, 1.0) == pytest.approx(1 - 2 * math.exp(-1))
    assert poisson_upper_p(0, 0.0) == 1.0 and poisson_upper_p(1, 0.0) == 0.0
    assert poisson_upper_p(400, 0.001) == 0.0  # underflow is zero, not an error


@pytest.mark.parametrize("k,mu,size", [(5, 1.0, 2.0), (2, 3.0, 0.5), (40, 0.1, 1.0), (1, 1.0, 1.0)])
def test_negbin_upper_p_matches_scipy(k, mu, size):
    assert negbin_upper_p(k, mu, size) == pytest.approx(nbinom.sf(k - 1, size, size / (size + mu)),
                                                        rel=1e-10)
    assert negbin_upper_p(k, mu, 1e9) == pytest.approx(poisson_upper_p(k, mu), rel=1e-6)


def test_one_versus_zero_never_alerts():
    for n in range(8, 53):
        for current in range(5):
            assert not week_test(current, [0] * n).alert
    d = week_test(1, [0] * 26)
    assert (d.reason, d.expected) == ("below_min_count", pytest.approx(0.5 / 26))
    assert week_test(9, [0] * 7).reason == "warm_up"
    det = Detector(start=START)
    later = START + timedelta(weeks=20)
    assert _feed(det, [later + timedelta(days=i) for i in range(4)]) == []  # 4 after 20 quiet weeks


def test_cooldown_gives_one_alert_per_spike():
    det = Detector(start=START)
    spike = START + timedelta(weeks=10)
    alerts = _feed(det, [spike + timedelta(days=i % 7) for i in range(12)])
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.period, a.period_start, a.observed, a.method) == ("week", spike, 5, "poisson-week")
    assert a.triggering_event_id.startswith(f"e{spike + timedelta(days=4)}")
    assert a.first_seen.tzinfo is not None and a.area_type == "cell"
    # The next week is still cooling down; the one after may alert again.
    assert _feed(det, [spike + timedelta(weeks=1, days=i % 7) for i in range(12)]) == []
    again = _feed(det, [spike + timedelta(weeks=2, days=i % 7) for i in range(12)])
    assert len(again) == 1 and again[0].period_start == spike + timedelta(weeks=2)
    # Other kinds and areas have their own cooldown.
    assert len(_feed(det, [spike + timedelta(days=i % 7) for i in range(6)], kind="seizure")) == 1


def test_daily_ears_alert_and_its_cooldown():
    det = Detector(SpikeConfig(min_weeks=52), start=START)  # weekly test still warming up
    day = START + timedelta(days=20)
    alerts = _feed(det, [day] * 8)
    assert [(a.method, a.period, a.period_start, a.observed) for a in alerts] == [
        ("ears-c2", "day", day, 5)]


def test_alert_ids_are_deterministic():
    days = [START + timedelta(weeks=12, days=i % 7) for i in range(6)]
    one, two = _feed(Detector(start=START), days), Detector(start=START)
    again = [a for i, d in enumerate(days) if (a := two.observe(CELL, "arrest", d, f"x{i}")) is not None]
    assert len(one) == len(again) == 1
    assert one[0].alert_id == again[0].alert_id  # first_seen and event id differ; the spike does not
    assert len(one[0].alert_id) == 32 and int(one[0].alert_id, 16) >= 0
    other = _feed(Detector(start=START), [d + timedelta(weeks=1) for d in days])
    assert other[0].alert_id != one[0].alert_id


def test_state_round_trip_gives_identical_decisions():
    rng = random.Random(7)
    cells = [f"cell{i}" for i in range(30)]
    events = sorted((START + timedelta(days=rng.randrange(40 * 7)), rng.choice(cells),
                     rng.choice(("arrest", "seizure"))) for _ in range(3000))
    events += [(START + timedelta(weeks=30, days=i % 7), "cell3", "arrest") for i in range(15)]
    events.sort()
    cut = len(events) // 2 + 7
    a, b = Detector(start=START), None
    first: list[Alert] = []
    rest_a: list[Alert] = []
    rest_b: list[Alert] = []
    for i, (day, cell, kind) in enumerate(events):
        if i == cut:
            state = json.loads(json.dumps(a.to_state()))
            b = Detector.from_state(state)
            assert b.to_state() == a.to_state()
        out = first if i < cut else rest_a
        if (alert := a.observe(cell, kind, day, f"e{i}", at=_at(day))) is not None:
            out.append(alert)
        if b is not None and (alert := b.observe(cell, kind, day, f"e{i}", at=_at(day))) is not None:
            rest_b.append(alert)
    assert rest_a == rest_b and any(x.area == "cell3" for x in rest_a)
    # Bounded memory: no key keeps more than the baseline plus the current week.
    assert all(len(s["w"]) <= 27 and len(s["d"]) <= 10 for _, _, s in a.to_state()["series"])


def test_late_events_outside_the_window_are_ignored():
    det = Detector(start=START)
    _feed(det, [START + timedelta(weeks=40)])
    assert det.observe(CELL, "arrest", START + timedelta(weeks=2), "late", at=_at(START)) is None
    assert det.observe(CELL, "arrest", START + timedelta(weeks=39), "late2") is None  # counted
    assert {s[2]["w"].get(str(START + timedelta(weeks=39))) for s in det.to_state()["series"]} == {1}


def test_evaluation_meets_the_targets():
    result = evaluate(range(1, 4), per_size=20)
    assert result["mean_rate"] <= 1 and result["sparse_share"] > 0.9
    assert result["recall_ge5"] >= 0.9
    assert result["false_per_1000"] <= 1.0 and result["quiet_cell_weeks"] > 50_000
    assert all(result["by_size"][s]["max_alerts_per_spike"] <= 1 for s in SIZES)
    assert result["by_size"][10]["recall"] == 1.0


def test_coverage_restarts_after_a_silence_and_ignores_strays():
    cfg = SpikeConfig()
    cov = Coverage()
    assert cov.see(date(2013, 5, 1), cfg) and cov.start == date(2013, 5, 1)
    # Another year, much later: the silence in between is unknown, not quiet.
    assert cov.see(date(2026, 11, 2), cfg) and cov.start == date(2026, 11, 2)
    assert cov.see(date(2026, 10, 20), cfg) and cov.start == date(2026, 10, 20)  # a late event
    # A stray from long ago is outside the window: it neither counts nor extends coverage.
    assert not cov.see(date(2013, 6, 1), cfg) and cov.start == date(2026, 10, 20)
    assert cov.latest == date(2026, 11, 2)
    assert Coverage.from_state(cov.to_state()) == cov


def _weekly_by_history(s, coverage: Coverage, c: SpikeConfig, week: date):
    """The week test as first written: the baseline built week by week, then week_test."""
    whole = coverage.start + timedelta(days=6)
    whole -= timedelta(days=whole.weekday())
    first = max(whole, week - timedelta(weeks=c.baseline_weeks))
    n = max((week - first).days // 7, 0)
    history = [s.weeks.get(first + timedelta(weeks=i), 0) for i in range(n)]
    return week_test(s.weeks[week], history, c.min_weeks, c.alpha, c.min_count)


def test_the_week_test_from_a_total_decides_as_from_the_history() -> None:
    # _weekly sums the series' weeks in the window instead of building the history list;
    # random series (late weeks and weeks outside the window included) decide alike.
    from streams.spikes import Series, _weekly

    c = SpikeConfig(area_type="cell")
    rng = random.Random(7)
    decided = {True: 0, False: 0}
    for _ in range(3000):
        start = START + timedelta(days=rng.randrange(0, 7))
        week = START + timedelta(weeks=rng.randrange(0, 40))
        weeks = {START + timedelta(weeks=w): rng.choice([0, 0, 1, 2, 3, 8, 20])
                 for w in range(-5, 45) if rng.random() < 0.6}
        weeks[week] = rng.randrange(0, 30)
        s = Series(weeks=weeks)
        coverage = Coverage(start=start, latest=week + timedelta(days=6))
        expected = _weekly_by_history(s, coverage, c, week)
        got = _weekly(s, coverage, c, CELL, "arrest", week, "e", _at(week))
        assert (got is not None) == expected.alert
        if got is not None:
            assert (got.observed, got.expected, got.p_value) == (
                expected.observed, expected.expected, expected.p_value)
        decided[expected.alert] += 1
    assert decided[True] > 50 and decided[False] > 50  # both outcomes exercised
