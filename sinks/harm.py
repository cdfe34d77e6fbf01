"""Crime harm per cell, after the Cambridge Crime Harm Index (Sherman, Neyroud & Neyroud 2016).

The CCHI weights each crime by the days of imprisonment at the Sentencing Council starting
point for a first offender. police.uk publishes only broad crime types, so HARM_WEIGHTS maps
each type to one representative offence: a category-level approximation, and *our documented
assumptions*, not the official CCHI values (which are per Home Office offence code).

Conversions: a week is 7 days, a month 30, a year 365. Non-custodial starting points become
days as the CCHI does for them (days of earnings, days of unpaid work): Band A/B/C fine = 50%/
100%/150% of a week's income = 3/5/8 days (5 working days a week, rounded up); low/medium/
high-level community order = 40/80/150 hours of unpaid work at 8 hours a day = 5/10/20 days.

Design. The rollups count recorded crime per kind, not per crime type, so harm is computed
here by one bounded query over ``events FINAL`` (one week or month), and nothing is cached.
A materialized view from ``events`` into a Summing/AggregatingMergeTree would keep reads on
small pre-aggregated tables, but ``events`` is a ReplacingMergeTree: a redelivered batch is
inserted again and deduplicated only at merge or FINAL time, while an MV would add it twice.
The price is that harm reads raw rows (one period of recorded crime) instead of rollups.

The CCHI leaves out proactively detected offences (police-found drugs and weapons), which
measure enforcement effort rather than harm to victims; ``proactive=False`` does the same,
and is the fairer choice for ``gap`` (enforcement creates those records).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from hotspots.geo import to_str
from sinks.queries import check_args
from sinks.store import Store

HARM_PERIODS = ("week", "month")

# Days per police.uk crime type. Each: representative offence; Sentencing Council guideline;
# the category taken as typical; its starting point (adult first offender) as we read it.
# Check against sentencingcouncil.org.uk before operational use.
HARM_WEIGHTS: dict[str, int] = {
    # Assault occasioning ABH (s.47 OAPA 1861), Assault offences guideline (2021), culpability B
    # / harm 2: 36 weeks' custody. Overstates violence without injury, understates sexual offences.
    "Violence and sexual offences": 252,
    # Street robbery, Robbery guideline (2016), culpability B / harm 2: 4 years' custody.
    "Robbery": 1460,
    # Domestic burglary (s.9 Theft Act 1968), Burglary offences guideline (2012), category 2:
    # 1 year's custody (kept as our assumption after the 2022 revision). Non-dwelling is lower.
    "Burglary": 365,
    # Possession of a class B drug (s.5(2) MDA 1971), Drug offences guideline (2021), class B:
    # Band B fine = 5 days. Proactively detected; supply, far more harmful, is a minority here.
    "Drugs": 5,
    # Possession of a bladed article in public (s.139 CJA 1988), Bladed articles and offensive
    # weapons guideline (2018), culpability A / harm 2: 3 months' custody. Proactively detected.
    "Possession of weapons": 90,
    # Criminal damage under £5,000 (s.1(1) CDA 1971), Criminal damage guideline (2019),
    # culpability B / harm 2: Band B fine = 5 days. Arson, rarer, is far higher.
    "Criminal damage and arson": 5,
    # Fear or provocation of violence (s.4 POA 1986), Public order guideline (2020),
    # culpability B / harm 2: medium-level community order = 10 days.
    "Public order": 10,
    # Theft from a shop, Theft offences guideline (2016), culpability B / harm 3 (goods under
    # £200): Band B fine = 5 days.
    "Shoplifting": 5,
    # Theft (general), Theft offences guideline (2016): theft from the person raises the harm
    # category; culpability B / harm 3: medium-level community order = 10 days.
    "Theft from the person": 10,
    # Theft from a vehicle, Theft (general) guideline (2016), culpability B / harm 4 (under £500):
    # low-level community order = 5 days. Theft of a vehicle is higher.
    "Vehicle crime": 5,
    # Theft (general), Theft offences guideline (2016), culpability B / harm 4: low-level
    # community order = 5 days.
    "Other theft": 5,
    # As other theft: Theft (general), culpability B / harm 4: low-level community order = 5 days.
    "Bicycle theft": 5,
    # A mixed residual class (fraud, perverting justice, animal offences...): no single
    # guideline; assumed a low-level community order = 5 days.
    "Other crime": 5,
    # Anti-social behaviour is an incident, not a crime: no sentence, no harm weight.
    "Anti-social behaviour": 0,
}
# A crime type not in the table (another feed's wording) is weighted as "Other crime".
DEFAULT_TYPE = "Other crime"
PROACTIVE = frozenset({"Drugs", "Possession of weapons"})
ENFORCEMENT_KINDS = ("arrest", "seizure", "warrant")


def harm_days(crime_type: str) -> int:
    return HARM_WEIGHTS.get(crime_type, HARM_WEIGHTS[DEFAULT_TYPE])


def _check(period: str, start: date, res: int) -> None:
    check_args(HARM_PERIODS, period, start, res=res)


def _harm(store: Store, period: str, start: date, res: int, proactive: bool) -> dict[int, list[int]]:
    """{cell: [crimes, harm_days]}. Weeks take day-precision crime only, as the weekly rollups."""
    _check(period, start, res)
    where = ("week_start = %(start)s AND time_precision != 'month'" if period == "week"
             else "month_start = %(start)s")
    rows = store.query(
        f"SELECT cell{res} AS cell, JSONExtractString(payload, 'crime_type') AS crime_type, "
        "count() AS n FROM {db}.events FINAL "
        f"WHERE kind = 'recorded_crime' AND {where} GROUP BY cell, crime_type", {"start": start})
    out: dict[int, list[int]] = {}
    for r in rows:
        if not proactive and r["crime_type"] in PROACTIVE:
            continue
        acc = out.setdefault(int(r["cell"]), [0, 0])
        acc[0] += int(r["n"])
        acc[1] += int(r["n"]) * harm_days(r["crime_type"])
    return out


def _ranks(values: Mapping[int, tuple[int, ...]]) -> dict[int, int]:
    """Competition ranks, 1 = largest; equal values share a rank (1, 2, 2, 4), so a gap
    between two tied cells is zero rather than an artefact of their ids."""
    order = sorted(values, key=lambda c: (*(-v for v in values[c]), c))
    ranks: dict[int, int] = {}
    for i, cell in enumerate(order):
        tied = i > 0 and values[cell] == values[order[i - 1]]
        ranks[cell] = ranks[order[i - 1]] if tied else i + 1
    return ranks


def harm(store: Store, period: str, start: date, res: int = 8,
         proactive: bool = True) -> list[dict[str, Any]]:
    """Recorded crimes and their harm (days) per cell in one week or month, most harmful first."""
    by_cell = _harm(store, period, start, res, proactive)
    ranks = _ranks({c: (h, n) for c, (n, h) in by_cell.items()})
    return [{"cell": to_str(c), "crimes": by_cell[c][0], "harm_days": by_cell[c][1],
             "harm_rank": ranks[c]} for c in sorted(ranks, key=ranks.__getitem__)]


def gap(store: Store, period: str, start: date, res: int = 8,
        proactive: bool = True) -> list[dict[str, Any]]:
    """Harm rank against enforcement rank (arrests + seizures + warrants, from the rollups) over
    every cell with either. gap = enforcement_rank − harm_rank: positive = under-enforced
    relative to harm. Most under-enforced first."""
    by_cell = _harm(store, period, start, res, proactive)
    rows = store.query(
        """SELECT cell, sum(count) AS n FROM {db}.rollups FINAL
           WHERE period = %(period)s AND res = %(res)s AND period_start = %(start)s
             AND kind IN %(kinds)s AND count > 0 GROUP BY cell""",
        {"period": period, "res": res, "start": start, "kinds": ENFORCEMENT_KINDS})
    enforcement = {int(r["cell"]): int(r["n"]) for r in rows}
    cells = set(by_cell) | set(enforcement)
    h = {c: (by_cell.get(c, [0, 0])[1], by_cell.get(c, [0, 0])[0]) for c in cells}
    harm_rank = _ranks(h)
    enf_rank = _ranks({c: (enforcement.get(c, 0),) for c in cells})
    out: list[dict[str, Any]] = [{"cell": to_str(c), "harm_days": h[c][0], "harm_rank": harm_rank[c],
            "enforcement": enforcement.get(c, 0), "enforcement_rank": enf_rank[c],
            "gap": enf_rank[c] - harm_rank[c]} for c in cells]
    return sorted(out, key=lambda r: (-r["gap"], r["harm_rank"]))
