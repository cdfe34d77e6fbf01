"""The synthetic year: exact calibration, valid contract events, plausible shape."""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from datetime import datetime

import pytest

from hotspots.contract import MEASURES, encode_event, measures_of, parse_event
from hotspots.geo import cell_of
from hotspots.periods import LONDON, local_date, week_start
from producers.synthetic import BBOX, PLACES, SEED_FIGURES, synthetic_year

SEEDS = (2023, 1, 7, 99)


@pytest.fixture(scope="module")
def year():
    return synthetic_year()


def totals(events) -> dict[str, int]:
    sums = [0] * len(MEASURES)
    for event in events:
        sums = [s + m for s, m in zip(sums, measures_of(event), strict=True)]
    return dict(zip(MEASURES, sums, strict=True))


@pytest.mark.parametrize("seed", SEEDS)
def test_totals_are_exact_for_any_seed(seed):
    events = synthetic_year(seed)
    kinds = Counter(e.kind for e in events)
    assert totals(events) == {
        "count": len(events),
        "charged": 305,
        "executed": 168,
        "weapons": 83,
        "drugs_mg": 6_000_000,
        "cash_pence": 26_100_000,
        "sentence_months": 9648,
        "people": 412,
    }
    assert kinds["arrest"] == SEED_FIGURES["arrests"] == 440
    assert kinds["warrant"] == 168 + SEED_FIGURES["warrants_not_executed"]
    assert set(kinds) == {"arrest", "seizure", "warrant", "safeguarding", "court_outcome"}
    for key in ("charged", "weapons", "drugs_mg", "cash_pence", "sentence_months", "people"):
        assert totals(events)[key] == SEED_FIGURES[key]


def test_every_event_round_trips(year):
    for event in year:
        assert parse_event(encode_event(event)) == event
        assert encode_event(parse_event(encode_event(event))) == encode_event(event)


def test_times_ids_coordinates(year):
    start = datetime(2022, 12, 1, tzinfo=LONDON)
    end = datetime(2023, 12, 1, tzinfo=LONDON)
    for e in year:
        assert e.occurred_at.tzinfo is not None and e.occurred_at.utcoffset() is not None
        assert start <= e.occurred_at < end
        assert BBOX[0] <= e.lat <= BBOX[2] and BBOX[1] <= e.lon <= BBOX[3]
        assert e.force == "essex"
    assert len({e.event_id for e in year}) == len(year)
    # Summer times carry BST: a local hour between 05:00 and 07:30 is 04:00-06:30 UTC.
    dawn = [e for e in year if e.kind == "warrant" and e.occurred_at.astimezone(LONDON).month == 7]
    assert dawn and all(e.occurred_at.astimezone(LONDON).utcoffset().total_seconds() == 3600
                        for e in dawn)


def test_field_semantics(year):
    for e in year:
        if e.kind == "seizure":
            assert e.drugs_grams > 0 or e.weapons_count > 0 or e.cash_gbp > 0
            assert (e.drug_class is not None) == (e.drugs_grams > 0)
            assert (e.weapon_type is not None) == (e.weapons_count > 0)
            assert round(e.drugs_grams * 10) == pytest.approx(e.drugs_grams * 10)
        elif e.kind == "warrant":
            assert (e.outcome == "not_executed") == (not e.executed)
        elif e.kind == "court_outcome":
            assert (e.disposal == "custody") == (e.sentence_months > 0)
    operations = Counter(e.operation for e in year)
    assert operations[None] > 0 and operations["Op Raptor"] > 0 and operations["Op Orochi"] > 0
    assert any(e.kind == "court_outcome" and e.disposal != "custody" for e in year)


def test_deterministic_per_seed():
    a, b = synthetic_year(5), synthetic_year(5)
    assert [encode_event(e) for e in a] == [encode_event(e) for e in b]
    other = synthetic_year(6)
    assert [(e.lat, e.lon) for e in other] != [(e.lat, e.lon) for e in a]
    assert totals(other) == totals(a) | {"count": len(other)}


def test_fast_enough():
    began = time.perf_counter()
    synthetic_year(11)
    assert time.perf_counter() - began < 2


@pytest.mark.parametrize("seed", SEEDS)
def test_events_cluster_in_cells(seed):
    events = synthetic_year(seed)
    cells = Counter(cell_of(e.lat, e.lon) for e in events)
    top = sum(n for _, n in cells.most_common(max(1, len(cells) // 10)))
    assert top / len(events) > 0.35


def _town(e) -> str:
    # Nearest place centre, on an equirectangular approximation: fine at town scale.
    return min(PLACES, key=lambda p: math.hypot(e.lat - p[1],
                                                (e.lon - p[2]) * math.cos(math.radians(p[1]))))[0]


@pytest.mark.parametrize("seed", SEEDS)
def test_some_town_has_a_burst_week(seed):
    weekly = Counter((_town(e), week_start(e.occurred_at)) for e in synthetic_year(seed))
    weeks = sorted({w for _, w in weekly})
    bursts = []
    for town, *_ in PLACES:
        counts = [weekly[(town, w)] for w in weeks]
        median = statistics.median(counts)
        if median >= 2:  # a town busy enough for "3x its usual week" to mean something
            bursts += [(town, w) for w, n in zip(weeks, counts, strict=True) if n >= 3 * median]
    assert bursts


def test_warrants_lead_to_nearby_same_day_action(year):
    by_day = Counter()
    for e in year:
        if e.kind in ("arrest", "seizure"):
            by_day[(e.occurred_at.astimezone(LONDON).date(), cell_of(e.lat, e.lon, 7))] += 1
    found = [w for w in year if w.kind == "warrant" and w.outcome != "nothing_found"
             and w.executed]
    linked = [w for w in found
              if by_day[(w.occurred_at.astimezone(LONDON).date(), cell_of(w.lat, w.lon, 7))]]
    assert len(linked) / len(found) > 0.8


def test_court_outcomes_follow_charged_arrests(year):
    # A court outcome sits at its arrest's location, at least four weeks later, on a weekday.
    charged = {}
    for e in year:
        if e.kind == "arrest" and e.charged:
            charged.setdefault((e.lat, e.lon), []).append(local_date(e.occurred_at))
    courts = [e for e in year if e.kind == "court_outcome"]
    assert courts
    for c in courts:
        heard = local_date(c.occurred_at)
        assert any((heard - day).days >= 28 for day in charged.get((c.lat, c.lon), []))
        assert c.occurred_at.astimezone(LONDON).weekday() < 5
