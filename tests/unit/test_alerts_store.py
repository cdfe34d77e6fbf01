"""Spike alerts in the store: the sink's route, the list query, the API and the CLI.

The store is shared with other tests: these alerts are first seen in 2086-2087 (and their
periods lie there too), and every query asks from 2086 on.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest
from click.testing import CliRunner

from hotspots import cli
from hotspots.periods import LONDON
from sinks.alerts import list_alerts, parse_since
from sinks.queries import QueryError
from sinks.sink import BatchingSink
from streams.alerts import alert_record
from streams.spikes import Alert

SINCE = datetime(2086, 1, 1, tzinfo=UTC)


def record(area: str, kind: str, week: date, seen: datetime, area_type: str = "cell",
           method: str = "poisson-week", res: int = 7) -> bytes:
    alert = Alert(area, area_type, kind, "week", week, 6, 0.25, 2.1e-6, method, seen,  # type: ignore[arg-type]
                  f"ev-{area}-{week}")
    return orjson.dumps(alert_record(alert, res))


@pytest.fixture(scope="module")
def stored(store, sink_settings):
    first = datetime(2086, 3, 5, 10, tzinfo=UTC)
    records = [
        record("87194e0d3ffffff", "arrest", date(2086, 3, 4), first),
        record("86194e0d7ffffff", "arrest", date(2086, 3, 4), first + timedelta(seconds=1), res=6),
        record("Chelmsford", "seizure", date(2087, 6, 2), datetime(2087, 6, 3, 9, tzinfo=UTC),
               "district", res=0),
    ]
    # The first alert again, re-raised after a crash: the same alert_id, a later first_seen.
    again = record("87194e0d3ffffff", "arrest", date(2086, 3, 4), first + timedelta(minutes=5))
    sink = BatchingSink(store, sink_settings)
    for value in [*records, again]:
        sink.add(sink_settings.alerts_topic, orjson.loads(value)["alert_id"].encode(), value)
    assert sink.size == 4
    sink.flush()
    return [orjson.loads(r) for r in records]


def test_the_sink_stores_each_alert_once(store, stored):
    rows = list_alerts(store, SINCE)
    assert [r["alert_id"] for r in rows] == [stored[2]["alert_id"], stored[1]["alert_id"],
                                            stored[0]["alert_id"]]  # newest first, one row each
    district = rows[0]
    assert {k: district[k] for k in ("area_type", "area", "res", "kind", "period", "period_start",
                                     "observed", "method")} == {
        "area_type": "district", "area": "Chelmsford", "res": 0, "kind": "seizure",
        "period": "week", "period_start": "2087-06-02", "observed": 6, "method": "poisson-week"}
    assert district["expected"] == 0.25 and district["p_value"] == pytest.approx(2.1e-6)
    assert datetime.fromisoformat(district["first_seen"]) == datetime(2087, 6, 3, 9, tzinfo=UTC)
    assert datetime.fromisoformat(district["stored_at"]).tzinfo is not None


def test_filters(store, stored):
    assert {r["area"] for r in list_alerts(store, SINCE, area_type="cell")} == {
        "87194e0d3ffffff", "86194e0d7ffffff"}
    assert [r["area"] for r in list_alerts(store, SINCE, kind="seizure")] == ["Chelmsford"]
    assert [r["area"] for r in list_alerts(store, datetime(2087, 1, 1, tzinfo=UTC))] == ["Chelmsford"]
    assert len(list_alerts(store, SINCE, limit=1)) == 1
    for bad in ({"kind": "parking"}, {"area_type": "county"}, {"limit": 0}):
        with pytest.raises(QueryError):
            list_alerts(store, SINCE, **bad)


def test_since_is_a_london_date_or_an_offset_time():
    assert parse_since("2086-07-01") == datetime(2086, 7, 1, tzinfo=LONDON)
    assert parse_since("2086-07-01").astimezone(UTC).hour == 23  # BST: the day before in UTC
    assert parse_since("2086-07-01T08:00:00+00:00") == datetime(2086, 7, 1, 8, tzinfo=UTC)
    for bad in ("2086-07-01T08:00:00", "yesterday"):
        with pytest.raises(QueryError):
            parse_since(bad)


def test_api(api_client, stored):
    client = api_client(token="read")
    got = client.get("/v1/alerts", params={"since": "2086-01-01", "area_type": "district"})
    assert got.status_code == 200 and [r["area"] for r in got.json()] == ["Chelmsford"]
    assert client.get("/v1/alerts", params={"since": "2086-01-01T00:00:00"}).status_code == 400
    assert client.get("/v1/alerts", params={"kind": "parking"}).status_code == 400
    assert api_client(token="read").get("/v1/alerts", headers={"Authorization": ""}).status_code == 401


def test_cli(stored, cli_on_store):
    out = CliRunner().invoke(cli.main, ["alerts", "list", "--since", "2086-01-01", "--area-type",
                                        "cell", "--format", "json"])
    assert out.exit_code == 0, out.output
    assert {r["area"] for r in json.loads(out.output)} == {"87194e0d3ffffff", "86194e0d7ffffff"}
    assert cli_on_store[-1] == ("/v1/alerts", {"limit": 100, "since": "2086-01-01",
                                               "area_type": "cell"})
    table = CliRunner().invoke(cli.main, ["alerts", "list", "--since", "2086-01-01", "--kind",
                                          "seizure"])
    assert table.exit_code == 0 and "Chelmsford" in table.output and "poisson-week" in table.output
    bad = CliRunner().invoke(cli.main, ["alerts", "list", "--since", "last week"])
    assert bad.exit_code == 2 and "neither a date" in bad.output
