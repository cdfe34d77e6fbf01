"""Privacy tiers for exports: analyst (exact), partner and public (disclosure-controlled).

The rule is the ONS "10-5 rule" for post-tabular disclosure control: counts below 10 are
suppressed and every other count is rounded to the nearest 5. Zeros are suppressed too (a
published zero tells as much about a small area as a published 1).

Rounding alone blurs a subtraction but does not stop it: a published total minus the published
members recovers the suppressed remainder. So every release is a set of tables, one per
(period, kind), each with its total, and complementary (secondary) suppression makes sure that,
in each table with a published total, the suppressed members are none, or at least two whose
true values add up to 10 or more: an attacker who knew the published members exactly would
learn only a remainder of 10+ shared between 2+ unknown members. Secondary suppression takes the
smallest published members first (the least information lost).

Partner releases are at H3 resolution 8 at most, public ones at 7 at most. Cells whose count is
suppressed are left out of the cell tables (an absent cell reads as "none or fewer than 10", so
its presence is not disclosed either); districts are always listed, with a null count.
Differencing across separate releases (cells against districts, weeks against months) is
protected by the rounding only, as in ONS practice: release one view per period to a recipient.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

Tier = Literal["analyst", "partner", "public"]
TIER_NAMES: tuple[str, ...] = ("analyst", "partner", "public")
THRESHOLD = 10
ROUND_TO = 5
RULE = (f"ONS 10-5 rule: counts below {THRESHOLD} (zero included) are suppressed, every other "
        f"count is rounded to the nearest {ROUND_TO}; complementary suppression ensures that "
        f"within each published total the suppressed members are none, or at least two whose "
        f"true sum is {THRESHOLD} or more. Totals are rounded the same way. Suppressed cells are "
        f"omitted; suppressed districts show a null count.")
EXACT = "none: exact counts (analyst tier, for use inside the force only)"

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class TierRule:
    name: str
    scope: str  # the token scope that may ask for it (hotspots.tokens.SCOPES)
    max_res: int  # the finest H3 resolution released
    controlled: bool


TIERS: dict[str, TierRule] = {
    "analyst": TierRule("analyst", "read", 8, False),
    "partner": TierRule("partner", "partner", 8, True),
    "public": TierRule("public", "public", 7, True),
}


def check_tier(tier: str, res: int) -> TierRule:
    """The tier's rule; ValueError for an unknown tier or a resolution finer than it allows."""
    rule = TIERS.get(tier)
    if rule is None:
        raise ValueError(f"tier {tier!r} unknown; choose one of {TIER_NAMES}")
    if res > rule.max_res:
        raise ValueError(f"the {tier} tier is released at H3 resolution {rule.max_res} or "
                         f"coarser; ask for res {rule.max_res}")
    return rule


def describe(tier: str) -> dict[str, Any]:
    """What every release states about itself."""
    rule = TIERS[tier]
    meta: dict[str, Any] = {"tier": tier, "disclosure_control": RULE if rule.controlled else EXACT,
                            "max_res": rule.max_res}
    if rule.controlled:
        meta |= {"threshold": THRESHOLD, "rounding": ROUND_TO}
    return meta


def round_count(value: int) -> int:
    """To the nearest multiple of ROUND_TO (no ties: integers are never halfway)."""
    return ROUND_TO * ((2 * value + ROUND_TO) // (2 * ROUND_TO))


def suppressed(values: Mapping[K, int], threshold: int = THRESHOLD) -> set[K]:
    """The members to suppress in one table whose total is sum(values): primary (below the
    threshold), then complementary until the suppressed remainder is safe (module docstring)."""
    hidden = {k for k, v in values.items() if v < threshold}
    if sum(values.values()) < threshold:
        return hidden  # the total is suppressed too: there is nothing to subtract from
    order = sorted(values, key=lambda k: (values[k], str(k)))
    while hidden and (len(hidden) < 2 or sum(values[k] for k in hidden) < threshold):
        hidden.add(next(k for k in order if k not in hidden))
    return hidden


def publish(values: Mapping[K, int]) -> tuple[dict[K, int | None], int | None]:
    """Each member's published value (None: suppressed) and the published total."""
    hidden = suppressed(values)
    total = sum(values.values())
    shown = {k: None if k in hidden else round_count(v) for k, v in values.items()}
    return shown, round_count(total) if total >= THRESHOLD else None


def release_cells(rows: Iterable[Mapping[str, Any]], tier: str, res: int) -> dict[str, Any]:
    """/v1/cells rows (cell, period_start, kind, count) as a release of ``tier``: one table per
    (period_start, kind) with its total; suppressed cells are left out."""
    rule = check_tier(tier, res)
    data = [dict(r) for r in rows]
    if not rule.controlled:
        return {**describe(tier), "res": res, "rows": data, "totals": None}
    tables: dict[tuple[str, str], dict[str, int]] = {}
    for r in data:
        table = tables.setdefault((str(r["period_start"]), str(r["kind"])), {})
        table[str(r["cell"])] = table.get(str(r["cell"]), 0) + int(r["count"])
    out, totals = [], []
    for (start, kind), counts in sorted(tables.items()):
        shown, total = publish(counts)
        totals.append({"period_start": start, "kind": kind, "count": total})
        out += [{"cell": cell, "period_start": start, "kind": kind, "count": value}
                for cell, value in sorted(shown.items()) if value is not None]
    return {**describe(tier), "res": res, "rows": out, "totals": totals}


def release_districts(rows: Iterable[Mapping[str, Any]], tier: str, res: int) -> dict[str, Any]:
    """District rollup rows (district, cells, count) as a release of ``tier``: every district,
    the count null where suppressed, and the published total. The number of cells per district
    is left out of controlled releases (a small count of its own)."""
    rule = check_tier(tier, res)
    data = [dict(r) for r in rows]
    if not rule.controlled:
        return {**describe(tier), "res": res, "rows": data,
                "total": sum(int(r["count"]) for r in data)}
    counts = {str(r["district"]): int(r["count"]) for r in data}
    shown, total = publish(counts)
    return {**describe(tier), "res": res, "total": total,
            "rows": [{"district": d, "count": shown[d]} for d in counts]}
