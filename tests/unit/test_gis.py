"""GIS views: hexagon polygons, GeoJSON/GeoPackage exports, district rollups, API and CLI.

Store-backed tests write event year 2076 to the shared store (see conftest.py).
Example exports land in tests/artifacts/ (gitignored).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import geopandas as gpd
import h3
import pyogrio
import pytest
from click.testing import CliRunner

from hotspots import cli
from hotspots.contract import Arrest
from sinks import gis
from sinks.queries import QueryError
from tests.shared_data import BOUNDARIES, ESSEX_OUTLINES, needs
from tests.unit.test_store import worker_output, write

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ESSEX = ESSEX_OUTLINES
ENGLAND = BOUNDARIES / "england-lad-may2024-buc.geojson"
needs_essex = needs(ESSEX)

# Town centres (lat, lon) and the district (`name` in the boundaries file) each lies in.
TOWNS = {
    "Chelmsford": (51.7356, 0.4685),
    "Colchester": (51.8892, 0.9042),
    "Basildon": (51.5761, 0.4886),
    "Southend-on-Sea": (51.5459, 0.7077),
}
IPSWICH = (52.0567, 1.1482)  # Suffolk: outside the Essex Police area


def rows_at(points: list[tuple[float, float]], res: int = 8) -> list[dict]:
    return [{"cell": h3.latlng_to_cell(lat, lon, res), "period_start": "2075-03-03",
             "kind": "arrest", "count": i + 1} for i, (lat, lon) in enumerate(points)]


def test_hexagons_are_lon_lat_polygons():
    cells = [h3.latlng_to_cell(lat, lon, 8) for lat, lon in [*TOWNS.values(), IPSWICH]]
    frame = gis.cells_frame([{"cell": c, "count": 1} for c in cells])
    assert frame.crs.to_epsg() == 4326
    for cell, poly in zip(cells, frame.geometry, strict=True):
        ring = list(poly.exterior.coords)
        assert poly.is_valid and ring[0] == ring[-1] and poly.exterior.is_ccw
        assert len(set(ring)) == 6
        lat, lng = h3.cell_to_latlng(cell)
        assert abs(poly.centroid.x - lng) < 1e-6 and abs(poly.centroid.y - lat) < 1e-6
        assert {(lng, lat) for lat, lng in h3.cell_to_boundary(cell)} == set(ring)
    pentagon = next(p for p in h3.get_pentagons(8) if abs(h3.cell_to_latlng(p)[1]) < 170)
    poly = gis.hexagon(pentagon)
    assert poly.is_valid and len(set(poly.exterior.coords)) == 5


def test_cells_frame_columns_and_errors():
    cell = h3.latlng_to_cell(*TOWNS["Chelmsford"], 8)
    frame = gis.cells_frame([{"cell": h3.str_to_int(cell), "count": 3, "kind": "arrest"}])
    assert list(frame.columns) == ["cell", "count", "kind", "geometry"]
    assert frame.iloc[0]["cell"] == cell  # integer cells leave as strings
    empty = gis.cells_frame([])
    assert empty.empty and empty.crs.to_epsg() == 4326
    with pytest.raises(ValueError, match="not an H3 cell"):
        gis.cells_frame([{"cell": "nonsense", "count": 1}])
    with pytest.raises(ValueError, match="'hex' column"):
        gis.cells_frame([{"cell": cell}], cell_col="hex")


def _same(back: gpd.GeoDataFrame, rows: list[dict]) -> None:
    assert back.crs.to_epsg() == 4326
    if back["period_start"].dtype.kind == "M":  # GDAL's GeoJSON reader types ISO dates as dates
        back["period_start"] = back["period_start"].dt.strftime("%Y-%m-%d")
    assert back.drop(columns="geometry").to_dict("records") == rows
    for cell, poly in zip(back["cell"], back.geometry, strict=True):
        assert poly.equals_exact(gis.hexagon(cell), 1e-12)


def test_geojson_round_trip():
    rows = rows_at([*TOWNS.values(), IPSWICH])
    path = gis.export(gis.cells_frame(rows), ARTIFACTS / "cells.geojson", "geojson")
    _same(gpd.read_file(path), rows)
    doc = json.loads(path.read_text())
    assert doc["name"] == "hotspots" and "Open Government Licence" in doc["attribution"]
    assert doc["features"][0]["properties"] == rows[0]


def test_gpkg_round_trip():
    rows = rows_at([*TOWNS.values(), IPSWICH])
    path = ARTIFACTS / "cells.gpkg"
    for _ in range(2):  # writing again replaces the file, it does not add a layer
        gis.export(gis.cells_frame(rows), path, "gpkg")
    assert pyogrio.list_layers(path).tolist() == [["hotspots", "Polygon"]]
    _same(gpd.read_file(path, layer="hotspots"), rows)
    meta = pyogrio.read_info(path, layer="hotspots")["layer_metadata"]
    assert "Open Government Licence" in meta["DESCRIPTION"]
    gis.export(gis.cells_frame([]), ARTIFACTS / "empty.gpkg", "gpkg")
    assert gpd.read_file(ARTIFACTS / "empty.gpkg", layer="hotspots").empty
    with pytest.raises(ValueError, match="format"):
        gis.export(gis.cells_frame(rows), ARTIFACTS / "cells.shp", "shp")


@needs_essex
def test_rollup_places_towns_in_their_districts():
    bounds = gis.districts(ESSEX)
    assert len(bounds) == 14 and set(TOWNS) <= set(bounds["district"])
    got = gis.rollup_cells(rows_at([*TOWNS.values(), IPSWICH]), bounds)
    assert [r["district"] for r in got[:4]] == ["Southend-on-Sea", "Basildon", "Colchester",
                                                "Chelmsford"]  # busiest first
    by = {r["district"]: r for r in got}
    assert [by[t]["count"] for t in TOWNS] == [1, 2, 3, 4]
    assert by["outside"] == {"district": "outside", "cells": 1, "count": 5}
    assert got[-1]["district"] == "outside" and len(got) == 15
    assert by["Uttlesford"] == {"district": "Uttlesford", "cells": 0, "count": 0}
    assert sum(r["count"] for r in got) == 15
    if ENGLAND.is_file():  # across all of England, Ipswich has a district of its own
        england = {r["district"]: r["count"] for r in gis.rollup_cells(
            rows_at([IPSWICH]), gis.districts(ENGLAND))}
        assert england["Ipswich"] == 1 and england["outside"] == 0


def test_centre_on_a_shared_border_counts_once(tmp_path):
    cell = h3.latlng_to_cell(*TOWNS["Chelmsford"], 8)
    lat, lng = h3.cell_to_latlng(cell)
    halves = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": name},
         "geometry": {"type": "Polygon", "coordinates": [[[x0, lat - 1], [x1, lat - 1], [x1, lat + 1],
                                                          [x0, lat + 1], [x0, lat - 1]]]}}
        for name, x0, x1 in (("West", lng - 1, lng), ("East", lng, lng + 1))]}
    path = tmp_path / "halves.geojson"
    path.write_text(json.dumps(halves))
    got = gis.rollup_cells([{"cell": cell, "count": 7}], gis.districts(path))
    assert got == [{"district": "East", "cells": 1, "count": 7},
                   {"district": "West", "cells": 0, "count": 0},
                   {"district": "outside", "cells": 0, "count": 0}]


def _features(path: Path, features: list[dict]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


SQUARE = {"type": "Polygon", "coordinates": [[[0, 51], [1, 51], [1, 52], [0, 52], [0, 51]]]}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("district,count\nA,1\n", "cannot read boundaries"),
        ([{"type": "Feature", "properties": {"name": "A"},
           "geometry": {"type": "Point", "coordinates": [0.5, 51.5]}}], "must be polygons"),
        ([{"type": "Feature", "properties": {"lad": "A"}, "geometry": SQUARE}],
         "no 'name' property"),
        ([{"type": "Feature", "properties": {"name": None}, "geometry": SQUARE}], "no 'name'"),
        ([{"type": "Feature", "properties": {"name": "outside"}, "geometry": SQUARE}], "reserved"),
    ],
)
def test_bad_boundaries(tmp_path, content, message):
    path = tmp_path / "bounds.geojson"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        _features(path, content)
    with pytest.raises(gis.BoundaryError, match=message):
        gis.districts(path)


def test_no_boundaries_configured():
    with pytest.raises(gis.BoundaryError, match="HOTSPOTS_BOUNDARIES"):
        gis.load_districts(None)


@pytest.fixture(scope="module")
def essex_events(store, sink_settings):
    """Arrests in the week of Monday 2076-03-02: 1..4 at the towns, 5 in Ipswich."""
    events = []
    for i, (lat, lon) in enumerate([*TOWNS.values(), IPSWICH]):
        for n in range(i + 1):
            when = datetime(2076, 3, 2 + n % 5, 12, tzinfo=UTC)
            events.append(Arrest(event_id=f"gis-2076-{i}-{n}", occurred_at=when, lat=lat, lon=lon,
                                 force="essex", charged=True))
    write(store, sink_settings, worker_output(events)[0])
    return events


@needs_essex
def test_district_rollup_from_the_store(store, essex_events):
    got = gis.district_rollup(store, ESSEX, "week", date(2076, 3, 2), "arrest")
    by = {r["district"]: r["count"] for r in got}
    assert [by[t] for t in TOWNS] == [1, 2, 3, 4] and by["outside"] == 5
    month = gis.district_rollup(store, gis.districts(ESSEX), "month", date(2076, 3, 1), "arrest", 6)
    assert sum(r["count"] for r in month) == len(essex_events)
    empty = gis.district_rollup(store, ESSEX, "week", date(2076, 3, 9), "arrest")
    assert all(r["count"] == 0 for r in empty) and len(empty) == 15


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("day", date(2076, 3, 2), "arrest"), "period"),
        (("week", date(2076, 3, 3), "arrest"), "starts 2076-03-02"),
        (("week", date(2076, 3, 2), "parking"), "kind"),
    ],
)
def test_district_rollup_errors(store, args, message):
    with pytest.raises(QueryError, match=message):
        gis.district_rollup(store, ESSEX, *args)


@needs_essex
def test_api(store, essex_events, monkeypatch, api_client):
    client = api_client()
    got = client.get("/v1/cells.geojson", params={"from": "2076-03-02", "to": "2076-03-08",
                                                  "kind": "arrest"})
    assert got.status_code == 200 and got.headers["content-type"] == "application/geo+json"
    features = got.json()["features"]
    assert sorted(f["properties"]["count"] for f in features) == [1, 2, 3, 4, 5]
    assert gpd.GeoDataFrame.from_features(features).geometry.is_valid.all()

    params = {"period": "week", "start": "2076-03-02", "kind": "arrest"}
    monkeypatch.delenv("HOTSPOTS_BOUNDARIES", raising=False)
    unset = client.get("/v1/districts", params=params)
    assert unset.status_code == 400 and "HOTSPOTS_BOUNDARIES" in unset.json()["detail"]
    monkeypatch.setenv("HOTSPOTS_BOUNDARIES", str(ESSEX))
    got = client.get("/v1/districts", params=params)
    assert got.status_code == 200
    assert got.json()[0] == {"district": "Southend-on-Sea", "cells": 1, "count": 4}
    assert got.json()[-1] == {"district": "outside", "cells": 1, "count": 5}
    bad = client.get("/v1/districts", params={**params, "start": "2076-03-03"})
    assert bad.status_code == 400 and "does not start a week" in bad.json()["detail"]


@needs_essex
def test_cli(store, essex_events, monkeypatch, tmp_path, cli_on_store):
    run = CliRunner().invoke
    week = ["--from", "2076-03-02", "--to", "2076-03-08", "--kind", "arrest"]
    for fmt in ("geojson", "gpkg"):
        out_path = ARTIFACTS / f"export-cells.{fmt}"
        out = run(cli.main, ["export", "cells", "--data-dir", str(tmp_path), *week, "--format", fmt,
                             "--out", str(out_path)])
        assert out.exit_code == 0, out.output
        assert sorted(gpd.read_file(out_path)["count"]) == [1, 2, 3, 4, 5]

    districts = ["query", "districts", "--data-dir", str(tmp_path), "--period", "week",
                 "--start", "2076-03-02", "--kind", "arrest", "--format", "csv"]
    out = run(cli.main, [*districts, "--boundaries", str(ESSEX)])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[:2] == ["district,cells,count", "Southend-on-Sea,1,4"]
    assert lines[-1] == "outside,1,5"
    monkeypatch.setenv("HOTSPOTS_BOUNDARIES", str(ESSEX))  # the setting, when none is given
    assert run(cli.main, districts).output == out.output
    monkeypatch.delenv("HOTSPOTS_BOUNDARIES")
    out = run(cli.main, districts)
    assert out.exit_code == 2 and "HOTSPOTS_BOUNDARIES" in out.output
    out = run(cli.main, [*districts, "--boundaries", str(tmp_path / "none.geojson")])
    assert out.exit_code == 2 and "not found" in out.output
