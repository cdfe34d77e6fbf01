"""Ground truth for integration tests, computed independently of the pipeline's own code."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import h3

from hotspots.contract import Arrest, CourtOutcome, Event, Safeguarding, Seizure, Warrant

LONDON = ZoneInfo("Europe/London")
# Real Essex centres; events scatter a few hundred metres around them.
CENTRES = [(51.5761, 0.4886), (51.5459, 0.7077), (51.7727, 0.1023), (51.7356, 0.4685),
           (51.8959, 0.8919), (51.4755, 0.3271), (51.6870, -0.0040), (51.8787, 0.5528)]


def random_events(year: int, n: int, tag: str, seed: int) -> list[Event]:
    rng = random.Random(seed)
    start = datetime(year, 1, 1, tzinfo=UTC)
    out: list[Event] = []
    for i in range(n):
        lat0, lon0 = rng.choice(CENTRES)
        when = start + timedelta(seconds=rng.randrange(365 * 86400))
        common = {"event_id": f"{tag}-{i:06d}", "occurred_at": when, "force": "essex",
                  "lat": round(lat0 + rng.gauss(0, 0.01), 6), "lon": round(lon0 + rng.gauss(0, 0.015), 6)}
        kind = rng.choice(["arrest", "seizure", "warrant", "safeguarding", "court_outcome"])
        if kind == "arrest":
            out.append(Arrest(**common, charged=rng.random() < 0.7))
        elif kind == "seizure":
            out.append(Seizure(**common, drugs_grams=rng.randrange(0, 5000) / 10,
                               weapons_count=rng.randrange(0, 3), cash_gbp=rng.randrange(0, 900000) / 100))
        elif kind == "warrant":
            executed = rng.random() < 0.9
            out.append(Warrant(**common, executed=executed,
                               outcome="drugs_found" if executed else "not_executed"))
        elif kind == "safeguarding":
            out.append(Safeguarding(**common, people=rng.randrange(1, 4), category="county_lines"))
        else:
            out.append(CourtOutcome(**common, sentence_months=rng.randrange(0, 120), disposal="custody"))
    return out


def weekly_truth(events: list[Event], res: int) -> Counter[tuple[str, str, str]]:
    """(cell, ISO Monday in London, kind) -> count, straight from h3 and zoneinfo."""
    truth: Counter[tuple[str, str, str]] = Counter()
    for ev in events:
        cell = h3.latlng_to_cell(ev.lat, ev.lon, 8)
        if res != 8:
            cell = h3.cell_to_parent(cell, res)
        local = ev.occurred_at.astimezone(LONDON).date()
        monday = local - timedelta(days=local.weekday())
        truth[(cell, monday.isoformat(), ev.kind)] += 1
    return truth
