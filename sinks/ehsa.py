"""Emerging hot spot analysis (EHSA): ArcGIS Pro's 17 classes from weekly Gi* and Mann-Kendall.

Each of the N weeks ending at ``end_week`` gets its own spatial Gi* (sinks.gistar) over one
fixed study area (gistar's: every cell with any event at the resolution, plus its k-ring).
A week is a *significant hot (cold) spot* when its Gi_Bin, from the BH FDR-adjusted q, is
≥ 2 (≤ −2): 95% confidence or better. The trend is the Mann-Kendall test on the cell's N Gi*
z-scores, significant when its two-sided p ≤ alpha (0.05). "≥ 90%" means hot in at least
9/10 of the N weeks (integer arithmetic: 10·hot ≥ 9·N). ArcGIS's definitions, hot side:

- new: hot in the final week only, never hot before.
- consecutive: a single uninterrupted run of ≥ 2 hot weeks ending at the final week, never hot
  before the run, and < 90% of weeks hot.
- intensifying: hot in ≥ 90% of weeks including the final one; significant upward trend.
- persistent: hot in ≥ 90% of weeks including the final one; no significant trend.
- diminishing: hot in ≥ 90% of weeks including the final one; significant downward trend.
- sporadic: hot in the final week, on-again off-again before, < 90% hot, never a cold spot.
- oscillating: hot in the final week, a cold spot in some earlier week, < 90% hot.
- historical: not hot in the final week, but hot in ≥ 90% of weeks.

Cold classes mirror these on −z and −bin (intensifying cold = z falling significantly).
Overlaps are settled in ArcGIS's listing order, first match wins: new and consecutive come
before oscillating (hot in the final week only, after cold weeks, is new_hot_spot). The sign
of the final week wins over the other sign's historical class. Else "no_pattern".
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from hotspots.contract import KINDS
from hotspots.geo import RESOLUTIONS, to_str
from hotspots.periods import iso_week_label
from hotspots.settings import _Common
from sinks.gistar import MAX_K, STUDY_AREA_SQL, gi_star, study_area
from sinks.queries import QueryError
from sinks.store import Store

SIGNIFICANT = 2  # |Gi_Bin| ≥ 2: 95% confidence or better, FDR-adjusted
MIN_WEEKS, MAX_WEEKS = 10, 260
PATTERNS = ("new", "consecutive", "intensifying", "persistent", "diminishing", "sporadic",
            "oscillating", "historical")
CLASSES = ("no_pattern", *(f"{p}_{side}_spot" for side in ("hot", "cold") for p in PATTERNS))
COLUMNS = ("cell", "class", "trend_z", "trend_p", "hot_weeks", "cold_weeks", "last_z")

Publish = Callable[[dict[str, Any]], None]


def mann_kendall(series: Sequence[float]) -> tuple[int, float, float]:
    """(S, z, two-sided p): Var(S) = [n(n−1)(2n+5) − Σ t(t−1)(2t+5)] / 18 over tie groups of
    size t; z = (S ∓ 1)/√Var (continuity correction), 0 when S = 0 or Var = 0."""
    x = [float(v) for v in series]
    n = len(x)
    s = sum((x[j] > x[i]) - (x[j] < x[i]) for i in range(n) for j in range(i + 1, n))
    var = (n * (n - 1) * (2 * n + 5)
           - sum(t * (t - 1) * (2 * t + 5) for t in Counter(x).values())) / 18
    if s == 0 or var <= 0:
        return s, 0.0, 1.0
    z = (s - 1 if s > 0 else s + 1) / math.sqrt(var)
    return s, z, math.erfc(abs(z) / math.sqrt(2))


def _hot_pattern(z: Sequence[float], bins: Sequence[int], alpha: float) -> str | None:
    """The hot-side pattern of one series, or None (cold side: call with −z, −bins)."""
    n = len(bins)
    hot = [b >= SIGNIFICANT for b in bins]
    hot_weeks = sum(hot)
    mostly = 10 * hot_weeks >= 9 * n
    if not hot[-1]:
        return "historical" if mostly else None
    run = next((i for i, h in enumerate(reversed(hot)) if not h), n)  # trailing hot run
    if hot_weeks == 1:
        return "new"
    if run == hot_weeks and not mostly:
        return "consecutive"
    if mostly:
        _, tz, tp = mann_kendall(z)
        if tp <= alpha:
            return "intensifying" if tz > 0 else "diminishing"
        return "persistent"
    return "oscillating" if any(b <= -SIGNIFICANT for b in bins[:-1]) else "sporadic"


def classify(z_series: Sequence[float], bins: Sequence[int], alpha: float = 0.05) -> str:
    """One cell's class (module docstring) from its Gi* z-scores and bins, oldest first."""
    if len(z_series) != len(bins) or len(bins) < 2:
        raise ValueError("classify needs equally long z and bin series of at least 2 steps")
    hot = _hot_pattern(z_series, bins, alpha)
    cold = _hot_pattern([-v for v in z_series], [-b for b in bins], alpha)
    for side, pattern in sorted((("hot", hot), ("cold", cold)), key=lambda p: p[1] == "historical"):
        if pattern is not None:
            return f"{pattern}_{side}_spot"
    return "no_pattern"


def _check(end_week: date, kind: str, res: int, weeks: int, k: int) -> None:
    if end_week.weekday() != 0:
        raise QueryError(f"{end_week} is not a Monday (the start of an ISO week)")
    if kind not in KINDS:
        raise QueryError(f"kind {kind!r} unknown; choose one of {KINDS}")
    if res not in RESOLUTIONS:
        raise QueryError(f"resolution {res} not kept; choose one of {sorted(RESOLUTIONS)}")
    if not MIN_WEEKS <= weeks <= MAX_WEEKS:
        raise QueryError(f"weeks must be between {MIN_WEEKS} and {MAX_WEEKS}")
    if not 1 <= k <= MAX_K:
        raise QueryError(f"k must be between 1 and {MAX_K}")


def _analyse(store: Store, end_week: date, kind: str, res: int, weeks: int,
             k: int) -> list[dict[str, Any]]:
    """EHSA rows with integer cells, in study-area order."""
    _check(end_week, kind, res, weeks, k)
    starts = [end_week - timedelta(weeks=weeks - 1 - i) for i in range(weeks)]
    seen = store.query(STUDY_AREA_SQL, {"res": res})
    rows = store.query(
        """SELECT period_start, cell, count FROM {db}.rollups FINAL
           WHERE period = 'week' AND res = %(res)s AND kind = %(kind)s
             AND period_start BETWEEN %(first)s AND %(last)s AND count > 0""",
        {"res": res, "kind": kind, "first": starts[0], "last": end_week})
    area = study_area((int(r["cell"]) for r in seen), k)
    counts: dict[date, dict[int, int]] = {w: {} for w in starts}
    for r in rows:
        counts[r["period_start"]][int(r["cell"])] = int(r["count"])
    spots = [gi_star(counts[w], area, k) for w in starts]  # one Gi* per week, same area
    out = []
    for i, cell in enumerate(area):
        z = [week[i].z for week in spots]
        bins = [week[i].bin for week in spots]
        _, tz, tp = mann_kendall(z)
        out.append({"cell": cell, "class": classify(z, bins), "trend_z": tz, "trend_p": tp,
                    "hot_weeks": sum(b >= SIGNIFICANT for b in bins),
                    "cold_weeks": sum(b <= -SIGNIFICANT for b in bins), "last_z": z[-1]})
    return out


def ehsa(store: Store, end_week: date, kind: str, res: int = 8, weeks: int = 12,
         k: int = 1) -> list[dict[str, Any]]:
    """Every study-area cell's class over the ``weeks`` weeks ending at ``end_week``:
    patterned cells first, hottest last week first."""
    rows = _analyse(store, end_week, kind, res, weeks, k)
    rows.sort(key=lambda r: (r["class"] == "no_pattern", -r["last_z"], r["cell"]))
    return [{**r, "cell": to_str(r["cell"])} for r in rows]


def update_classes(store: Store, end_week: date, kind: str, res: int = 8, weeks: int = 12,
                   k: int = 1, publish: Publish | None = None) -> list[dict[str, Any]]:
    """Store the classes for ``end_week`` and return (and publish) each cell's change from its
    latest class of an earlier week (none stored: no_pattern). Idempotent per week: a transition
    already stored for this week with the same class is neither inserted nor published again.
    Publishing (and ``publish.flush()``, when it has one) comes before the inserts, so a failed
    publish leaves nothing stored and a retry publishes again: at least once."""
    rows = _analyse(store, end_week, kind, res, weeks, k)
    key = {"res": res, "kind": kind, "week": end_week}
    prev = {int(r["cell"]): r["prev"] for r in store.query(
        """SELECT cell, argMax(class, week_start) AS prev FROM {db}.ehsa_classes FINAL
           WHERE res = %(res)s AND kind = %(kind)s AND week_start < %(week)s GROUP BY cell""", key)}
    stored = {int(r["cell"]): r["class"] for r in store.query(
        """SELECT cell, class FROM {db}.ehsa_classes FINAL
           WHERE res = %(res)s AND kind = %(kind)s AND week_start = %(week)s""", key)}
    done = {int(r["cell"]): r["to_class"] for r in store.query(
        """SELECT cell, to_class FROM {db}.ehsa_transitions FINAL
           WHERE res = %(res)s AND kind = %(kind)s AND week_start = %(week)s""", key)}
    now = datetime.now(UTC)
    changes = [r for r in rows if r["class"] != prev.get(r["cell"], "no_pattern")
               and done.get(r["cell"]) != r["class"]]
    transitions = [{"res": res, "kind": kind, "cell": to_str(r["cell"]),
                    "week": iso_week_label(end_week), "week_start": end_week.isoformat(),
                    "from_class": prev.get(r["cell"], "no_pattern"), "to_class": r["class"],
                    "trend_z": r["trend_z"], "trend_p": r["trend_p"], "last_z": r["last_z"],
                    "computed_at": now.isoformat()} for r in changes]
    if publish is not None and transitions:
        for record in transitions:
            publish(record)
        flush = getattr(publish, "flush", None)
        if callable(flush):
            flush()
    store.insert("ehsa_transitions",
                 [(res, kind, r["cell"], end_week, t["from_class"], t["to_class"], now)
                  for r, t in zip(changes, transitions, strict=True)],
                 ("res", "kind", "cell", "week_start", "from_class", "to_class", "computed_at"))
    store.insert("ehsa_classes", [(res, kind, r["cell"], end_week, r["class"], now) for r in rows
                                  if stored.get(r["cell"]) != r["class"]],
                 ("res", "kind", "cell", "week_start", "class", "computed_at"))
    return transitions


class TransitionPublishError(RuntimeError):
    pass


class TransitionPublisher:
    """Sends transition records as JSON to the transitions topic, keyed by cell, acks=all.
    The kafka-python producer is made on first use (or injected, for tests)."""

    def __init__(self, settings: _Common, producer: Any = None) -> None:
        self.topic, self.bootstrap = settings.transitions_topic, settings.bootstrap
        self.settings = settings
        self.producer = producer
        self.failed: list[str] = []
        self.sent = 0

    def _producer(self) -> Any:
        if self.producer is None:
            from kafka import KafkaProducer
            from kafka.errors import KafkaError

            from hotspots.kafka_security import connect_failure, kafka_kwargs

            try:
                self.producer = KafkaProducer(**kafka_kwargs(self.settings), acks="all",
                                              enable_idempotence=True, retries=10,
                                              request_timeout_ms=15000, max_block_ms=15000,
                                              bootstrap_timeout_ms=15000)
            except KafkaError as exc:
                raise TransitionPublishError(connect_failure(self.settings, exc)) from None
        return self.producer

    def __call__(self, record: dict[str, Any]) -> None:
        cell = record["cell"]
        future = self._producer().send(self.topic, key=cell.encode(), value=orjson.dumps(record))
        future.add_errback(lambda exc: self.failed.append(f"{cell}: {exc}"))
        self.sent += 1

    def flush(self, timeout: float = 60.0) -> None:
        if self.producer is None:
            return
        try:
            self.producer.flush(timeout=timeout)
        except Exception as exc:  # kafka-python raises KafkaTimeoutError and others
            raise TransitionPublishError(f"flush failed: {exc}") from None
        if self.failed:
            raise TransitionPublishError(f"{len(self.failed)} of {self.sent} transitions not "
                                         f"acknowledged (first: {self.failed[0]})")

    def close(self) -> None:
        if self.producer is not None:
            self.producer.close(timeout=10)


def kafka_publisher(settings: _Common, producer: Any = None) -> TransitionPublisher:
    return TransitionPublisher(settings, producer)
