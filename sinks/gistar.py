"""Getis-Ord Gi* hot and cold spots over H3 cells, with Benjamini-Hochberg FDR.

Weights are binary: w_ij = 1 when j is in cell i's k-ring (i itself included: the "star"),
restricted to the study area. With n cells, x̄ and s the mean and the population standard
deviation of the counts over the whole study area, and W_i = Σ_j w_ij (= S1_i, binary weights),
Ord & Getis (1995; Getis & Ord 1992 for G*_i itself) give

    z_i = (Σ_j w_ij x_j − x̄ W_i) / (s √((n W_i − W_i²) / (n − 1)))

which is, term for term, esda's G_Local(y, w, transform='B', star=True).Zs (esda fills the
diagonal with 1, uses N = n, s² = E[x²] − E[x]², Var = W_i (n − W_i) / (n − 1) · s² / (n x̄)²
on the G scale). tests/unit/test_gistar.py checks the two agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
from h3.api import basic_int as h3i

from hotspots.geo import to_str
from sinks.queries import QueryError, check_args
from sinks.store import Store

GISTAR_PERIODS = ("week", "month")
MAX_K = 5
# ArcGIS Gi_Bin levels: ±3 at 99%, ±2 at 95%, ±1 at 90% confidence.
LEVELS = ((0.01, 3), (0.05, 2), (0.10, 1))


@dataclass(frozen=True)
class Hotspot:
    cell: int
    count: float
    z: float
    p: float  # two-sided, normal approximation
    q: float  # Benjamini-Hochberg adjusted p over the whole study area
    bin: int  # from q: ArcGIS's Gi_Bin with "Apply False Discovery Rate correction"
    p_sim: float | None = None  # two-sided permutation p, when asked for


def study_area(cells_with_events: Iterable[int], k: int) -> list[int]:
    """Every cell with an event plus its k-ring: zero-count cells near events are part of the
    null (they lower x̄), while the empty sea and countryside far from any event are not."""
    area: set[int] = set()
    for cell in cells_with_events:
        area.update(int(c) for c in h3i.grid_disk(cell, k))
    return sorted(area)


def neighbours(area: Sequence[int], k: int) -> list[np.ndarray]:
    """For each cell, the positions of its k-ring in the study area, itself excluded (the star
    self-weight is added in z_scores, as esda adds a unit diagonal)."""
    index = {cell: i for i, cell in enumerate(area)}
    return [np.array(sorted(index[c] for c in h3i.grid_disk(cell, k) if c in index and c != cell),
                     dtype=np.intp) for cell in area]


def _lags(y: np.ndarray, nbrs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lag = y + np.array([y[nb].sum() for nb in nbrs])
    w = 1.0 + np.array([len(nb) for nb in nbrs], dtype=float)
    return lag, w


def z_scores(y: Sequence[float] | np.ndarray, nbrs: Sequence[np.ndarray]) -> np.ndarray:
    """Gi* z for every cell (module docstring). Where it is 0/0 — no variation in the counts,
    or a neighbourhood that covers the whole area — there is no evidence either way: z = 0."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    if n < 2:
        return np.zeros(n)
    lag, w = _lags(y, nbrs)
    s = float(np.sqrt(np.var(y)))  # population s.d. (divide by n), as Ord & Getis and esda
    spread = s * np.sqrt(w * (n - w) / (n - 1))
    ok = spread > 1e-12 * max(1.0, float(np.abs(y).max()))
    z = np.zeros(n)
    z[ok] = (lag[ok] - y.mean() * w[ok]) / spread[ok]
    return z


def p_values(z: Iterable[float]) -> list[float]:
    """Two-sided normal p: P(|Z| ≥ |z|) = erfc(|z|/√2) (no scipy at run time)."""
    return [math.erfc(abs(v) / math.sqrt(2)) for v in z]


def benjamini_hochberg(p: Sequence[float]) -> list[float]:
    """BH (1995) q-values: q_(i) = min_{j ≥ i} p_(j) m / j over the p sorted ascending, capped at 1,
    so q ≤ α exactly where the BH step-up procedure at level α rejects."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    q = [0.0] * m
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, p[i] * m / rank)
        q[i] = running
    return q


def confidence_bin(z: float, q: float) -> int:
    """ArcGIS-style Gi_Bin: ±3/±2/±1 where q ≤ 0.01/0.05/0.10, signed like z; else 0."""
    for alpha, level in LEVELS:
        if q <= alpha and z != 0:
            return level if z > 0 else -level
    return 0


def permutation_p(y: Sequence[float] | np.ndarray, nbrs: Sequence[np.ndarray], permutations: int,
                  seed: int | None = None) -> np.ndarray:
    """Optional pseudo p-values by conditional randomisation, as esda: x_i stays at cell i and
    its |N_i| neighbours are drawn without replacement from the other n − 1 counts (one set of
    draws shared by all cells). esda's p_sim is one-sided in the observed tail, (min(M, R − M)
    + 1) / (R + 1) with M draws ≥ observed; this returns twice that, capped at 1, to be
    two-sided like p. Seeded, so repeatable; but not esda's random stream."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    lag, w = _lags(y, nbrs)
    card = (w - 1).astype(int)
    most = int(card.max()) if n else 0
    rng = np.random.default_rng(seed)
    draws = np.stack([rng.choice(n - 1, size=most, replace=False) for _ in range(permutations)]) \
        if most else np.zeros((permutations, 0), dtype=np.intp)
    out = np.ones(n)
    for i in range(n):
        ids = draws[:, :card[i]]
        sims = y[i] + y[ids + (ids >= i)].sum(axis=1)  # skip position i: "the other n − 1"
        larger = int((sims >= lag[i]).sum())
        out[i] = min(1.0, 2 * (min(larger, permutations - larger) + 1) / (permutations + 1))
    return out


def gi_star(counts: Mapping[int, float] | Sequence[float] | np.ndarray, area: Sequence[int],
            k: int = 1, *, permutations: int = 0, seed: int | None = None) -> list[Hotspot]:
    """Gi* for every cell of the study area, in area order. ``counts`` maps cell -> count
    (missing cells count 0) or is aligned with ``area``."""
    if isinstance(counts, Mapping):
        stray = set(counts) - set(area)
        if stray:
            raise ValueError(f"{len(stray)} counted cells lie outside the study area")
        y = np.array([counts.get(c, 0) for c in area], dtype=float)
    else:
        y = np.asarray(counts, dtype=float)
        if len(y) != len(area):
            raise ValueError(f"{len(y)} counts for {len(area)} cells")
    nbrs = neighbours(area, k)
    z = z_scores(y, nbrs)
    p = p_values(z)
    q = benjamini_hochberg(p)
    sim = permutation_p(y, nbrs, permutations, seed) if permutations > 0 else None
    return [Hotspot(cell, float(y[i]), float(z[i]), p[i], q[i], confidence_bin(z[i], q[i]),
                    None if sim is None else float(sim[i])) for i, cell in enumerate(area)]


# Every cell at one resolution with any event (the study area before its k-ring), and one
# period's counts of one kind: what gistar() runs, and what bench/queries.py times. Every
# event feeds a monthly rollup at every resolution, whatever its time precision
# (streams.rollup.rollup_keys; sinks/reconcile.py checks it), so the monthly rows alone hold
# every such cell: weekly and daily rows add none, and skipping them reads ~4x fewer rows.
STUDY_AREA_SQL = """SELECT DISTINCT cell FROM {db}.rollups FINAL
           WHERE period = 'month' AND res = %(res)s AND count > 0"""

COUNTS_SQL = """SELECT cell, count FROM {db}.rollups FINAL
           WHERE period = %(period)s AND res = %(res)s AND kind = %(kind)s
             AND period_start = %(start)s AND count > 0"""


def gistar(store: Store, period: str, start: date, kind: str, res: int,
           k: int = 1) -> list[dict[str, Any]]:
    """Gi* hot and cold spots of one kind in one week or month, hottest first. The study area is
    every cell at ``res`` with any event of any kind in any period, plus its k-ring, so that
    it does not change with the kind or period asked about."""
    check_args(GISTAR_PERIODS, period, start, res, kind)
    if not 1 <= k <= MAX_K:
        raise QueryError(f"k must be between 1 and {MAX_K}")
    seen = store.query(STUDY_AREA_SQL, {"res": res})
    rows = store.query(
        COUNTS_SQL,
        {"period": period, "res": res, "kind": kind, "start": start})
    area = study_area((int(r["cell"]) for r in seen), k)
    counts = {int(r["cell"]): int(r["count"]) for r in rows}
    spots = sorted(gi_star(counts, area, k), key=lambda h: (-h.z, h.cell))
    return [{"cell": to_str(h.cell), "count": int(h.count), "z": h.z, "p": h.p, "q": h.q,
             "bin": h.bin} for h in spots]
