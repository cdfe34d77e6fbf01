"""Where the real data lives: ../shared/data beside the repository (never copied into it).

HOTSPOTS_SHARED_DATA overrides the location. A test that needs a file marks itself with
``needs(path)``: it skips on a developer machine without the data, but in CI (CI set) it
runs and fails, so a missing data set can never turn a claim into a silent skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("HOTSPOTS_SHARED_DATA",
                                  Path(__file__).resolve().parents[1].parent / "shared" / "data"))
POLICE_UK = SHARED_DATA / "police-uk"
ESSEX_CSVS = POLICE_UK / "essex"
BOUNDARIES = SHARED_DATA / "boundaries"
ESSEX_OUTLINES = BOUNDARIES / "essex-police-area-lad-may2024-buc.geojson"


def needs(path: Path) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not path.exists() and not os.environ.get("CI"),
                              reason=f"the shared data is not at {path} (set HOTSPOTS_SHARED_DATA)")
