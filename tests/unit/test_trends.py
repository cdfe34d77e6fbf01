"""Change, smoothing and drill-down over the shared store (years 2061-2064, see conftest.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from click.testing import CliRunner
from h3.api import basic_int as h3i

from hotspots import cli
from hotspots.contract import Arrest, Seizure
from hotspots.geo import cell_of, cells_of, center, to_str
from sinks import queries
from sinks.queries import QueryError
from sinks.trends import binomial_p, change, drill, smoothed
from tests.unit.test_store import worker_output, write

CHELMSFORD = (51.7356, 0.4685)
TOWNS = {"A": CHELMSFORD, "B": (51.5761, 0.4886), "C": (51.8959, 0.8919),
         "D": (51.5459, 0.7077), "E": (51.7727, 0.1020)}
W0 = date(2061, 3, 14)  # a Monday; its month is March 2061
# Arrests per town by week offset from W0, each on that week's Wednesday.
LAYOUT = {"A": {0: 5, -1: 2, -5: 1, -8: 1}, "B": {0: 3, 1: 2}, "C": {-1: 4}, "D": {-2: 3},
          "E": {-6: 2, -7: 1}}


def cells8() -> dict[str, str]:
    return {name: to_str(cell_of(*where)) for name, where in TOWNS.items()}


def arrest(event_id: str, cell: int, when: datetime, **extra) -> Arrest:
    lat, lon = center(cell)
    return Arrest(event_id=event_id, occurred_at=when, lat=lat, lon=lon, force="essex", **extra)


@pytest.fixture(scope="module")
def data_2061(store, sink_settings) -> dict[str, str]:
    events: list = []
    for name, weeks in LAYOUT.items():
        cell = cell_of(*TOWNS[name])
        for offset, n in weeks.items():
            wednesday = W0 + timedelta(weeks=offset, days=2)
            events += [arrest(f"tr-2061-{name}{offset}-{i}", cell,
                              datetime.combine(wednesday, datetime.min.time(), UTC).replace(hour=12))
                       for i in range(n)]
    a = cell_of(*TOWNS["A"])
    lat, lon = center(a)
    # Another kind in A's current week, and a month-precision arrest in C's March: neither
    # may count in weekly arrest change; the latter counts in March's.
    events.append(Seizure(event_id="tr-2061-sz", occurred_at=datetime(2061, 3, 15, 9, tzinfo=UTC),
                          lat=lat, lon=lon, force="essex", weapons_count=1))
    events.append(arrest("tr-2061-cm", cell_of(*TOWNS["C"]), datetime(2061, 3, 1, tzinfo=UTC),
                         time_precision="month"))
    write(store, sink_settings, *worker_output(events))
    return cells8()


def test_week_over_week(store, data_2061):
    c = data_2061
    rows = change(store, "week", W0, "arrest", 8)
    ab = sorted([c["A"], c["B"]])
    assert [r["cell"] for r in rows] == [*ab, c["C"]]
    by_cell = {r["cell"]: r for r in rows}
    assert by_cell[c["A"]] == {"cell": c["A"], "current": 5, "previous": 2, "delta": 3,
                               "ratio": 2.5, "p": 58 / 128}  # 2·(C(7,5)+C(7,6)+C(7,7))/2^7
    assert by_cell[c["B"]] == {"cell": c["B"], "current": 3, "previous": 0, "delta": 3,
                               "ratio": None, "p": 0.25}
    assert by_cell[c["C"]] == {"cell": c["C"], "current": 0, "previous": 4, "delta": -4,
                               "ratio": 0.0, "p": 0.125}
    assert [r["cell"] for r in change(store, "week", W0, "arrest", 8, limit=1)] == ab[:1]
    assert change(store, "week", W0, "seizure", 8) == [
        {"cell": c["A"], "current": 1, "previous": 0, "delta": 1, "ratio": None, "p": 1.0}]


def test_four_weeks_against_four(store, data_2061):
    c = data_2061
    rows = change(store, "week", W0, "arrest", 8, mode="4v4")
    got = [(r["cell"], r["current"], r["previous"], r["delta"], r["ratio"]) for r in rows]
    bd = sorted([c["B"], c["D"]])
    assert got == [(c["A"], 7, 1, 6, 7.0), (c["C"], 4, 0, 4, None), (bd[0], 3, 0, 3, None),
                   (bd[1], 3, 0, 3, None), (c["E"], 0, 3, -3, 0.0)]  # E: previous window only
    # Coarser cells hold the same events.
    for res in (7, 6):
        coarse = change(store, "week", W0, "arrest", res, mode="4v4")
        assert sum(r["current"] for r in coarse) == 17 and sum(r["previous"] for r in coarse) == 4
        assert {r["cell"] for r in coarse} == {to_str(cells_of(*center(cell_of(*t)))[res])
                                               for t in TOWNS.values()}


def test_month_over_month(store, data_2061):
    c = data_2061
    rows = change(store, "month", date(2061, 3, 1), "arrest", 8)
    got = [(r["cell"], r["current"], r["previous"], r["delta"]) for r in rows]
    assert got == [(c["A"], 7, 1, 6), *sorted([(c["B"], 5, 0, 5), (c["C"], 5, 0, 5)]),
                   (c["D"], 3, 0, 3), (c["E"], 0, 2, -2)]  # C: 4 weekly + 1 month-precision
    feb = change(store, "month", date(2061, 2, 1), "arrest", 8)
    assert {(r["cell"], r["current"], r["previous"]) for r in feb} == {
        (c["A"], 1, 1), (c["E"], 2, 1)}


def test_binomial_p():
    scipy_stats = pytest.importorskip("scipy.stats")
    for cur, prev in [(5, 2), (0, 4), (2, 2), (10, 0), (3, 17), (40, 25), (500, 400)]:
        assert binomial_p(cur, prev) == pytest.approx(
            scipy_stats.binomtest(cur, cur + prev, 0.5).pvalue, rel=1e-9)
    assert binomial_p(0, 0) == 1.0
    exact = scipy_stats.binomtest(600, 1100, 0.5).pvalue  # past EXACT_UP_TO: normal limit
    assert binomial_p(600, 500) == pytest.approx(exact, rel=0.05)


HUB = cell_of(51.7356, 0.4685)
NEXT = min(x for x in h3i.grid_disk(HUB, 1) if x != HUB)
FAR = cell_of(51.8959, 0.8919)
W3 = date(2063, 5, 7)  # a Monday


@pytest.fixture(scope="module")
def data_2063(store, sink_settings) -> None:
    when = datetime(2063, 5, 8, 12, tzinfo=UTC)
    events = [arrest(f"tr-2063-h{i}", HUB, when) for i in range(7)]
    events += [arrest("tr-2063-n", NEXT, when)]
    events += [arrest(f"tr-2063-f{i}", FAR, when) for i in range(3)]
    # Other kinds and weeks do not count.
    events.append(Seizure(event_id="tr-2063-sz", occurred_at=when, lat=center(HUB)[0],
                          lon=center(HUB)[1], force="essex", weapons_count=1))
    events.append(arrest("tr-2063-later", HUB, when + timedelta(weeks=1)))
    write(store, sink_settings, *worker_output(events))


def test_smoothed_by_hand(store, data_2063):
    rows = smoothed(store, "week", W3, "arrest", 8)
    hub_ring, next_ring = set(h3i.grid_disk(HUB, 1)), set(h3i.grid_disk(NEXT, 1))
    assert len(hub_ring) == len(next_ring) == 7 and NEXT in hub_ring
    shared = sorted(to_str(x) for x in (hub_ring & next_ring) - {HUB, NEXT})
    expected = [(to_str(HUB), 7, 8 / 7), (to_str(NEXT), 1, 8 / 7), *((s, 0, 8 / 7) for s in shared)]
    expected += sorted((to_str(x), 0, 1.0) for x in hub_ring - next_ring)
    expected += [(to_str(FAR), 3, 3 / 7)]
    expected += sorted((to_str(x), 0, 3 / 7) for x in set(h3i.grid_disk(FAR, 1)) - {FAR})
    expected += sorted((to_str(x), 0, 1 / 7) for x in next_ring - hub_ring)
    got = [(r["cell"], r["count"], r["smoothed"]) for r in rows]
    assert len(shared) == 2 and len(got) == 17
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    assert [g[2] for g in got] == pytest.approx([e[2] for e in expected])
    assert list(rows[0]) == ["cell", "count", "smoothed"]
    wide = {r["cell"]: r["smoothed"] for r in smoothed(store, "week", W3, "arrest", 8, k=2)}
    assert wide[to_str(HUB)] == pytest.approx(8 / 19)
    assert len(smoothed(store, "week", W3, "arrest", 8, limit=3)) == 3


W4 = date(2064, 3, 3)  # a Monday; March 2064 starts on the Saturday before it
C8 = cell_of(*CHELMSFORD)
SIBLING = next(x for x in h3i.cell_to_children(h3i.cell_to_parent(C8, 7), 8) if x != C8)


@pytest.fixture(scope="module")
def data_2064(store, sink_settings) -> None:
    lat, lon = center(C8)
    events = [
        arrest("tr-2064-d1", C8, datetime(2064, 3, 4, 10, tzinfo=UTC), charged=True, operation="op-x"),
        Seizure(event_id="tr-2064-d2", occurred_at=datetime(2064, 3, 5, 9, 30, tzinfo=UTC), lat=lat,
                lon=lon, force="essex", drugs_grams=1.5, weapons_count=2),
        arrest("tr-2064-d3", C8, datetime(2064, 3, 11, 12, tzinfo=UTC)),  # the next week, same month
        arrest("tr-2064-d4", C8, datetime(2064, 3, 5, tzinfo=UTC), time_precision="month"),
        arrest("tr-2064-d5", SIBLING, datetime(2064, 3, 6, 12, tzinfo=UTC)),  # same res-7 parent
        arrest("tr-2064-d6", cell_of(51.8959, 0.8919), datetime(2064, 3, 4, 12, tzinfo=UTC)),
        arrest("tr-2064-d7", C8, datetime(2064, 2, 27, 12, tzinfo=UTC)),  # February
    ]
    write(store, sink_settings, *worker_output(events))


def ids(rows) -> list[str]:
    return [r["event_id"].removeprefix("tr-2064-") for r in rows]


def test_drill_down(store, data_2064):
    week = drill(store, to_str(C8), "week", W4)
    assert week[0] == {"event_id": "tr-2064-d1", "kind": "arrest", "occurred_at": "2064-03-04T10:00:00+00:00",
                       "time_precision": "instant", "lat": center(C8)[0], "lon": center(C8)[1],
                       "operation": "op-x", "measures": {"charged": 1}}
    assert ids(week) == ["d1", "d2"]  # not d4: month precision has no week
    assert week[1]["measures"] == {"weapons": 2, "drugs_grams": 1.5}
    assert week[1]["operation"] is None
    assert ids(drill(store, to_str(C8), "month", date(2064, 3, 1))) == ["d1", "d4", "d2", "d3"]
    assert ids(drill(store, to_str(h3i.cell_to_parent(C8, 7)), "week", W4)) == ["d1", "d2", "d5"]
    assert ids(drill(store, to_str(h3i.cell_to_parent(C8, 6)), "week", W4)) == ["d1", "d2", "d5"]
    assert ids(drill(store, to_str(C8), "week", W4, kind="seizure")) == ["d2"]
    assert ids(drill(store, to_str(C8), "week", W4, limit=1)) == ["d1"]
    assert drill(store, to_str(C8), "week", W4 + timedelta(weeks=2)) == []
    # Exactly the events the rollups count, at every resolution.
    for res, period, start in [(8, "month", date(2064, 3, 1)), (7, "week", W4), (6, "month",
                                                                                  date(2064, 2, 1))]:
        cell = to_str(cells_of(*CHELMSFORD)[res])
        counted = sum(r["count"] for r in queries.cells(store, start, start, res, period)
                      if r["cell"] == cell)
        assert len(drill(store, cell, period, start)) == counted > 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: change(s, "day", W0, "arrest", 8), "period 'day' not supported"),
        (lambda s: change(s, "week", W0 + timedelta(days=1), "arrest", 8),
         "does not start a week; the week containing it starts 2061-03-14"),
        (lambda s: change(s, "month", W0, "arrest", 8), "starts 2061-03-01"),
        (lambda s: change(s, "week", W0, "arrest", 9), "resolution 9 not kept"),
        (lambda s: change(s, "week", W0, "parking", 8), "kind 'parking' unknown"),
        (lambda s: change(s, "week", W0, "arrest", 8, mode="yoy"), "mode 'yoy' unknown"),
        (lambda s: change(s, "month", date(2061, 3, 1), "arrest", 8, mode="4v4"),
         "4v4' compares weeks"),
        (lambda s: change(s, "week", W0, "arrest", 8, limit=0), "limit must be"),
        (lambda s: smoothed(s, "week", W0, "arrest", 8, k=0), "k must be between 1 and 5"),
        (lambda s: smoothed(s, "quarter", W0, "arrest", 8), "period 'quarter'"),
        (lambda s: drill(s, "not-a-cell", "week", W4), "not an H3 cell"),
        (lambda s: drill(s, to_str(h3i.cell_to_parent(C8, 5)), "week", W4),
         "resolution-5 cell"),
        (lambda s: drill(s, to_str(C8), "week", date(2064, 3, 1)), "starts 2064-02-25"),
        (lambda s: drill(s, to_str(C8), "week", W4, kind="parking"), "kind"),
    ],
)
def test_query_errors(store, call, message):
    with pytest.raises(QueryError, match=message):
        call(store)


def test_api_and_cli(store, data_2061, data_2063, data_2064, cli_on_store, api_client):
    client = api_client()
    params = {"period": "week", "start": W0.isoformat(), "kind": "arrest", "mode": "4v4"}
    got = client.get("/v1/change", params=params)
    assert got.status_code == 200
    assert got.json() == change(store, "week", W0, "arrest", 8, "4v4")
    bad = client.get("/v1/change", params={**params, "period": "month", "start": "2061-03-01"})
    assert bad.status_code == 400 and "compares weeks" in bad.json()["detail"]
    got = client.get("/v1/smoothed", params={"period": "week", "start": W3.isoformat(),
                                             "kind": "arrest", "k": 2, "limit": 5})
    assert got.status_code == 200
    assert got.json() == smoothed(store, "week", W3, "arrest", 8, 2, 5)
    got = client.get("/v1/events", params={"cell": to_str(C8), "period": "month",
                                           "start": "2064-03-01", "kind": "arrest"})
    assert got.status_code == 200 and ids(got.json()) == ["d1", "d4", "d3"]
    bad = client.get("/v1/events", params={"cell": "zz", "period": "week", "start": W4.isoformat()})
    assert bad.status_code == 400 and "not an H3 cell" in bad.json()["detail"]

    seen = cli_on_store
    runner = CliRunner()
    out = runner.invoke(cli.main, ["query", "change", "--period", "week", "--start", W0.isoformat(),
                                   "--kind", "arrest", "--mode", "4v4", "--limit", "2",
                                   "--format", "csv"])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines() == ["cell,current,previous,delta,ratio,p",
                                       f"{data_2061['A']},7,1,6,7.0,0.0703125",
                                       f"{data_2061['C']},4,0,4,,0.125"]
    assert seen[-1] == ("/v1/change", {"period": "week", "start": W0.isoformat(), "kind": "arrest",
                                       "res": 8, "mode": "4v4", "limit": 2})
    out = runner.invoke(cli.main, ["query", "smoothed", "--period", "week", "--start",
                                   W3.isoformat(), "--kind", "arrest", "--format", "json"])
    assert out.exit_code == 0 and f'"cell": "{to_str(HUB)}"' in out.output
    out = runner.invoke(cli.main, ["query", "events", "--cell", to_str(C8), "--period", "week",
                                   "--start", W4.isoformat(), "--format", "csv"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0] == "event_id,kind,occurred_at,time_precision,lat,lon,operation,measures"
    assert lines[2].startswith("tr-2064-d2,seizure,") and lines[2].endswith(",weapons=2 drugs_grams=1.5")
    out = runner.invoke(cli.main, ["query", "events", "--cell", to_str(C8), "--period", "week",
                                   "--start", "2064-03-04"])
    assert out.exit_code == 2 and "does not start a week" in out.output
