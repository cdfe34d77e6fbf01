"""A synthetic year of Essex Police Serious Violence Unit enforcement events.

Real places, invented events. Whatever the seed, the year's totals equal SEED_FIGURES exactly;
the seed only moves where and when things happen. Events cluster in a few hotspots per town,
follow a seasonal rhythm with multi-week operation bursts, and hang together: warrants bring
same-day arrests, seizures and safeguarding nearby; court outcomes follow charged arrests.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from hotspots.contract import Arrest, CourtOutcome, Event, Safeguarding, Seizure, Warrant
from hotspots.periods import LONDON

# Calibration targets: headline totals that every synthetic year reproduces exactly, in the
# integer units of hotspots.contract.MEASURES. The events that add up to them are invented.
SEED_FIGURES: dict[str, int] = {
    "arrests": 440,                 # arrest events
    "charged": 305,                 # of which charged=True
    "warrants_executed": 168,       # warrant events with executed=True
    "warrants_not_executed": 12,    # executed=False, outcome="not_executed"
    "weapons": 83,                  # sum of seizure weapons_count
    "drugs_mg": 6_000_000,          # 6 kg of drugs seized
    "cash_pence": 26_100_000,       # £261,000 cash seized
    "sentence_months": 804 * 12,    # 804 years of custody
    "people": 412,                  # people safeguarded
}
# Shape, not calibration: how many events carry those totals.
N_SEIZURES, N_WEAPON_SEIZURES, N_CASH_SEIZURES = 230, 55, 90
N_SAFEGUARDING, N_COURT, N_CUSTODY = 240, 210, 165

START, DAYS = date(2022, 12, 1), 365  # 2022-12-01 .. 2023-11-30, Europe/London
BBOX = (51.452, -0.020, 52.093, 1.297)  # Essex Police area: lat_min, lon_min, lat_max, lon_max
_M_PER_DEG = 111_320.0

# name, lat, lon, relative weight, county-lines town (where the operations run)
PLACES: tuple[tuple[str, float, float, float, bool], ...] = (
    ("Basildon", 51.5761, 0.4886, 0.14, True),
    ("Southend-on-Sea", 51.5459, 0.7077, 0.14, True),
    ("Harlow", 51.7727, 0.1023, 0.10, True),
    ("Chelmsford", 51.7356, 0.4685, 0.09, False),
    ("Colchester", 51.8959, 0.8919, 0.09, True),
    ("Grays", 51.4755, 0.3271, 0.08, True),
    ("Clacton-on-Sea", 51.7896, 1.1542, 0.07, True),
    ("Braintree", 51.8787, 0.5528, 0.05, False),
    ("Waltham Abbey", 51.6870, -0.0040, 0.04, True),
    ("Canvey Island", 51.5232, 0.5836, 0.04, True),
    ("Tilbury", 51.4622, 0.3580, 0.04, True),
    ("Witham", 51.8007, 0.6397, 0.03, False),
    ("Brentwood", 51.6215, 0.3050, 0.03, False),
    ("Loughton", 51.6494, 0.0735, 0.03, True),
    ("Stansted Airport", 51.8860, 0.2389, 0.02, False),
)
# Multi-week operations in county-lines towns; start dates come from the seed.
_OPERATIONS = (("Basildon", "Op Raptor"), ("Southend-on-Sea", "Op Orochi"),
               ("Harlow", "Op Raptor"), ("Clacton-on-Sea", "Op Raptor"))
_OP_DAYS, _OP_BOOST = 21, 5.0

_OUTCOMES = {"drugs_found": 35, "weapons_found": 12, "cash_found": 8,
             "arrest_made": 25, "nothing_found": 20}
_NEEDS = {"drugs_found": "drugs", "weapons_found": "weapons", "cash_found": "cash"}
_CATEGORIES = {"county_lines": 35, "cuckooing": 20, "child_exploitation": 20,
               "modern_slavery": 10, "missing_person": 15}
_WEAPONS = {"knife": 40, "zombie knife": 10, "machete": 12, "firearm": 6,
            "imitation firearm": 6, "knuckleduster": 4, "baton": 4}
_WARRANT_OFFENCES = ("possession with intent to supply class A",
                     "being concerned in the supply of class A", "money laundering")
_STREET_OFFENCES = ("possession of a bladed article", "possession of an offensive weapon",
                    "grievous bodily harm", "robbery", "violent disorder",
                    "possession with intent to supply class A")
_DISPOSALS = {"suspended": 35, "community": 30, "fine": 10, "acquitted": 25}


def _pick(rng: random.Random, table: dict[str, int]) -> str:
    return rng.choices(list(table), weights=list(table.values()))[0]


def _split(total: int, weights: list[float], minimum: int = 1) -> list[int]:
    """Integer parts >= minimum, proportional to weights, summing exactly to total."""
    spare = total - minimum * len(weights)
    if spare < 0 or not weights:
        raise ValueError(f"cannot split {total} into {len(weights)} parts >= {minimum}")
    iw = [max(1, round(w * 1e6)) for w in weights]  # integer weights: no float drift
    whole = sum(iw)
    parts = [spare * w // whole for w in iw]
    # The remainder goes to the largest fractional parts; the index breaks ties stably.
    order = sorted(range(len(iw)), key=lambda i: (-(spare * iw[i] % whole), i))
    for i in order[: spare - sum(parts)]:
        parts[i] += 1
    return [minimum + p for p in parts]


def _clamp(lat: float, lon: float) -> tuple[float, float]:
    return (round(min(max(lat, BBOX[0]), BBOX[2]), 6), round(min(max(lon, BBOX[1]), BBOX[3]), 6))


def _jitter(rng: random.Random, lat: float, lon: float, sigma_m: float) -> tuple[float, float]:
    return (lat + rng.gauss(0, sigma_m) / _M_PER_DEG,
            lon + rng.gauss(0, sigma_m) / (_M_PER_DEG * math.cos(math.radians(lat))))


def _hotspots(rng: random.Random, lat: float, lon: float) -> list[tuple[float, ...]]:
    """2-4 tight sub-centres (lat, lon, sigma_m, weight); the first, like a worst estate, leads."""
    return [(*_clamp(*_jitter(rng, lat, lon, 1200)), rng.uniform(200, 450), 1.0 if i == 0 else
             rng.uniform(0.2, 0.6)) for i in range(rng.randint(2, 4))]


def _point(rng: random.Random, place: int, spots: list) -> tuple[float, float]:
    _, lat0, lon0, _, _ = PLACES[place]
    for _ in range(20):  # resample rather than pile points up on the boundary
        if rng.random() < 0.85:  # most enforcement lands in a few tight hotspots
            lat, lon, sigma, _ = rng.choices(spots, weights=[s[3] for s in spots])[0]
        else:  # a thinner town-wide scatter
            lat, lon, sigma = lat0, lon0, 1500.0
        lat, lon = _jitter(rng, lat, lon, sigma)
        if BBOX[0] <= lat <= BBOX[2] and BBOX[1] <= lon <= BBOX[3]:
            break
    return _clamp(lat, lon)


def _hour(rng: random.Random, kind: str) -> float:
    if kind == "warrant":  # mostly dawn entries
        return rng.uniform(5, 7.5) if rng.random() < 0.8 else rng.uniform(9, 20)
    if kind == "safeguarding":
        return rng.uniform(8, 22)
    return rng.uniform(0, 6) if rng.random() < 0.1 else rng.triangular(6, 23.9, 18)


def _at(day: int, hour: float) -> datetime:
    """Wall-clock time in Europe/London, day counted from START."""
    midnight = datetime.combine(START + timedelta(days=day), time(), tzinfo=LONDON)
    return midnight + timedelta(minutes=int(hour * 60))


def synthetic_year(seed: int = 2023) -> list[Event]:
    rng = random.Random(seed)
    spots = [_hotspots(rng, p[1], p[2]) for p in PLACES]
    ops: dict[int, tuple[int, int, str]] = {}
    for town, op in _OPERATIONS:
        start = rng.randrange(14, DAYS - _OP_DAYS - 14)
        ops[[p[0] for p in PLACES].index(town)] = (start, start + _OP_DAYS, op)
    # One weight per (place, day): town size x summer peak x week-to-week noise x operations.
    cum, acc = [], 0.0
    for p, place in enumerate(PLACES):
        noise = [rng.uniform(0.6, 1.4) for _ in range(DAYS // 7 + 1)]
        start, end, _ = ops.get(p, (0, 0, ""))
        for day in range(DAYS):
            acc += (place[3] * (1 + 0.25 * math.cos(2 * math.pi * (day - 226) / DAYS))
                    * noise[day // 7] * (_OP_BOOST if start <= day < end else 1.0))
            cum.append(acc)
    recs: list[dict[str, Any]] = []

    def add(kind: str, at: datetime, lat: float, lon: float, op: str | None, **f: Any) -> dict:
        recs.append(rec := {"kind": kind, "at": at, "lat": lat, "lon": lon, "op": op, "f": f})
        return rec

    def draw(kind: str, **f: Any) -> dict:
        p, day = divmod(rng.choices(range(len(cum)), cum_weights=cum)[0], DAYS)
        start, end, op = ops.get(p, (0, 0, None))
        if not start <= day < end:  # the gangs team tags some county-lines work anyway
            tagged = PLACES[p][4] and kind != "safeguarding" and rng.random() < 0.3
            op = "Op Raptor" if tagged else None
        return add(kind, _at(day, _hour(rng, kind)), *_point(rng, p, spots[p]), op, **f)

    def near(w: dict, kind: str, minutes: tuple[int, int], **f: Any) -> dict:
        at = w["at"] + timedelta(minutes=rng.randint(*minutes))
        last = datetime.combine(at.date(), time(23, 59), tzinfo=LONDON)  # same day
        lat, lon = _clamp(*_jitter(rng, w["lat"], w["lon"], 40))
        return add(kind, min(at, last), lat, lon, w["op"], **f)

    n_arrests, linked_arrests = SEED_FIGURES["arrests"], 0
    for i in range(SEED_FIGURES["warrants_executed"] + SEED_FIGURES["warrants_not_executed"]):
        executed = i < SEED_FIGURES["warrants_executed"]
        outcome = _pick(rng, _OUTCOMES) if executed else "not_executed"
        w = draw("warrant", executed=executed, outcome=outcome)
        if outcome in _NEEDS:
            near(w, "seizure", (10, 180), need=_NEEDS[outcome])
        linked = rng.randint(1, 3) if outcome == "arrest_made" else (
            rng.randint(1, 2) if outcome in _NEEDS and rng.random() < 0.6 else 0)
        for _ in range(min(linked, n_arrests - linked_arrests)):
            near(w, "arrest", (0, 90), offence=rng.choice(_WARRANT_OFFENCES))
            linked_arrests += 1
        if executed and rng.random() < 0.25:
            near(w, "safeguarding", (30, 240),
                 category=rng.choice(("cuckooing", "county_lines", "child_exploitation")))

    def fill(kind: str, n: int, **f: Any) -> list[dict]:
        have = [r for r in recs if r["kind"] == kind]
        return have + [draw(kind, **f) for _ in range(n - len(have))]

    arrests = fill("arrest", n_arrests)
    for r in arrests:
        r["f"].setdefault("offence", rng.choice(_STREET_OFFENCES))
        r["f"]["charged"] = False
    for r in rng.sample(arrests, SEED_FIGURES["charged"]):
        r["f"]["charged"] = True

    # Seizures: choose which carry weapons / cash / drugs, then share each total exactly.
    seizures = fill("seizure", N_SEIZURES, need=None)
    for comp, k in (("weapons", N_WEAPON_SEIZURES), ("cash", N_CASH_SEIZURES)):
        forced = [r for r in seizures if r["f"]["need"] == comp]
        free = [r for r in seizures if r["f"]["need"] != comp]
        for r in forced + rng.sample(free, max(0, k - len(forced))):
            r[comp] = True
    for r in seizures:
        if r["f"].pop("need") == "drugs" or not (r.get("weapons") or r.get("cash")) \
                or rng.random() < 0.5:
            r["f"]["drug_class"] = "B" if rng.random() < 0.2 else "A"  # cannabis vs crack/heroin

    def share(group: list[dict], total: int, sigma: float, minimum: int = 1) -> Any:
        # Skewed shares: a few big finds among many small ones, summing exactly to total.
        weights = [rng.lognormvariate(0, sigma) * (3 if r["f"].get("drug_class") == "B" else 1)
                   for r in group]  # cannabis comes in bulk
        return zip(group, _split(total, weights, minimum), strict=True)

    drugs = [r for r in seizures if "drug_class" in r["f"]]
    for r, dg in share(drugs, SEED_FIGURES["drugs_mg"] // 100, 1.2, 5):
        r["f"]["drugs_grams"] = dg / 10  # whole decigrams, so milligram sums are exact
    for r, n in share([r for r in seizures if r.get("weapons")], SEED_FIGURES["weapons"], 0.8):
        r["f"].update(weapons_count=n, weapon_type=_pick(rng, _WEAPONS))
    for r, gbp in share([r for r in seizures if r.get("cash")], SEED_FIGURES["cash_pence"] // 100,
                        1.1, 20):
        r["f"]["cash_gbp"] = float(gbp)  # whole pounds
    for r, n in share(fill("safeguarding", N_SAFEGUARDING), SEED_FIGURES["people"], 0.7):
        r["f"]["people"] = n
        r["f"].setdefault("category", _pick(rng, _CATEGORIES))

    # Court outcomes: months after a charged arrest, on a weekday, at the arrest location.
    eligible = [r for r in arrests if r["f"]["charged"] and (r["at"].date() - START).days <= 334]
    heard = rng.sample(eligible, min(N_COURT, len(eligible)))
    custody = min(N_CUSTODY, len(heard))
    months = _split(SEED_FIGURES["sentence_months"],
                    [rng.lognormvariate(0, 0.7) for _ in range(custody)], 3)
    for i, a in enumerate(heard):
        day = (a["at"].date() - START).days
        day += rng.randint(28, min(240, DAYS - 3 - day))  # leaves room to skip a weekend
        weekday = (START + timedelta(days=day)).weekday()
        day += 7 - weekday if weekday >= 5 else 0  # courts sit on weekdays
        add("court_outcome", _at(day, rng.uniform(10, 16)), a["lat"], a["lon"], a["op"],
            sentence_months=months[i] if i < custody else 0,
            disposal="custody" if i < custody else _pick(rng, _DISPOSALS))

    models = {"arrest": Arrest, "seizure": Seizure, "warrant": Warrant,
              "safeguarding": Safeguarding, "court_outcome": CourtOutcome}
    recs.sort(key=lambda r: r["at"].astimezone(UTC))  # stable: generation order breaks ties
    counters = dict.fromkeys(models, 0)
    events: list[Event] = []
    for r in recs:
        counters[r["kind"]] += 1
        events.append(models[r["kind"]](
            event_id=f"syn-{seed}-{r['kind']}-{counters[r['kind']]:05d}",
            # UTC: an ambiguous London wall time would not compare equal after a round trip.
            occurred_at=r["at"].astimezone(UTC), lat=r["lat"], lon=r["lon"],
            force="essex", operation=r["op"], **r["f"]))
    return events
