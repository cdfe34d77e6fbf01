"""GIS views of hotspot rows: H3 hexagons as polygons, GeoJSON/GeoPackage exports, districts.

Everything is EPSG:4326 (WGS84 longitude, latitude): the CRS of H3 and of GeoJSON (RFC 7946).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import geopandas as gpd
import orjson
import pandas as pd
from h3.api import basic_str as h3s
from shapely.geometry import Point, Polygon
from shapely.geometry.polygon import orient

from hotspots import __version__
from hotspots.geo import to_int, to_str
from sinks.queries import cells, check_args
from sinks.store import Store

CRS = "EPSG:4326"
LAYER = "hotspots"
OUTSIDE = "outside"
EXPORT_FORMATS = ("geojson", "gpkg")
DISTRICT_PERIODS = ("week", "month")
ATTRIBUTION = (f"hotspots {__version__}: enforcement event counts per H3 cell (EPSG:4326). "
               "Where events come from data.police.uk, and district outlines from ONS: contains "
               "public sector information licensed under the Open Government Licence v3.0; "
               "contains OS data © Crown copyright and database right.")


class BoundaryError(ValueError):
    """A boundaries file that cannot serve as district outlines, or none configured."""


def hexagon(cell: str) -> Polygon:
    """The cell's outline: h3 gives (lat, lng) vertices; shapely and GeoJSON want (lon, lat),
    closed, exterior counter-clockwise (RFC 7946)."""
    ring = [(lng, lat) for lat, lng in h3s.cell_to_boundary(cell)]
    return orient(Polygon([*ring, ring[0]]), sign=1.0)


def _cell(value: Any) -> str:
    return to_str(value) if isinstance(value, int) else to_str(to_int(str(value)))


def cells_frame(rows: Iterable[Mapping[str, Any]], cell_col: str = "cell") -> gpd.GeoDataFrame:
    """One hexagon per row, the row's values (measures, period, kind) as columns."""
    data = [dict(r) for r in rows]
    if any(cell_col not in r for r in data):
        raise ValueError(f"every row needs a {cell_col!r} column")
    for r in data:
        r[cell_col] = _cell(r[cell_col])
    return gpd.GeoDataFrame(data or {cell_col: []},
                            geometry=[hexagon(r[cell_col]) for r in data], crs=CRS)


def release_meta(release: Mapping[str, Any]) -> dict[str, Any]:
    """What a file states about its privacy tier (sinks.privacy): everything but the rows."""
    return {k: v for k, v in release.items() if k != "rows" and v is not None}


def feature_collection(gdf: gpd.GeoDataFrame,
                       meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A GeoJSON FeatureCollection, with the layer name, attribution and the release's
    ``meta`` (tier, disclosure control, totals) as foreign members."""
    features = json.loads(gdf.to_crs(CRS).to_json(drop_id=True))["features"]
    return {"type": "FeatureCollection", "name": LAYER, "attribution": ATTRIBUTION,
            **(meta or {}), "features": features}


def export(gdf: gpd.GeoDataFrame, path: str | Path, fmt: str,
           meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``gdf`` as GeoJSON or as a fresh GeoPackage with the layer "hotspots". ``meta``
    (release_meta) goes into the GeoJSON's members, or the layer's description and metadata,
    and its totals into a "totals" table beside the layer."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format {fmt!r} unknown; choose one of {EXPORT_FORMATS}")
    if gdf.crs is None:
        raise ValueError("the frame has no CRS")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(meta or {})
    if fmt == "geojson":
        path.write_bytes(orjson.dumps(feature_collection(gdf, meta)))
        return path
    path.unlink(missing_ok=True)  # a new file, not one more layer in an old one
    totals = meta.pop("totals", None)
    stated = "".join(f" {k}: {v}." for k, v in meta.items())
    gdf.to_crs(CRS).to_file(path, driver="GPKG", layer=LAYER, engine="pyogrio",
                            geometry_type=None if len(gdf) else "Polygon",
                            layer_options={"DESCRIPTION": ATTRIBUTION + stated},
                            layer_metadata={k.upper(): str(v) for k, v in meta.items()} or None)
    if totals is not None:
        import pyogrio

        table = pd.DataFrame(totals, columns=["period_start", "kind", "count"])
        table["count"] = table["count"].astype("Int64")  # null where the total is suppressed
        pyogrio.write_dataframe(table, path, layer="totals", driver="GPKG", append=True,
                                layer_options={"DESCRIPTION": "Totals per period and kind" + stated})
    return path


def districts(path: str | Path, name: str = "name") -> gpd.GeoDataFrame:
    """District outlines (columns district, geometry; EPSG:4326) from any file GDAL reads.
    Features sharing a name are merged into one district."""
    path = Path(path)
    if not path.is_file():
        raise BoundaryError(f"boundaries file {path} not found")
    try:
        gdf = gpd.read_file(path, engine="pyogrio")
    except Exception as exc:  # pyogrio's DataSourceError and kin: not a geodata file
        raise BoundaryError(f"cannot read boundaries {path}: {exc}") from None
    if name not in gdf.columns:
        found = sorted(c for c in gdf.columns if c != gdf.geometry.name)
        raise BoundaryError(f"boundaries {path} have no {name!r} property (found {found})")
    kinds = set(gdf.geom_type.dropna())
    if gdf.empty or gdf.geometry.isna().any() or not kinds <= {"Polygon", "MultiPolygon"}:
        raise BoundaryError(f"boundaries {path} must be polygons; found {sorted(kinds) or 'none'}")
    names = gdf[name]
    if names.isna().any() or (names.astype(str).str.strip() == "").any():
        raise BoundaryError(f"boundaries {path}: some features have no {name!r}")
    if (names.astype(str) == OUTSIDE).any():
        raise BoundaryError(f"boundaries {path}: {OUTSIDE!r} is reserved for cells outside them all")
    if gdf.crs is None:
        raise BoundaryError(f"boundaries {path} have no CRS")
    out = gdf[[name, gdf.geometry.name]].rename(columns={name: "district"}).to_crs(CRS)
    out["district"] = out["district"].astype(str)
    return out.dissolve(by="district", as_index=False)


@lru_cache(maxsize=8)
def _districts_cached(path: str, _mtime_ns: int, _size: int, name: str) -> gpd.GeoDataFrame:
    return districts(path, name)


def load_districts(path: str | Path | None, name: str = "name") -> gpd.GeoDataFrame:
    """districts(), cached while the file is unchanged; a clear error when none is configured."""
    if path is None:
        raise BoundaryError("no district boundaries: set HOTSPOTS_BOUNDARIES to a GeoJSON or "
                            "GeoPackage of district outlines")
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise BoundaryError(f"boundaries file {path} not found")
    stat = resolved.stat()
    return _districts_cached(str(resolved), stat.st_mtime_ns, stat.st_size, name)


def rollup_cells(rows: Iterable[Mapping[str, Any]], bounds: gpd.GeoDataFrame,
                 cell_col: str = "cell") -> list[dict[str, Any]]:
    """Counts per district: each cell goes to the district containing its CENTRE. A hexagon can
    straddle a boundary; by its centre it is counted once, in one district, so the districts'
    counts add up to the total. Every district is listed (busiest first, zeros too), then
    "outside" for cells beyond them all (police.uk has some rows past the force boundary)."""
    counts: dict[str, int] = {}
    for r in rows:
        cell = _cell(r[cell_col])
        counts[cell] = counts.get(cell, 0) + int(r["count"])
    totals = {str(d): [0, 0] for d in bounds["district"]}
    totals[OUTSIDE] = [0, 0]
    if counts:
        order = sorted(counts)
        centres = gpd.GeoDataFrame(
            {"cell": order}, crs=CRS,
            geometry=[Point(lng, lat) for lat, lng in map(h3s.cell_to_latlng, order)])
        joined = gpd.sjoin(centres, bounds[["district", bounds.geometry.name]].to_crs(CRS),
                           how="left", predicate="intersects")
        # A centre on a shared border touches both districts: the first by name takes it.
        joined = joined.sort_values(["cell", "district"], na_position="last").drop_duplicates("cell")
        for cell, district in zip(joined["cell"], joined["district"], strict=True):
            total = totals[district if isinstance(district, str) else OUTSIDE]
            total[0] += 1
            total[1] += counts[cell]
    named = sorted((d for d in totals if d != OUTSIDE), key=lambda d: (-totals[d][1], d))
    return [{"district": d, "cells": totals[d][0], "count": totals[d][1]}
            for d in [*named, OUTSIDE]]


def check_period(period: str, start: date, kind: str) -> None:
    check_args(DISTRICT_PERIODS, period, start, kind=kind)


def district_rollup(store: Store, boundaries: gpd.GeoDataFrame | str | Path | None, period: str,
                    start: date, kind: str, res: int = 8, name: str = "name") -> list[dict[str, Any]]:
    """Events of one kind in one week or month, per district (rollup_cells) at cell res ``res``
    (coarser cells place events less precisely: a res-6 centre can be ~4 km from its events)."""
    check_period(period, start, kind)
    bounds = boundaries if isinstance(boundaries, gpd.GeoDataFrame) else load_districts(boundaries, name)
    return rollup_cells(cells(store, start, start, res, period, kind), bounds)
