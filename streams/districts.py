"""Which district an event's cell lies in, for the district spike detector (streams.alerts).

A res-8 cell goes to the district containing its centre, the first by name on a shared
border: the rule of ``sinks.gis.rollup_cells``, so district alerts and district rollups
agree. Answers are cached per cell; Essex has a few thousand res-8 cells with events.
"""

from __future__ import annotations

from pathlib import Path

import shapely
from h3.api import basic_int as h3i


class DistrictLocator:
    def __init__(self, names: list[str], shapes: list[shapely.Geometry]) -> None:
        order = sorted(range(len(names)), key=names.__getitem__)
        self.names = [names[i] for i in order]
        self.shapes = [shapes[i] for i in order]
        for shape in self.shapes:
            shapely.prepare(shape)  # point-in-polygon in microseconds
        self._cache: dict[int, str | None] = {}

    @classmethod
    def from_file(cls, path: str | Path, name: str = "name") -> DistrictLocator:
        from sinks.gis import load_districts  # geopandas: only when outlines are configured

        bounds = load_districts(path, name)
        return cls([str(d) for d in bounds["district"]], list(bounds.geometry))

    def __call__(self, cell8: int) -> str | None:
        """The district of a res-8 cell, or None outside them all."""
        if cell8 not in self._cache:
            lat, lon = h3i.cell_to_latlng(cell8)
            self._cache[cell8] = next(
                (n for n, s in zip(self.names, self.shapes, strict=True)
                 if shapely.intersects_xy(s, lon, lat)), None)
        return self._cache[cell8]
