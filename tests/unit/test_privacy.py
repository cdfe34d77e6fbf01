"""Privacy tiers: the ONS 10-5 rule with complementary suppression, as properties over any
table, and through the real exports (GeoJSON, GeoPackage, districts) on the shared store.
Data for the exports lives in 2090."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import geopandas as gpd
import h3
import pyogrio
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import box, mapping

from hotspots import cli
from hotspots.contract import Arrest
from sinks import privacy
from sinks.privacy import ROUND_TO, THRESHOLD, publish, release_cells, release_districts, suppressed
from tests.unit.test_store import worker_output, write

# Seed, database and deadline come from the hypothesis profile (tests/conftest.py).
PROPERTY = settings(max_examples=400)
MONDAY = date.fromisocalendar(2090, 10, 1)
CENTRE = (51.7356, 0.4685)
COUNTS = (23, 12, 4, 1)  # arrests per res-8 cell that week: two publishable, two small

# Small counts are the interesting ones: most draws fall below or near the threshold.
counts = st.integers(0, 14) | st.integers(0, 60)
tables = st.dictionaries(st.text("abcdefgh", min_size=1, max_size=3), counts, max_size=10)


def check_published(true: int, shown: int | None) -> None:
    """A published value is at least the threshold, a multiple of 5, and within 2 of the truth."""
    if shown is not None:
        assert shown >= THRESHOLD and shown % ROUND_TO == 0 and abs(shown - true) <= ROUND_TO // 2


def check_unrecoverable(values: dict[str, int], shown: dict[str, int | None],
                        total: int | None) -> None:
    """The worst case: an attacker who knows every published member's TRUE value and the true
    total subtracts; what remains (the suppressed members' sum) must be shared by two or more
    members and be at least the threshold, and each suppressed value must have another value
    consistent with everything known (move one unit between two suppressed members)."""
    hidden = [k for k, v in shown.items() if v is None]
    if total is None or not hidden:
        return
    remainder = sum(values.values()) - sum(values[k] for k in values if shown[k] is not None)
    assert len(hidden) >= 2 and remainder >= THRESHOLD, (values, shown)
    for k in hidden:
        other = next(j for j in hidden if j != k and (values[k] > 0 or values[j] > 0))
        moved = dict(values)
        step = 1 if values[k] > 0 else -1
        moved[k] -= step
        moved[other] += step
        assert min(moved.values()) >= 0 and sum(moved.values()) == sum(values.values())
        assert moved[k] != values[k]  # same published table, different value for k


@PROPERTY
@given(tables)
def test_the_10_5_rule_on_any_table(values: dict[str, int]) -> None:
    shown, total = publish(values)
    assert set(shown) == set(values)
    for k, v in values.items():
        check_published(v, shown[k])
        if v < THRESHOLD:
            assert shown[k] is None  # primary suppression, zeros included
    true_total = sum(values.values())
    assert (total is None) == (true_total < THRESHOLD)
    if total is not None:
        check_published(true_total, total)
    check_unrecoverable(values, shown, total)


@PROPERTY
@given(tables)
def test_complementary_suppression_takes_the_smallest_first(values: dict[str, int]) -> None:
    hidden = suppressed(values)
    primary = {k for k, v in values.items() if v < THRESHOLD}
    extra = hidden - primary
    kept = set(values) - hidden
    if extra and kept:  # nothing published was smaller than a complementary suppression
        assert max(values[k] for k in extra) <= min(values[k] for k in kept)


def test_rounding_and_a_worked_example() -> None:
    assert [privacy.round_count(n) for n in (10, 11, 12, 13, 14, 15, 17, 18, 22, 23)] == [
        10, 10, 10, 15, 15, 15, 15, 20, 20, 25]
    # 4 and 1 are small; their sum 5 could be read off the total, so 12 goes too.
    shown, total = publish({"a": 23, "b": 12, "c": 4, "d": 1})
    assert shown == {"a": 25, "b": None, "c": None, "d": None} and total == 40
    assert publish({"a": 50, "b": 3}) == ({"a": None, "b": None}, 55)  # one small one: both go
    assert publish({"a": 7}) == ({"a": None}, None)
    assert publish({}) == ({}, None)


cell_rows = st.lists(
    st.fixed_dictionaries({"cell": st.sampled_from([f"88194e{i:03x}fffff" for i in range(12)]),
                           "period_start": st.sampled_from(["2090-03-06", "2090-03-13"]),
                           "kind": st.sampled_from(["arrest", "seizure"]),
                           "count": st.integers(1, 14) | st.integers(1, 80)}),
    max_size=40, unique_by=lambda r: (r["cell"], r["period_start"], r["kind"]))


def measures(release: dict[str, Any]) -> list[int | None]:
    """Every count a release carries: its rows' and its totals'."""
    rows = [r["count"] for r in release["rows"]]
    totals = release.get("totals") or []
    return rows + [t["count"] for t in totals] + (
        [release["total"]] if "total" in release else [])


@PROPERTY
@given(cell_rows, st.sampled_from(["partner", "public"]))
def test_no_controlled_cell_release_holds_a_small_count(rows: list[dict], tier: str) -> None:
    release = release_cells(rows, tier, 7)
    assert release["tier"] == tier and release["disclosure_control"] == privacy.RULE
    assert all(m is None or (m >= THRESHOLD and m % ROUND_TO == 0) for m in measures(release))
    # Per table (period, kind): the omitted cells cannot be recovered from its total.
    for t in release["totals"]:
        members = {r["cell"]: r["count"] for r in rows
                   if (r["period_start"], r["kind"]) == (t["period_start"], t["kind"])}
        published = {r["cell"]: r["count"] for r in release["rows"]
                     if (r["period_start"], r["kind"]) == (t["period_start"], t["kind"])}
        shown = {c: published.get(c) for c in members}
        for c, v in members.items():
            check_published(v, shown[c])
        check_unrecoverable(members, shown, t["count"])
    assert release_cells(rows, "analyst", 8)["rows"] == rows  # the analyst tier is exact


@PROPERTY
@given(st.dictionaries(st.sampled_from(["Basildon", "Braintree", "Chelmsford", "Colchester",
                                        "Harlow", "outside"]), counts, min_size=1),
       st.sampled_from(["partner", "public"]))
def test_no_controlled_district_release_holds_a_small_count(values: dict[str, int],
                                                            tier: str) -> None:
    rows = [{"district": d, "cells": min(v, 3), "count": v} for d, v in values.items()]
    release = release_districts(rows, tier, 7)
    assert [r["district"] for r in release["rows"]] == list(values)  # every district listed
    assert all(set(r) == {"district", "count"} for r in release["rows"])  # no cell counts
    assert all(m is None or (m >= THRESHOLD and m % ROUND_TO == 0) for m in measures(release))
    check_unrecoverable(values, {r["district"]: r["count"] for r in release["rows"]},
                        release["total"])


def test_a_suppressed_total_is_null_in_the_files(tmp_path) -> None:
    from sinks import gis

    release = release_cells([{"cell": h3.latlng_to_cell(*CENTRE, 7), "period_start": "2090-03-06",
                              "kind": "arrest", "count": 4}], "public", 7)
    assert release["rows"] == [] and release["totals"][0]["count"] is None
    meta = gis.release_meta(release)
    path = gis.export(gis.cells_frame(release["rows"]), tmp_path / "t.gpkg", "gpkg", meta)
    totals = pyogrio.read_dataframe(path, layer="totals")
    assert totals["count"].isna().all() and list(totals["kind"]) == ["arrest"]
    doc = json.loads(gis.export(gis.cells_frame([]), tmp_path / "t.geojson", "geojson",
                                meta).read_text())
    assert doc["totals"][0]["count"] is None and doc["features"] == []


def test_tiers_and_resolutions() -> None:
    assert privacy.check_tier("partner", 8).scope == "partner"
    assert privacy.check_tier("public", 7).max_res == 7
    with pytest.raises(ValueError, match="resolution 7 or coarser"):
        privacy.check_tier("public", 8)
    with pytest.raises(ValueError, match="unknown"):
        privacy.check_tier("press", 6)
    assert privacy.describe("analyst")["disclosure_control"].startswith("none: exact")


# --- the real exports ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def week_2090(store, sink_settings) -> dict[str, int]:
    """Arrests in four res-8 cells one week of 2090: res-8 cell -> count."""
    parent = h3.latlng_to_cell(*CENTRE, 7)  # one res-7 cell holds them all: public shows 40
    cells = [c for c in sorted(h3.cell_to_children(parent, 8))
             if h3.latlng_to_cell(*h3.cell_to_latlng(c), 7) == parent][:4]
    events = [Arrest(event_id=f"privacy-2090-{i}-{n}",
                     occurred_at=datetime.combine(MONDAY, datetime.min.time(), UTC)
                     + timedelta(hours=10 + n % 50),
                     lat=h3.cell_to_latlng(cell)[0], lon=h3.cell_to_latlng(cell)[1],
                     force="essex", charged=n % 2 == 0)
              for i, (cell, count) in enumerate(zip(cells, COUNTS, strict=True))
              for n in range(count)]
    write(store, sink_settings, *worker_output(events))
    return dict(zip(cells, COUNTS, strict=True))


def export(tmp_path, cli_on_store, fmt: str, *extra: str) -> tuple[Any, str]:
    out = tmp_path / f"cells.{fmt}"
    got = CliRunner().invoke(cli.main, [
        "export", "cells", "--data-dir", str(tmp_path), "--from", MONDAY.isoformat(),
        "--to", MONDAY.isoformat(), "--kind", "arrest", "--format", fmt, "--out", str(out),
        *extra])
    return out, got.output if got.exit_code == 0 else f"exit {got.exit_code}: {got.output}"


@pytest.mark.parametrize("fmt", ["geojson", "gpkg"])
def test_partner_and_public_files_hold_no_small_count(store, week_2090, tmp_path, cli_on_store,
                                                      fmt) -> None:
    for tier, res in (("partner", 8), ("public", 7)):
        path, said = export(tmp_path, cli_on_store, fmt, "--tier", tier)
        assert f"{tier} tier" in said, said
        assert cli_on_store[-1] == ("/v1/cells", {"from": MONDAY.isoformat(), "to": MONDAY.isoformat(),
                                                  "res": res, "period": "week", "tier": tier,
                                                  "kind": "arrest"})
        frame = gpd.read_file(path, layer="hotspots")
        assert len(frame) >= 1 and all(h3.get_resolution(c) == res for c in frame["cell"])
        assert all(n >= THRESHOLD and n % ROUND_TO == 0 for n in frame["count"])
        if fmt == "geojson":
            doc = json.loads(path.read_text())
            meta, totals = doc, doc["totals"]
        else:
            meta = {k.lower(): v for k, v in
                    pyogrio.read_info(path, layer="hotspots")["layer_metadata"].items()}
            assert f"tier: {tier}." in pyogrio.read_info(path, layer="hotspots")[
                "layer_metadata"]["DESCRIPTION"]
            totals = gpd.read_file(path, layer="totals").to_dict("records")
        assert meta["tier"] == tier and "ONS 10-5 rule" in meta["disclosure_control"]
        assert [(t["period_start"], t["kind"], t["count"]) for t in totals] == [
            (MONDAY.isoformat(), "arrest", 40)]
    # At res 8 the partner file shows the 23 as 25; the 12 is suppressed with the 4 and the 1.
    path, _ = export(tmp_path, cli_on_store, fmt, "--tier", "partner")
    busiest = max(week_2090, key=lambda c: week_2090[c])
    assert gpd.read_file(path, layer="hotspots")[["cell", "count"]].to_dict("records") == [
        {"cell": busiest, "count": 25}]


def test_the_analyst_file_is_exact_and_says_so(store, week_2090, tmp_path, cli_on_store) -> None:
    path, said = export(tmp_path, cli_on_store, "geojson")
    assert "analyst tier" in said
    doc = json.loads(path.read_text())
    assert doc["tier"] == "analyst" and doc["disclosure_control"].startswith("none: exact")
    assert sorted(f["properties"]["count"] for f in doc["features"]) == sorted(COUNTS)
    gpkg, _ = export(tmp_path, cli_on_store, "gpkg")
    assert pyogrio.list_layers(gpkg).tolist() == [["hotspots", "Polygon"]]  # no totals table
    assert pyogrio.read_info(gpkg, layer="hotspots")["layer_metadata"]["TIER"] == "analyst"


def test_public_is_refused_finer_than_res_7(store, week_2090, tmp_path, cli_on_store) -> None:
    _, said = export(tmp_path, cli_on_store, "geojson", "--tier", "public", "--res", "8")
    assert said.startswith("exit 2") and "resolution 7 or coarser" in said


def test_district_releases(store, week_2090, tmp_path, cli_on_store) -> None:
    """Two districts split around the week's cells; the release lists both and the total."""
    lat, lon = CENTRE
    outlines = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": name},
         "geometry": mapping(box(lon + dx, lat - 0.2, lon + dx + 0.2, lat + 0.2))}
        for name, dx in (("West", -0.2), ("East", 0.0))]}
    bounds = tmp_path / "districts.geojson"
    bounds.write_text(json.dumps(outlines))
    base = ["query", "districts", "--data-dir", str(tmp_path), "--period", "week", "--start",
            MONDAY.isoformat(), "--kind", "arrest", "--boundaries", str(bounds)]
    exact = CliRunner().invoke(cli.main, [*base, "--format", "json"])
    assert exact.exit_code == 0, exact.output
    assert sum(r["count"] for r in json.loads(exact.output)) == 40
    for tier in ("partner", "public"):
        got = CliRunner().invoke(cli.main, [*base, "--tier", tier, "--format", "json"])
        assert got.exit_code == 0, got.output
        release = json.loads(got.output)
        assert release["tier"] == tier and release["total"] == 40
        assert [r["district"] for r in release["rows"]] == [r["district"] for r in
                                                            json.loads(exact.output)]
        assert all(m is None or m >= THRESHOLD for m in measures(release))
        csv_out = CliRunner().invoke(cli.main, [*base, "--tier", tier, "--format", "csv"])
        lines = csv_out.output.splitlines()
        assert lines[0] == "district,count,tier" and lines[-1] == f"total,40,{tier}"


def test_api_tiers_need_their_scope(store, week_2090, api_client) -> None:
    params = {"from": MONDAY.isoformat(), "to": MONDAY.isoformat(), "kind": "arrest"}
    partner = api_client(token="partner")
    assert partner.get("/v1/cells", params=params).status_code == 403  # analyst: read scope
    got = partner.get("/v1/cells", params={**params, "tier": "partner"})
    assert got.status_code == 200 and got.json()["tier"] == "partner"
    assert [r["count"] for r in got.json()["rows"]] == [25]
    public = api_client(token="public")
    assert public.get("/v1/cells", params={**params, "tier": "partner"}).status_code == 403
    assert public.get("/v1/cells", params={**params, "tier": "public"}).status_code == 400  # res 8
    geo = public.get("/v1/cells.geojson", params={**params, "tier": "public", "res": 7})
    assert geo.status_code == 200 and geo.json()["tier"] == "public"
    assert [f["properties"]["count"] for f in geo.json()["features"]] == [40]
    assert api_client(token="read").get("/v1/cells", params=params).json()  # exact rows
    assert api_client(token="read").get(
        "/v1/cells", params={**params, "tier": "press"}).status_code == 422
