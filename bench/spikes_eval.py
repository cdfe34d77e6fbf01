"""Seeded, Kafka-free evaluation of streams.spikes on a sparse Essex background.

    python -m bench.spikes_eval [--seeds 5] [--per-size 20]

Res-7 H3 cells around the real Essex places of producers.synthetic get a Poisson
background per (cell, kind) at rates that keep most cell-weeks at 0 or 1 events; spikes of
known size are planted in known cell-weeks; every event goes through the Detector in time
order. Scored: recall by spike size, false alarms per 1,000 quiet cell-weeks and alerts per
spike. Writes docs/spikes-evaluation.md and bench/results/spikes-eval-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections import Counter
from dataclasses import asdict, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from h3.api import basic_str as h3s

from hotspots.periods import LONDON
from producers.synthetic import PLACES
from streams.spikes import Alert, Detector, SpikeConfig

SIZES = (2, 3, 4, 5, 6, 8, 10)
KINDS = ("arrest", "seizure")
WEEK0 = date(2023, 1, 2)  # a Monday: week i starts WEEK0 + i weeks
RATE_SHAPE, RATE_SCALE, RATE_CAP = 0.5, 0.6, 1.0  # gamma rates per week, mean ~0.3, cap 1
ROOT = Path(__file__).resolve().parent.parent
PIPELINE_SECTION = "<!-- pipeline:start -->"  # bench.spikes_pipeline writes from there on


def essex_cells(ring: int = 2) -> list[str]:
    """Res-7 cells within ``ring`` steps of each place's centre (19 per place for ring 2)."""
    return sorted({c for _, lat, lon, _, _ in PLACES
                   for c in h3s.grid_disk(h3s.latlng_to_cell(lat, lon, 7), ring)})


def _poisson(rng: random.Random, mu: float) -> int:
    n, p, limit = 0, rng.random(), math.exp(-mu)  # Knuth: fine for mu <= 1
    while p > limit:
        n, p = n + 1, p * rng.random()
    return n


def _at(rng: random.Random, week: int) -> datetime:
    day = WEEK0 + timedelta(weeks=week, days=rng.randrange(7))
    return datetime.combine(day, time(), LONDON) + timedelta(seconds=rng.randrange(86_400))


def run(seed: int, per_size: int = 20, weeks: int = 52, ring: int = 2,
        config: SpikeConfig | None = None, restart_week: int | None = None,
        rate: float | None = None) -> dict[str, Any]:
    """One seeded year: generate, detect, score.

    ``restart_week`` round-trips the detector's state through JSON at that week;
    ``rate`` replaces the drawn background rates with one fixed rate (a stress case).
    """
    config = config or SpikeConfig()
    rng = random.Random(seed)
    pairs = [(c, k) for c in essex_cells(ring) for k in KINDS]
    rates = {p: min(RATE_CAP, rng.gammavariate(RATE_SHAPE, RATE_SCALE)) for p in pairs}
    if rate is not None:
        rates = dict.fromkeys(pairs, rate)
    events: list[tuple[datetime, str, str, str]] = []
    sparse = 0  # background cell-weeks with 0 or 1 events
    for (cell, kind), rate in rates.items():
        for w in range(weeks):
            n = _poisson(rng, rate)
            sparse += n <= 1
            events += [(_at(rng, w), cell, kind, f"bg-{len(events) + i}") for i in range(n)]
    warm = config.min_weeks + 4  # plants leave the baseline a few weeks to settle
    chosen = rng.sample(pairs, per_size * len(SIZES))  # one plant per (cell, kind)
    plants = {(cell, kind, rng.randrange(warm, weeks)): SIZES[i // per_size]
              for i, (cell, kind) in enumerate(chosen)}
    for (cell, kind, w), size in plants.items():
        events += [(_at(rng, w), cell, kind, f"spike-{cell}-{kind}-{w}-{i}") for i in range(size)]
    events.sort()

    det, alerts = Detector(config, start=WEEK0), []
    for at, cell, kind, eid in events:
        week = (at.astimezone(LONDON).date() - WEEK0).days // 7
        if restart_week is not None and week >= restart_week:
            det, restart_week = Detector.from_state(json.loads(json.dumps(det.to_state()))), None
        if (alert := det.observe(cell, kind, at.astimezone(LONDON).date(), eid, at=at)) is not None:
            alerts.append(alert)
    result = score(alerts, plants, rates, weeks, config)
    result["sparse_share"] = sparse / (len(rates) * weeks)
    return result


def _week_of(alert: Alert) -> int:
    return (alert.period_start - WEEK0).days // 7


def score(alerts: list[Alert], plants: dict[tuple[str, str, int], int],
          rates: dict[tuple[str, str], float], weeks: int, config: SpikeConfig) -> dict[str, Any]:
    hits = Counter((a.area, a.kind, _week_of(a)) for a in alerts)
    by_size: dict[int, dict[str, Any]] = {}
    for size in SIZES:
        mine = [k for k, v in plants.items() if v == size]
        found = [hits[k] for k in mine if hits[k]]
        by_size[size] = {"planted": len(mine), "detected": len(found),
                         "max_alerts_per_spike": max(found, default=0)}
    # Quiet: cell-kind-weeks the detector can judge (after warm-up) that hold no plant,
    # nor the cooldown that follows one.
    shadow = {(c, k, w + i) for c, k, w in plants for i in range(1 + config.cooldown_weeks)}
    quiet = len(rates) * (weeks - config.min_weeks) - len(shadow & {
        (c, k, w) for c, k, _ in plants for w in range(config.min_weeks, weeks)})
    false = sum(n for key, n in hits.items() if key not in shadow)
    return {"by_size": by_size, "false_alarms": false, "quiet_cell_weeks": quiet,
            "alerts": len(alerts), "methods": dict(Counter(a.method for a in alerts)),
            "mean_rate": sum(rates.values()) / len(rates), "cells": len(rates) // len(KINDS)}


def evaluate(seeds: range, per_size: int = 20, config: SpikeConfig | None = None,
             restart_week: int | None = None, rate: float | None = None) -> dict[str, Any]:
    """Pool several seeded years into one table."""
    runs = [run(s, per_size, config=config, restart_week=restart_week, rate=rate) for s in seeds]
    table = {size: {key: sum(r["by_size"][size][key] for r in runs) if key != "max_alerts_per_spike"
                    else max(r["by_size"][size][key] for r in runs)
                    for key in ("planted", "detected", "max_alerts_per_spike")} for size in SIZES}
    for row in table.values():
        row["recall"] = row["detected"] / row["planted"] if row["planted"] else 0.0
    big = [table[s] for s in SIZES if s >= 5]
    false, quiet = sum(r["false_alarms"] for r in runs), sum(r["quiet_cell_weeks"] for r in runs)
    return {"seeds": list(seeds), "per_size": per_size, "config": asdict(config or SpikeConfig()),
            "by_size": table, "recall_ge5": sum(r["detected"] for r in big) / sum(r["planted"] for r in big),
            "false_alarms": false, "quiet_cell_weeks": quiet,
            "false_per_1000": 1000 * false / quiet, "cells": runs[0]["cells"],
            "mean_rate": sum(r["mean_rate"] for r in runs) / len(runs),
            "sparse_share": sum(r["sparse_share"] for r in runs) / len(runs),
            "methods": dict(sum((Counter(r["methods"]) for r in runs), Counter()))}


def _table(result: dict[str, Any]) -> list[str]:
    rows = ["| spike size (extra events) | planted | detected | recall | max alerts per spike |",
            "|---:|---:|---:|---:|---:|"]
    rows += [f"| {s} | {r['planted']} | {r['detected']} | {r['recall']:.2f} | "
             f"{r['max_alerts_per_spike']} |" for s, r in result["by_size"].items()]
    rows.append(f"\nRecall for spikes of >= 5 events: **{result['recall_ge5']:.3f}**. False alarms: "
                f"**{result['false_alarms']}** in {result['quiet_cell_weeks']:,} quiet cell-weeks = "
                f"**{result['false_per_1000']:.2f} per 1,000**. Alerts by method: {result['methods']}.")
    return rows


def markdown(main: dict[str, Any], stress: dict[str, Any], sweep: list[dict[str, Any]]) -> str:
    c = main["config"]
    lines = [
        "# Spike alerts: evaluation", "",
        "The detector alone first (offline, no Kafka), then [through the real pipeline]"
        "(#through-the-pipeline).", "",
        "Generated by `python -m bench.spikes_eval` (no Kafka); raw numbers in "
        "`bench/results/spikes-eval-<date>.json`. Detector: `streams/spikes.py`.", "",
        "## Method", "",
        f"* Areas: {main['cells']} res-7 H3 cells, the k-ring of radius 2 around the centre of each "
        "place in `producers.synthetic.PLACES` (real Essex towns); kinds `arrest` and `seizure`, so "
        "each (cell, kind) is one series.",
        f"* Background: 52 ISO weeks from Monday {WEEK0}; each series gets a Poisson rate per week "
        f"drawn from Gamma(shape {RATE_SHAPE}, scale {RATE_SCALE}) capped at {RATE_CAP} (mean "
        f"{main['mean_rate']:.2f}/week); {main['sparse_share']:.1%} of cell-weeks hold 0 or 1 events. "
        "Each event falls on a uniform day and second of its week (Europe/London).",
        f"* Spikes: sizes {', '.join(map(str, SIZES))} extra events, {main['per_size']} per size per "
        f"seed, each in a different series, in a uniform week from week {c['min_weeks'] + 4} on, "
        "spread over the days of that week.",
        f"* Seeds {main['seeds'][0]}..{main['seeds'][-1]}, pooled. Events go through one `Detector` "
        "in time order, with the state round-tripped through JSON at week 30 "
        f"(identical results without the round trip: {main['restart_identical']}).",
        "* Scoring: a spike is detected by any alert for its cell and kind whose period lies in the "
        "planted week; a false alarm is an alert in any other cell-week. Quiet cell-weeks are those "
        f"after the {c['min_weeks']}-week warm-up minus planted weeks and their cooldown week.", "",
        f"Configuration: Poisson week test against the mean of up to {c['baseline_weeks']} trailing "
        f"weeks (>= {c['min_weeks']}), expected floored at 0.5/len(history), alpha {c['alpha']}, "
        f"minimum count {c['min_count']}; EARS C2 on daily counts with the same minimum count, "
        "confirmed by a Poisson tail at the same alpha; "
        f"cooldown: the alert week plus {c['cooldown_weeks']} week.", "",
        "## Results", "", *_table(main), "",
        "### Stress case: every series at 1 event/week", "", *_table(stress), "",
        "At a baseline of 1/week a 5-event spike is hard to tell from chance: 6+ events occur "
        "by chance in 0.06% of weeks, 5+ in 0.37%, so any rule that catches most 5-event spikes "
        "there breaks the 1-per-1,000 false-alarm budget. Bigger spikes are still caught.", "",
        "## Tuning (same seeds)", "",
        "| min count | alpha | recall 3 | recall 4 | recall 5 | recall >= 5 | false /1,000 | "
        "rate 1: recall >= 5 | rate 1: false /1,000 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['min_count']} | {r['alpha']} | {r['mix']['by_size'][3]['recall']:.2f} | "
              f"{r['mix']['by_size'][4]['recall']:.2f} | {r['mix']['by_size'][5]['recall']:.2f} | "
              f"{r['mix']['recall_ge5']:.3f} | {r['mix']['false_per_1000']:.2f} | "
              f"{r['stress']['recall_ge5']:.3f} | {r['stress']['false_per_1000']:.2f} |" for r in sweep]
    by = {(r["min_count"], r["alpha"]): r for r in sweep}
    lines += ["", "Chosen: minimum count 5, alpha 0.001. At alpha 0.001 a minimum count of 3 breaks "
              "the budget of 1 false alarm per 1,000 quiet cell-weeks when every baseline is "
              f"1/week ({by[(3, 0.001)]['stress']['false_per_1000']:.2f}), 4 sits at its edge "
              f"({by[(4, 0.001)]['stress']['false_per_1000']:.2f}) and 5 keeps a margin "
              f"({by[(5, 0.001)]['stress']['false_per_1000']:.2f}), with the same recall for "
              "spikes of 5+ on the sparse mix (near 0.99). A smaller alpha buys fewer false alarms "
              "with recall for 5-event spikes below 0.9. The price of the minimum count: spikes of "
              "3-4 events are rarely flagged; \"1 versus 0\" never is. The daily EARS C2 test is "
              "confirmed by a Poisson tail at the same alpha (streams/spikes.py), so chance "
              "triples or a busy area's ordinary day do not fire it.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--per-size", type=int, default=20)
    args = parser.parse_args()
    seeds = range(1, args.seeds + 1)
    plain = evaluate(seeds, args.per_size)
    result = evaluate(seeds, args.per_size, restart_week=30)
    result["restart_identical"] = plain == result
    stress = evaluate(seeds, args.per_size, rate=1.0)
    sweep = []
    for min_count in (3, 4, 5):
        for alpha in (0.01, 0.001, 0.0001):
            cfg = replace(SpikeConfig(), min_count=min_count, alpha=alpha)
            sweep.append({"min_count": min_count, "alpha": alpha,
                          "mix": evaluate(seeds, args.per_size, cfg),
                          "stress": evaluate(seeds, args.per_size, cfg, rate=1.0)})
    today = datetime.now(UTC).date().isoformat()
    out = ROOT / "bench" / "results" / f"spikes-eval-{today}.json"
    out.write_text(json.dumps({"at": datetime.now(UTC).isoformat(), "main": result,
                               "stress_rate_1": stress, "sweep": sweep}, indent=2))
    doc = ROOT / "docs" / "spikes-evaluation.md"
    # bench.spikes_pipeline's section (the run through the real pipeline) follows; keep it.
    old = doc.read_text() if doc.exists() else ""
    kept = old[old.index(PIPELINE_SECTION):] if PIPELINE_SECTION in old else ""
    doc.write_text(markdown(result, stress, sweep) + ("\n" + kept if kept else ""))
    print("\n".join(_table(result)))
    print(f"wrote {out.relative_to(ROOT)} and docs/spikes-evaluation.md")


if __name__ == "__main__":
    main()
