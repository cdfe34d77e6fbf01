"""Replay the real Essex police.uk files through the pipeline; compare with pandas and h3."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import h3
import pandas as pd
import pytest

from tests.integration.conftest import cli_json, run_cli
from tests.shared_data import ESSEX_CSVS, needs

pytestmark = pytest.mark.integration

DATA = ESSEX_CSVS
FILES = sorted(DATA.glob("*.csv.gz"))


def _cell(lat: float, lon: float, res: int) -> str:
    cell = h3.latlng_to_cell(lat, lon, 8)
    return cell if res == 8 else h3.cell_to_parent(cell, res)


def expected(res: int) -> dict[str, Counter]:
    """Counts per (cell, period start, kind), computed from the CSVs without the product's code."""
    street = pd.concat([pd.read_csv(f) for f in FILES if "street" in f.name])
    street = street.dropna(subset=["Latitude", "Longitude"])
    # A Crime ID is the event id: a repeat is the same crime, counted once.
    street = street[street["Crime ID"].isna() | ~street["Crime ID"].duplicated()]
    month: Counter = Counter()
    week: Counter = Counter()
    for lat, lon, m in zip(street["Latitude"], street["Longitude"], street["Month"], strict=True):
        month[(_cell(lat, lon, res), f"{m}-01", "recorded_crime")] += 1
    searches = pd.concat([pd.read_csv(f) for f in FILES if "stop-and-search" in f.name])
    searches = searches.dropna(subset=["Latitude", "Longitude"])
    local = pd.to_datetime(searches["Date"], utc=True).dt.tz_convert("Europe/London")
    for lat, lon, when, outcome in zip(searches["Latitude"], searches["Longitude"], local,
                                       searches["Outcome"], strict=True):
        kind = "arrest" if outcome == "Arrest" else "stop_search"
        day = when.date()
        cell = _cell(lat, lon, res)
        week[(cell, (day - timedelta(days=day.weekday())).isoformat(), kind)] += 1
        month[(cell, day.replace(day=1).isoformat(), kind)] += 1
    return {"month": month, "week": week}


def _cells(config, period: str, res: int) -> Counter:
    rows = cli_json(config, "query", "cells", "--from", "2024-11-25", "--to", "2025-12-31",
                    "--period", period, "--res", str(res))
    return Counter({(r["cell"], r["period_start"], r["kind"]): r["count"] for r in rows})


@needs(DATA)
def test_replay_of_real_essex_files_matches_an_independent_count(live_stack) -> None:
    assert FILES, f"no police.uk files at {DATA} (set HOTSPOTS_SHARED_DATA)"
    report = cli_json_report(live_stack)
    assert report["skipped"] == {"no_coordinates": report["read"] - report["produced"]}
    assert report["acknowledged"] == report["produced"]
    run_cli(live_stack, "wait", "--timeout", "600")
    truth = {res: expected(res) for res in (8, 6)}
    for res in (8, 6):
        for period in ("month", "week"):
            assert _cells(live_stack, period, res) == truth[res][period], (period, res)

    # The same files again: the same event ids, so no count moves.
    cli_json_report(live_stack)
    run_cli(live_stack, "wait", "--timeout", "600")
    assert _cells(live_stack, "month", 8) == truth[8]["month"]
    assert _cells(live_stack, "week", 8) == truth[8]["week"]


def cli_json_report(config) -> dict:
    import json

    out = run_cli(config, "replay", "police-uk", *map(str, FILES), timeout=900)
    return json.loads(out)
