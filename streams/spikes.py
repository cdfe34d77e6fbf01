"""Spike detection, pure core: is this place's activity above its own normal?

Two tests, both on counts per (area, kind):
  * weekly: a Poisson upper-tail test of the current ISO week (Europe/London) against the
    mean of a trailing baseline of past weeks ("poisson-week");
  * daily: CDC EARS C2 (Hutwagner et al. 2003), today against 7 days before a 2-day guard,
    confirmed by a Poisson upper tail of today against that baseline's mean ("ears-c2").
Counts are sparse (most cell-weeks hold 0 or 1 events), where a z-score or a tail
probability alone calls "1 versus 0" a spike. Both tests therefore also need a minimum
count, the idea of Farrington et al. 1996 and Noufaily et al. 2013 (no alert unless the
period holds at least a few cases; surveillance's ``limit54`` uses 5 in 4 weeks).
Tuned on ``bench.spikes_eval`` (docs/spikes-evaluation.md): min_count 5, alpha 0.001.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

Method = Literal["poisson-week", "ears-c2"]


def ears_c2(daily: Sequence[int], baseline: int = 7, guard: int = 2,
            sd_floor: float = 0.2, threshold: float = 3.0) -> tuple[float, bool]:
    """EARS C2 on ``daily`` (oldest first, the last item is today): (statistic, > threshold).

    The baseline is the ``baseline`` days before a ``guard``-day gap before today. A flat
    baseline has sd 0, so sd is floored (EARS implementations use a minimum sigma): 0.2
    keeps the statistic finite yet sensitive, being a fifth of the smallest non-zero change
    in a count. For sparse counts it makes 1 versus 0 score 5, which is why the Detector
    adds a minimum count; ears_c2 itself stays the textbook statistic.
    """
    if len(daily) < baseline + guard + 1:
        raise ValueError(f"need {baseline + guard + 1} days, got {len(daily)}")
    base = daily[len(daily) - 1 - guard - baseline: len(daily) - 1 - guard]
    mean = sum(base) / baseline
    sd = math.sqrt(sum((x - mean) ** 2 for x in base) / (baseline - 1))
    stat = (daily[-1] - mean) / max(sd, sd_floor)
    return stat, stat > threshold


def _upper_tail(observed: int, mean: float, log_pmf: Callable[[int], float],
                ratio: Callable[[int], float]) -> float:
    """P(X >= observed) for a unimodal count law; ratio(x) = pmf(x + 1) / pmf(x)."""
    if observed <= 0:
        return 1.0
    if observed <= mean:  # the head is the small part: 1 - P(X < observed) loses nothing
        term, head = math.exp(log_pmf(0)), 0.0
        for x in range(observed):
            head += term
            term *= ratio(x)
        return min(1.0, max(0.0, 1.0 - head))
    # Past the mode: sum the (decreasing) tail upwards, so tiny p-values keep full precision.
    if (lp := log_pmf(observed)) < -745.0:  # below the smallest float
        return 0.0
    term, total, x = math.exp(lp), 0.0, observed
    while term > total * 1e-17:
        total += term
        term *= ratio(x)
        x += 1
    return min(1.0, total)


def poisson_upper_p(observed: int, expected: float) -> float:
    """Exact P(X >= observed) for X ~ Poisson(expected), from the pmf in logs."""
    if expected <= 0:
        return 1.0 if observed <= 0 else 0.0
    mu = expected
    return _upper_tail(observed, mu, lambda x: -mu + x * math.log(mu) - math.lgamma(x + 1),
                       lambda x: mu / (x + 1))


def negbin_upper_p(observed: int, expected: float, size: float) -> float:
    """P(X >= observed), X negative binomial with mean ``expected``, var mu + mu^2/size.

    ``size`` -> infinity is Poisson; a small size allows for overdispersed (bursty) areas.
    """
    if expected <= 0:
        return 1.0 if observed <= 0 else 0.0
    q = expected / (expected + size)
    return _upper_tail(
        observed, expected,
        # log Gamma(x + size) / Gamma(size) as a sum: lgamma differences lose digits for big size.
        lambda x: (math.fsum(math.log(size + i) for i in range(x)) - math.lgamma(x + 1)
                   + size * math.log1p(-q) + x * math.log(q)),
        lambda x: (x + size) / (x + 1) * q)


@dataclass(frozen=True, slots=True)
class Decision:
    observed: int
    expected: float
    p_value: float
    alert: bool
    method: str
    reason: str  # "spike", "below_min_count", "not_significant" or "warm_up"


def week_test(current: int, history: Sequence[int], min_weeks: int = 8, alpha: float = 0.001,
              min_count: int = 5) -> Decision:
    """Poisson upper-tail test of this week's count against the trailing baseline's mean.

    The expected count is floored at half an event over the whole baseline
    (0.5 / len(history)): an all-zero history does not make any count significant by
    dividing by zero, and the floor shrinks as evidence of quiet grows. The minimum count
    (Farrington et al. 1996) is what stops 1 versus 0 alerting: with alpha 0.001 even an
    expected rate of 1/week needs 6 events, so 5 only matters on quieter baselines, where
    3 would alert on chance triples (see docs/spikes-evaluation.md).
    """
    return week_test_total(current, sum(history), len(history), min_weeks, alpha, min_count)


def week_test_total(current: int, total: int, weeks: int, min_weeks: int = 8,
                    alpha: float = 0.001, min_count: int = 5) -> Decision:
    """:func:`week_test` given the baseline's ``total`` count over ``weeks`` weeks: the test
    needs no more, and the detector need not build the history list for every event."""
    if weeks < min_weeks:
        return Decision(current, 0.0, 1.0, False, "poisson-week", "warm_up")
    expected = max(total / weeks, 0.5 / weeks)
    p = poisson_upper_p(current, expected)
    reason = ("below_min_count" if current < min_count else
              "spike" if p < alpha else "not_significant")
    return Decision(current, expected, p, reason == "spike", "poisson-week", reason)


@dataclass(frozen=True, slots=True)
class Alert:
    area: str  # an H3 cell string or a district name
    area_type: str  # "cell" or "district"
    kind: str
    period: Literal["week", "day"]
    period_start: date
    observed: int
    expected: float
    p_value: float  # the Poisson upper tail of ``observed`` given ``expected`` (both methods)
    method: Method
    first_seen: datetime
    triggering_event_id: str

    @property
    def alert_id(self) -> str:
        """The same for the same spike however often it is re-derived (e.g. after a restart)."""
        text = "|".join((self.area, self.kind, self.period, self.period_start.isoformat(),
                         self.method))
        return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class SpikeConfig:
    area_type: str = "cell"
    baseline_weeks: int = 26  # trailing weeks compared with the current one
    min_weeks: int = 8  # no weekly test before this many weeks of observation
    alpha: float = 0.001
    min_count: int = 5
    cooldown_weeks: int = 1  # after an alert: silent for the rest of its week and this many more
    daily: bool = True  # also run EARS C2 on daily counts
    ears_baseline: int = 7
    ears_guard: int = 2
    # A feed silent for longer than this (a replay of another year, an outage) starts its
    # coverage again: the weeks in between are unknown, not quiet.
    resume_gap_days: int = 28


# Three calls an event in the spike agents, over a few thousand distinct days: 0.13 µs a
# remembered Monday against 1.2 µs computed.
@functools.lru_cache(maxsize=1 << 14)
def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _date(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


@dataclass(slots=True)
class Coverage:
    """The days a feed has covered: weeks before ``start`` are unknown, not zero.

    Only events within the retained window (``baseline_weeks`` before the latest week)
    extend the coverage backwards, so a stray event from another year cannot turn years
    of silence into a quiet baseline; a jump forward past ``resume_gap_days`` restarts it.
    """

    start: date | None = None
    latest: date | None = None
    _oldest: tuple[date, int, date] | None = field(default=None, init=False, repr=False,
                                                   compare=False)  # (latest, weeks, oldest)

    def oldest_week(self, config: SpikeConfig) -> date:
        """The first week still retained: asked for every event, so kept until latest moves."""
        assert self.latest is not None
        cached = self._oldest
        if cached is None or cached[0] != self.latest or cached[1] != config.baseline_weeks:
            cached = self._oldest = (self.latest, config.baseline_weeks, _monday(self.latest)
                                     - timedelta(weeks=config.baseline_weeks))
        return cached[2]

    def see(self, day: date, config: SpikeConfig) -> bool:
        """Extend the coverage with one event's day; False when the day is too old to count."""
        if self.latest is not None and day > self.latest + timedelta(days=config.resume_gap_days):
            self.start = None
        self.latest = max(self.latest or day, day)
        if _monday(day) < self.oldest_week(config):
            return False
        if self.start is None or day < self.start:
            self.start = day
        return True

    def to_state(self) -> dict[str, Any]:
        return {"start": _iso(self.start), "latest": _iso(self.latest)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Coverage:
        return cls(_date(state.get("start")), _date(state.get("latest")))


@dataclass(slots=True)
class Series:
    """One (area, kind)'s counts by week and by day, and the week of its last alert."""

    weeks: dict[date, int] = field(default_factory=dict)
    days: dict[date, int] = field(default_factory=dict)
    alerted: date | None = None  # week start of the last alert

    def prune(self, coverage: Coverage, config: SpikeConfig) -> None:
        assert coverage.latest is not None
        oldest = coverage.oldest_week(config)
        first_day = coverage.latest - timedelta(days=config.ears_baseline + config.ears_guard)
        for w in [w for w in self.weeks if w < oldest]:
            del self.weeks[w]
        for d in [d for d in self.days if d < first_day]:
            del self.days[d]
        if self.alerted is not None and self.alerted < oldest:
            self.alerted = None

    def to_state(self) -> dict[str, Any]:
        return {"w": {w.isoformat(): n for w, n in sorted(self.weeks.items())},
                "d": {d.isoformat(): n for d, n in sorted(self.days.items())},
                "a": _iso(self.alerted)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Series:
        return cls({date.fromisoformat(w): n for w, n in state["w"].items()},
                   {date.fromisoformat(d): n for d, n in state["d"].items()}, _date(state["a"]))


def observe(s: Series, coverage: Coverage, config: SpikeConfig, area: str, kind: str, day: date,
            event_id: str, at: datetime | None = None) -> Alert | None:
    """Count one event in ``s`` and test its week and day; ``coverage`` has already seen it.

    One alert per spike: once a week alerts, the series is silent for the rest of that
    week and ``cooldown_weeks`` more, whichever test would fire. Counts past the window do
    not change a decision, so ``s`` is pruned when it is saved (:meth:`Series.prune`), not here.
    """
    week = _monday(day)
    s.weeks[week] = s.weeks.get(week, 0) + 1
    s.days[day] = s.days.get(day, 0) + 1
    if s.alerted is not None and s.alerted <= week < s.alerted + timedelta(
            weeks=1 + config.cooldown_weeks):
        return None
    alert = _weekly(s, coverage, config, area, kind, week, event_id, at) or _daily(
        s, coverage, config, area, kind, day, event_id, at)
    if alert is not None:
        s.alerted = week
    return alert


def _alert(config: SpikeConfig, area: str, kind: str, period: Literal["week", "day"], start: date,
           observed: int, expected: float, p: float, method: Method, event_id: str,
           at: datetime | None) -> Alert:
    return Alert(area, config.area_type, kind, period, start, observed, expected, p, method,
                 at or datetime.now(UTC), event_id)


def _weekly(s: Series, coverage: Coverage, c: SpikeConfig, area: str, kind: str, week: date,
            event_id: str, at: datetime | None) -> Alert | None:
    assert coverage.start is not None
    if s.weeks[week] < c.min_count:
        return None  # week_test's minimum count, decided before the history is built
    # The first whole week observed (a week the detector joined midway would look quiet).
    whole = _monday(coverage.start + timedelta(days=6))
    first = max(whole, week - timedelta(weeks=c.baseline_weeks))
    n = (week - first).days // 7  # whole weeks observed before this one
    # The weeks first .. week-1 (keys are Mondays; a series keeps at most the window's).
    total = sum(count for w, count in s.weeks.items() if first <= w < week)
    d = week_test_total(s.weeks[week], total, n, c.min_weeks, c.alpha, c.min_count)
    if not d.alert:
        return None
    return _alert(c, area, kind, "week", week, d.observed, d.expected, d.p_value, "poisson-week",
                  event_id, at)


def _daily(s: Series, coverage: Coverage, c: SpikeConfig, area: str, kind: str, day: date,
           event_id: str, at: datetime | None) -> Alert | None:
    assert coverage.start is not None
    span = c.ears_baseline + c.ears_guard
    if not c.daily or (day - coverage.start).days < span or s.days.get(day, 0) < c.min_count:
        return None
    series = [s.days.get(day - timedelta(days=span - i), 0) for i in range(span + 1)]
    _, exceeded = ears_c2(series, c.ears_baseline, c.ears_guard)
    if not exceeded:
        return None
    # EARS's Gaussian reading of a small count misleads: in a busy area (a district, ~2 a day)
    # 5 in a day scores over 3 one day in a few dozen. The day must also be improbable under
    # a Poisson law with the baseline's mean (floored as the week test's: half an event).
    base = series[: c.ears_baseline]
    expected = sum(base) / len(base)
    p = poisson_upper_p(s.days[day], max(expected, 0.5 / len(base)))
    if p >= c.alpha:
        return None
    return _alert(c, area, kind, "day", day, s.days[day], expected, p, "ears-c2", event_id, at)


class Detector:
    """Rolling weekly and daily counts per (area, kind) over one feed; one alert per spike.

    Weeks and days before the detector's ``start`` (its first observation unless given)
    are unknown, not zero (see :class:`Coverage`). Only ``baseline_weeks`` + 1 weeks and the
    EARS window of days are kept per key, and keys with nothing left in the window are dropped.
    The worker (streams.alerts) keeps the same :class:`Series` and :class:`Coverage` per key in
    a table instead.
    """

    def __init__(self, config: SpikeConfig | None = None, start: date | None = None) -> None:
        self.config = config or SpikeConfig()
        self.coverage = Coverage(start)
        self._series: dict[tuple[str, str], Series] = {}

    @property
    def start(self) -> date | None:
        return self.coverage.start

    @property
    def latest(self) -> date | None:
        return self.coverage.latest

    def observe(self, area: str, kind: str, day: date, event_id: str,
                at: datetime | None = None) -> Alert | None:
        """Count one event (``day`` is its Europe/London date) and test its week and day."""
        if not self.coverage.see(day, self.config):
            return None  # too late to matter: outside the retained window
        s = self._series.setdefault((area, kind), Series())
        return observe(s, self.coverage, self.config, area, kind, day, event_id, at)

    def to_state(self) -> dict[str, Any]:
        """A JSON-able snapshot (config included), e.g. for a Faust table."""
        if self.latest is not None:
            for key in list(self._series):
                self._series[key].prune(self.coverage, self.config)
                if not self._series[key].weeks and not self._series[key].alerted:
                    del self._series[key]
        return {
            "v": 1, "config": asdict(self.config), **self.coverage.to_state(),
            "series": [[area, kind, s.to_state()] for (area, kind), s in sorted(self._series.items())],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Detector:
        if state.get("v") != 1:
            raise ValueError(f"unknown detector state version {state.get('v')!r}")
        det = cls(SpikeConfig(**state["config"]))
        det.coverage = Coverage.from_state(state)
        for area, kind, s in state["series"]:
            det._series[(area, kind)] = Series.from_state(s)
        return det
