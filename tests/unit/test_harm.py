"""The harm layer: weights cover police.uk's crime types; harm sums and gap ranks on crafted data.

Store-backed tests write year 2070 to the shared store (see conftest.py).
"""

from __future__ import annotations

import csv
import gzip
from datetime import UTC, date, datetime

import pytest
from click.testing import CliRunner

from hotspots import cli
from hotspots.contract import Arrest, RecordedCrime, Seizure, Warrant
from hotspots.geo import cell_of, to_str
from sinks.harm import DEFAULT_TYPE, HARM_WEIGHTS, gap, harm, harm_days
from sinks.queries import QueryError
from tests.shared_data import POLICE_UK
from tests.unit.test_store import worker_output, write

TYPES = ("Violence and sexual offences", "Robbery", "Burglary", "Drugs", "Possession of weapons",
         "Criminal damage and arson", "Public order", "Shoplifting", "Theft from the person",
         "Vehicle crime", "Other theft", "Bicycle theft", "Other crime", "Anti-social behaviour")
A, B, C, D = (51.5761, 0.4886), (51.5459, 0.7077), (51.7727, 0.1023), (51.7356, 0.4685)
Y = 2070


def test_weights_cover_every_police_uk_crime_type():
    assert set(HARM_WEIGHTS) == set(TYPES)
    assert HARM_WEIGHTS["Anti-social behaviour"] == 0
    assert all(isinstance(v, int) and v >= 0 for v in HARM_WEIGHTS.values())
    readme = (POLICE_UK / "README.md").read_text()
    named = [t for t in TYPES if t in readme]
    assert len(named) >= 4  # the README names the rows of interest by crime type
    sample = POLICE_UK / "essex" / "2025-01-essex-street.csv.gz"
    if sample.exists():  # and the real published file uses no other type
        with gzip.open(sample, "rt", newline="") as f:
            assert {r["Crime type"] for r in csv.DictReader(f)} <= set(HARM_WEIGHTS)
    assert harm_days("Carrier pigeon theft") == HARM_WEIGHTS[DEFAULT_TYPE]


def crime(n: int, crime_type: str, where, when: datetime, monthly: bool = True) -> RecordedCrime:
    return RecordedCrime(event_id=f"rc-{Y}-{n}", occurred_at=when, lat=where[0], lon=where[1],
                         force="essex", crime_type=crime_type,
                         time_precision="month" if monthly else "instant")


@pytest.fixture(scope="module")
def crafted(store, sink_settings):
    jan, mar = datetime(Y, 1, 1, tzinfo=UTC), datetime(Y, 3, 5, 12, tzinfo=UTC)
    events = [crime(1, "Robbery", A, jan), crime(2, "Robbery", A, jan),
              crime(3, "Anti-social behaviour", A, jan), crime(4, "Drugs", A, jan),
              *(crime(10 + i, "Violence and sexual offences", B, jan) for i in range(3)),
              crime(20, "Carrier pigeon theft", C, jan),
              crime(30, "Burglary", A, mar, monthly=False)]
    when = datetime(Y, 1, 14, 9, tzinfo=UTC)
    events += [Arrest(event_id=f"a-{Y}-{i}", occurred_at=when, lat=B[0], lon=B[1], force="essex")
               for i in range(3)]
    events += [Warrant(event_id=f"w-{Y}", occurred_at=when, lat=B[0], lon=B[1], force="essex",
                       executed=True, outcome="drugs_found"),
               *(Seizure(event_id=f"s-{Y}-{i}", occurred_at=when, lat=C[0], lon=C[1], force="essex",
                         drugs_grams=1.0) for i in range(2)),
               Arrest(event_id=f"a-{Y}-9", occurred_at=when, lat=D[0], lon=D[1], force="essex")]
    rollups, accepted = worker_output(events)
    write(store, sink_settings, rollups, accepted)
    write(store, sink_settings, rollups, accepted)  # redelivered: nothing is counted twice
    return {k: to_str(cell_of(*p)) for k, p in zip("ABCD", (A, B, C, D), strict=True)}


def test_harm_sums(store, crafted):
    rows = harm(store, "month", date(Y, 1, 1))
    assert rows == [
        {"cell": crafted["A"], "crimes": 4, "harm_days": 2 * 1460 + 0 + 5, "harm_rank": 1},
        {"cell": crafted["B"], "crimes": 3, "harm_days": 3 * 252, "harm_rank": 2},
        {"cell": crafted["C"], "crimes": 1, "harm_days": HARM_WEIGHTS[DEFAULT_TYPE], "harm_rank": 3}]
    assert harm(store, "month", date(Y, 1, 1), proactive=False)[0]["harm_days"] == 2 * 1460
    # Month-precision crime has no week; day-precision crime counts in its week and month.
    assert harm(store, "week", date(Y - 1, 12, 30)) == []  # the week of 1 January
    week = date(Y, 3, 3)  # a Monday
    assert harm(store, "week", week) == harm(store, "month", date(Y, 3, 1)) == [
        {"cell": crafted["A"], "crimes": 1, "harm_days": 365, "harm_rank": 1}]
    coarse = harm(store, "month", date(Y, 1, 1), res=6)
    assert sum(r["harm_days"] for r in coarse) == 2925 + 756 + 5


def test_gap_ranks(store, crafted):
    rows = gap(store, "month", date(Y, 1, 1))
    by_cell = {r["cell"]: r for r in rows}
    assert [r["cell"] for r in rows] == [crafted[k] for k in "ABCD"]
    assert {k: (by_cell[crafted[k]]["harm_rank"], by_cell[crafted[k]]["enforcement"],
                by_cell[crafted[k]]["enforcement_rank"], by_cell[crafted[k]]["gap"])
            for k in "ABCD"} == {"A": (1, 0, 4, 3), "B": (2, 4, 1, -1), "C": (3, 2, 2, -1),
                                 "D": (4, 1, 3, -1)}
    assert all(r["gap"] == r["enforcement_rank"] - r["harm_rank"] for r in rows)


@pytest.mark.parametrize(("period", "start", "res", "message"), [
    ("day", date(Y, 1, 1), 8, "not supported"), ("week", date(Y, 1, 1), 8, "does not start"),
    ("month", date(Y, 1, 2), 8, "does not start"), ("month", date(Y, 1, 1), 9, "resolution")])
def test_harm_errors(store, period, start, res, message):
    with pytest.raises(QueryError, match=message):
        harm(store, period, start, res)


def test_api_and_cli(store, crafted, cli_on_store, api_client):
    client = api_client()
    got = client.get("/v1/harm", params={"period": "month", "start": f"{Y}-01-01"})
    assert got.status_code == 200 and got.json()[0]["cell"] == crafted["A"]
    got = client.get("/v1/gap", params={"period": "month", "start": f"{Y}-01-01", "proactive": False})
    assert got.status_code == 200 and got.json()[0]["harm_days"] == 2920
    assert client.get("/v1/harm", params={"period": "month", "start": f"{Y}-01-02"}).status_code == 400

    out = CliRunner().invoke(cli.main, ["query", "gap", "--period", "month", "--start", f"{Y}-01-01",
                                        "--format", "csv"])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0] == "cell,harm_days,harm_rank,enforcement,enforcement_rank,gap"
    out = CliRunner().invoke(cli.main, ["query", "harm", "--period", "week", "--start", f"{Y}-01-01"])
    assert out.exit_code == 2 and "does not start a week" in out.output


def test_tied_cells_share_a_rank() -> None:
    from sinks.harm import _ranks

    assert _ranks({1: (5,), 2: (3,), 3: (3,), 4: (0,), 5: (0,)}) == {1: 1, 2: 2, 3: 2, 4: 4, 5: 4}
