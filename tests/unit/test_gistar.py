"""Gi* against PySAL esda's G_Local(transform='B', star=True), BH q-values, and the query.

The store-backed tests write their own year (2057) to the shared store (see conftest.py).
"""

from __future__ import annotations

import itertools
import math
import warnings
from datetime import UTC, date, datetime

import numpy as np
import pytest
from click.testing import CliRunner

from hotspots import cli
from hotspots.contract import Arrest, Seizure
from hotspots.geo import cell_of, center, to_str
from sinks.gistar import (
    benjamini_hochberg,
    confidence_bin,
    gi_star,
    gistar,
    neighbours,
    permutation_p,
    study_area,
    z_scores,
)
from sinks.queries import QueryError
from tests.shared_data import ESSEX_CSVS, needs
from tests.unit.test_store import worker_output, write

esda_getisord = pytest.importorskip("esda.getisord")
libpysal = pytest.importorskip("libpysal")

ESSEX = ESSEX_CSVS
YEAR = 2057


def esda_zs(y: np.ndarray, nbrs: list[np.ndarray]) -> np.ndarray:
    """esda's Gi* z on a W built from the same neighbour lists, self excluded: esda's
    star=True puts the unit self-weight on the diagonal itself."""
    w = libpysal.weights.W({i: [int(j) for j in nb] for i, nb in enumerate(nbrs)},
                           silence_warnings=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return esda_getisord.G_Local(y, w, transform="B", star=True, permutations=0).Zs


def test_matches_esda_on_its_own_fixture():
    # esda's tests/test_getisord.py and G_Local docstring: DistanceBand(POINTS, threshold=15).
    points = np.array([(10, 10), (20, 10), (40, 10), (15, 20), (30, 20), (30, 30)])
    y = np.array([2, 3, 3.2, 5, 8, 7])
    band = libpysal.weights.DistanceBand(points, threshold=15, silence_warnings=True)
    nbrs = [np.array(band.neighbors[i], dtype=np.intp) for i in band.id_order]
    assert [list(nb) for nb in nbrs] == [[1, 3], [0, 3, 4], [4], [0, 1, 4], [1, 2, 3, 5], [4]]
    ours = z_scores(y, nbrs)
    np.testing.assert_allclose(ours, esda_zs(y, nbrs), atol=1e-6, rtol=0)
    np.testing.assert_allclose(  # the values esda's docstring prints
        ours, [-1.39727626, -0.28917762, 0.65064964, -0.28917762, 1.23452088, 2.02424331],
        atol=1e-6, rtol=0)


def test_matches_esda_on_a_lattice():
    lattice = libpysal.weights.lat2W(5, 5)
    y = np.arange(25, dtype=float) ** 1.5 % 7
    nbrs = [np.array(lattice.neighbors[i], dtype=np.intp) for i in range(25)]
    np.testing.assert_allclose(z_scores(y, nbrs), esda_zs(y, nbrs), atol=1e-6, rtol=0)


@needs(ESSEX)
@pytest.mark.parametrize("k", [1, 2])
def test_matches_esda_on_essex_violence(k):
    pd = pytest.importorskip("pandas")
    files = sorted(ESSEX.glob("2025-0*-essex-street.csv.gz"))
    assert files, f"no 2025 Essex street files in {ESSEX}"
    crimes = pd.concat(pd.read_csv(f, usecols=["Month", "Latitude", "Longitude", "Crime type"])
                       for f in files).dropna(subset=["Latitude", "Longitude"])
    # Chelmsford and around: a few hundred res-8 cells.
    crimes = crimes[crimes.Latitude.between(51.65, 51.80) & crimes.Longitude.between(0.35, 0.60)]
    crimes = crimes.assign(cell=[cell_of(lat, lon) for lat, lon in
                                 zip(crimes.Latitude, crimes.Longitude, strict=True)])
    area = study_area(set(crimes.cell), k)  # any crime type, any month, as the query
    month = crimes[(crimes.Month == "2025-03") & (crimes["Crime type"] == "Violence and sexual offences")]
    counts = {int(c): int(n) for c, n in month.cell.value_counts().items()}
    assert 300 <= len(area) <= 1000 and len(counts) > 50
    nbrs = neighbours(area, k)
    y = np.array([counts.get(c, 0) for c in area], dtype=float)
    expected = esda_zs(y, nbrs)
    spots = gi_star(counts, area, k)
    assert [h.cell for h in spots] == area
    np.testing.assert_allclose([h.z for h in spots], expected, atol=1e-6, rtol=0)
    assert max(spots, key=lambda h: h.z).bin == 3  # town-centre violence is no accident


def test_benjamini_hochberg_by_hand():
    p = [0.01, 0.04, 0.03, 0.005, 0.20]
    # sorted: 0.005, 0.01, 0.03, 0.04, 0.20 -> ×5/rank: 0.025, 0.025, 0.05, 0.05, 0.20
    assert benjamini_hochberg(p) == pytest.approx([0.025, 0.05, 0.05, 0.025, 0.20])
    assert benjamini_hochberg([]) == []
    assert benjamini_hochberg([0.9, 0.8]) == pytest.approx([0.9, 0.9])  # running minimum
    assert benjamini_hochberg([0.6, 0.7, 0.9]) == pytest.approx([0.9, 0.9, 0.9])
    assert benjamini_hochberg([0.5, 0.9, 0.95]) == pytest.approx([0.95, 0.95, 0.95])
    assert benjamini_hochberg([0.9] * 3 + [0.001]) == pytest.approx([0.9, 0.9, 0.9, 0.004])


def test_benjamini_hochberg_known_values():
    # R: p.adjust(c(0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459,
    #               0.3240, 0.4262, 0.5719, 0.6528, 0.7590, 1.000), "BH")
    p = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240,
         0.4262, 0.5719, 0.6528, 0.7590, 1.000]
    expected = [0.0015, 0.0030, 0.0095, 0.035625, 0.0603, 0.06385714, 0.06385714, 0.0645,
                0.0765, 0.486, 0.58118182, 0.714875, 0.75323077, 0.81321429, 1.0]
    assert benjamini_hochberg(p) == pytest.approx(expected, abs=1e-8)


def test_benjamini_hochberg_is_monotone_and_capped():
    rng = np.random.default_rng(5)
    p = list(rng.uniform(0, 1, 500) ** 3)
    q = benjamini_hochberg(p)
    pairs = sorted(zip(p, q, strict=True))
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(pairs))
    assert all(pi <= qi <= 1 for pi, qi in zip(p, q, strict=True))


def test_confidence_bins_follow_q_and_sign():
    assert [confidence_bin(2.0, q) for q in (0.005, 0.01, 0.03, 0.08, 0.2)] == [3, 3, 2, 1, 0]
    assert confidence_bin(-4.0, 0.001) == -3
    assert confidence_bin(0.0, 0.0) == 0


def test_degenerate_inputs_give_zero_not_nan():
    area = study_area({cell_of(51.7356, 0.4685)}, 1)
    assert all(h.z == 0 and h.p == 1 and h.bin == 0 for h in gi_star({}, area))
    assert all(h.z == 0 for h in gi_star({c: 4 for c in area}, area))
    with pytest.raises(ValueError, match="outside"):
        gi_star({cell_of(52.5, 1.5): 1}, area)


def test_permutation_p_is_seeded_and_close_to_esda():
    points = np.array([(10, 10), (20, 10), (40, 10), (15, 20), (30, 20), (30, 30)])
    y = np.array([2, 3, 3.2, 5, 8, 7])
    band = libpysal.weights.DistanceBand(points, threshold=15, silence_warnings=True)
    nbrs = [np.array(band.neighbors[i], dtype=np.intp) for i in band.id_order]
    ours = permutation_p(y, nbrs, 4999, seed=7)
    np.testing.assert_array_equal(ours, permutation_p(y, nbrs, 4999, seed=7))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = esda_getisord.G_Local(y, band, transform="B", star=True, permutations=4999,
                                       seed=7, n_jobs=1).p_sim
    np.testing.assert_allclose(ours / 2, theirs, atol=0.03)  # ours is two-sided
    area = study_area({cell_of(51.7356, 0.4685)}, 2)
    spots = gi_star({area[0]: 3}, area, 1, permutations=99, seed=1)
    assert all(h.p_sim is not None and 0 < h.p_sim <= 1 for h in spots)


def _arrests_around(hub: int) -> list:
    """10 arrests in the hub cell and 5 in each of its six neighbours."""
    events: list = []
    for ring, cell in enumerate(sorted(study_area({hub}, 1), key=lambda c: c != hub)):
        lat, lon = center(cell)
        events += [Arrest(event_id=f"gi-{YEAR}-{ring}-{n}", force="essex", lat=lat, lon=lon,
                          occurred_at=datetime(YEAR, 3, 6, 12, tzinfo=UTC))
                   for n in range(10 if cell == hub else 5)]
    return events


@pytest.fixture(scope="module")
def hub(store, sink_settings) -> int:
    hub = cell_of(51.8959, 0.8919)  # Colchester
    scattered = [(51.55 + 0.02 * i, 0.10 + 0.05 * i) for i in range(12)]
    events = _arrests_around(hub)
    events += [Arrest(event_id=f"gi-{YEAR}-s{i}", force="essex", lat=lat, lon=lon,
                      occurred_at=datetime(YEAR, 3, 7, 9, tzinfo=UTC))
               for i, (lat, lon) in enumerate(scattered)]
    # 2057-03-05 is a Monday. Another kind in another month widens the study area but counts for nothing here.
    events += [Seizure(event_id=f"gi-{YEAR}-z{i}", force="essex", lat=51.60 + 0.03 * i, lon=0.75,
                       occurred_at=datetime(YEAR, 6, 2, 9, tzinfo=UTC), weapons_count=1)
               for i in range(5)]
    write(store, sink_settings, worker_output(events)[0])
    return hub


def test_query_puts_the_cluster_on_top(store, hub):
    rows = gistar(store, "week", date(YEAR, 3, 5), "arrest", 8)
    assert rows and all(list(r) == ["cell", "count", "z", "p", "q", "bin"] for r in rows)
    assert rows[0]["cell"] == to_str(hub) and rows[0]["count"] == 10
    assert rows[0]["z"] > 3 and rows[0]["bin"] > 0 and rows[0]["q"] < 0.05
    assert [r["z"] for r in rows] == sorted((r["z"] for r in rows), reverse=True)
    assert sum(r["count"] for r in rows) == 10 + 6 * 5 + 12
    seizure_cells = {to_str(cell_of(51.60 + 0.03 * i, 0.75)) for i in range(5)}
    assert seizure_cells <= {r["cell"] for r in rows if r["count"] == 0}
    assert all(math.isfinite(r["z"]) and 0 <= r["p"] <= r["q"] <= 1 for r in rows)
    month = gistar(store, "month", date(YEAR, 3, 1), "arrest", 8, k=2)
    top = [r["cell"] for r in month if r["z"] == pytest.approx(month[0]["z"])]
    assert to_str(hub) in top  # with k=2 the hub's ring cells see the same 40 arrests: a tie
    assert all(r["count"] == 0 for r in gistar(store, "week", date(YEAR, 3, 12), "arrest", 8))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("day", date(YEAR, 3, 5), "arrest", 8, 1), "period"),
        (("week", date(YEAR, 3, 7), "arrest", 8, 1), f"starts {YEAR}-03-05"),
        (("month", date(YEAR, 3, 5), "arrest", 8, 1), f"starts {YEAR}-03-01"),
        (("week", date(YEAR, 3, 5), "parking", 8, 1), "kind"),
        (("week", date(YEAR, 3, 5), "arrest", 9, 1), "resolution"),
        (("week", date(YEAR, 3, 5), "arrest", 8, 0), "k must be"),
    ],
)
def test_query_errors(store, args, message):
    with pytest.raises(QueryError, match=message):
        gistar(store, *args)


def test_api_and_cli(store, hub, cli_on_store, api_client):
    client = api_client()
    params = {"period": "week", "start": f"{YEAR}-03-05", "kind": "arrest", "res": 8}
    got = client.get("/v1/gistar", params=params)
    assert got.status_code == 200 and got.json()[0]["cell"] == to_str(hub)
    bad = client.get("/v1/gistar", params={**params, "start": f"{YEAR}-03-06"})
    assert bad.status_code == 400 and "does not start a week" in bad.json()["detail"]

    out = CliRunner().invoke(cli.main, ["query", "gistar", "--period", "week", "--start",
                                        f"{YEAR}-03-05", "--kind", "arrest", "--format", "csv"])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0] == "cell,count,z,p,q,bin"
    assert out.output.splitlines()[1].startswith(f"{to_str(hub)},10,")
    out = CliRunner().invoke(cli.main, ["query", "gistar", "--period", "week", "--start",
                                        f"{YEAR}-03-06", "--kind", "arrest"])
    assert out.exit_code == 2 and "does not start a week" in out.output
