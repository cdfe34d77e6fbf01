"""Grafana as code: the committed files are build.py's output, and every panel's and alert
rule's SQL, with the plugin's macros expanded, runs on the real engine (the shared chDB store)
and returns the columns its panel needs. Data for the panels lives in 2080 (rollups,
class changes); dead letters are stamped on arrival, so their panels look at the last hour.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import h3
import orjson
import pytest
import yaml

from dashboards import build
from dashboards.macros import expand, interpolate
from hotspots.contract import Safeguarding, Seizure, Warrant, dead_letter
from hotspots.geo import cell_of
from sinks.sink import BatchingSink
from streams.alerts import alert_record
from streams.spikes import Alert
from tests.unit.test_store import BASILDON, CHELMSFORD, COLCHESTER, arrest, at, worker_output, write

ROOT = Path(__file__).resolve().parents[2]
YEAR = 2080
DATA = (datetime(YEAR, 1, 1, tzinfo=UTC), datetime(YEAR, 12, 31, 23, 59, 59, tzinfo=UTC))
VARIABLES = {"kind": "arrest", "res": 8}
REASON = "dashboards_test_2080"

# Panel title -> (columns the panel reads, which range has data). Every panel is listed.
EXPECTED: dict[str, tuple[set[str], str]] = {
    "Live heat map": ({"latitude", "longitude", "count"}, "data"),
    "Top cells": ({"cell", "count", "charged", "people"}, "data"),
    "Weekly events by kind": ({"time", "kind", "count"}, "data"),
    "Hot spot class changes": ({"time", "cell", "from_class", "to_class"}, "data"),
    "Class changes by new class": ({"time", "to_class", "cells"}, "data"),
    "Dead letters by reason": ({"reason", "records", "last_received"}, "ops"),
    "Warrant priorities (rollup proxy)": (
        {"cell_id", "arrests", "seizures", "safeguarded", "warrants_executed", "signal"}, "data"),
    "Sink freshness": ({"freshness_s"}, "ops"),
    "Rows per table": ({"table_name", "rows"}, "ops"),
    "Dead letters per hour": ({"time", "dead_letters"}, "ops"),
    "Spike alerts": ({"time", "area_type", "area", "kind", "observed", "expected", "p_value",
                      "method", "triggering_event_id"}, "ops"),
    "Spike alerts per day by kind": ({"time", "kind", "alerts"}, "ops"),
}


def ops_range() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(hours=1), now + timedelta(minutes=5)


def panels() -> list[tuple[str, dict]]:
    return [(name, p) for name, d in build.dashboards().items() for p in d["panels"]]


def run(store, sql: str, span: tuple[datetime, datetime]) -> list[dict]:
    expanded = expand(sql, *span, variables=VARIABLES, database=store.database)
    assert "$" not in expanded, expanded
    return store.query(expanded.replace("{", "{{").replace("}", "}}"))


@pytest.fixture(scope="module")
def loaded(store, sink_settings):
    """Four kinds in three towns over two weeks of 2080, a dead letter, two class changes, a
    spike alert (first seen now, for a week of 2088) through the sink's route."""
    events = [
        arrest(1, at(YEAR, 3, 6)), arrest(2, at(YEAR, 3, 7), charged=False),
        arrest(3, at(YEAR, 3, 14), BASILDON), arrest(4, at(YEAR, 3, 15), COLCHESTER),
        Seizure(event_id=f"s-{YEAR}-1", occurred_at=at(YEAR, 3, 6), lat=CHELMSFORD[0],
                lon=CHELMSFORD[1], force="essex", drugs_grams=12.5, weapons_count=1, cash_gbp=40),
        Safeguarding(event_id=f"g-{YEAR}-1", occurred_at=at(YEAR, 3, 8), lat=BASILDON[0],
                     lon=BASILDON[1], force="essex", people=2, category="cuckooing"),
        Warrant(event_id=f"w-{YEAR}-1", occurred_at=at(YEAR, 3, 9), lat=CHELMSFORD[0],
                lon=CHELMSFORD[1], force="essex", executed=True, outcome="drugs_found"),
    ]
    rollups, accepted = worker_output(events)
    letter = orjson.dumps(dead_letter(b'{"kind": "x"}', REASON, "kind", f"events[0]@{YEAR}"))
    write(store, sink_settings, rollups, accepted, [letter])
    week = date(YEAR, 3, 13) - timedelta(days=date(YEAR, 3, 13).weekday())
    store.insert("ehsa_transitions",
                 [(8, "arrest", cell_of(*CHELMSFORD), week, "no_pattern", "new_hot_spot",
                   datetime.now(UTC)),
                  (8, "arrest", cell_of(*BASILDON), week, "sporadic_hot_spot",
                   "intensifying_hot_spot", datetime.now(UTC))],
                 ("res", "kind", "cell", "week_start", "from_class", "to_class", "computed_at"))
    spike = Alert(h3.int_to_str(cell_of(*CHELMSFORD)), "cell", "arrest", "week", date(2088, 3, 1),
                  7, 0.3, 1e-7, "poisson-week", datetime.now(UTC), f"a-{YEAR}-spike")
    sink = BatchingSink(store, sink_settings)
    sink.add(sink_settings.alerts_topic, spike.alert_id.encode(), orjson.dumps(alert_record(spike, 8)))
    sink.flush()
    return events


def test_committed_files_are_generated():
    stale = "out of date: run `python -m dashboards.build` and commit the result"
    files = build.render()
    for path, text in files.items():
        assert path.exists(), f"{path} missing: {stale}"
        assert path.read_text() == text, f"{path} {stale}"
    extra = set(build.JSON_DIR.glob("*.json")) - set(files)
    assert not extra, f"{sorted(extra)} not generated: {stale}"


def test_every_panel_listed_once():
    titles = [p["title"] for _, p in panels()]
    assert sorted(titles) == sorted(EXPECTED)


def test_panels_use_the_clickhouse_datasource_and_never_raw_events():
    for _, p in panels():
        assert p["datasource"]["uid"] == "hotspots-clickhouse"
        assert p["datasource"]["type"] == "grafana-clickhouse-datasource"
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"]
            assert "events" not in t["rawSql"], p["title"]
            assert "hotspots.rollups" in t["rawSql"] or any(
                f"hotspots.{small}" in t["rawSql"]
                for small in ("dead_letters", "ehsa_classes", "ehsa_transitions", "alerts"))


@pytest.mark.parametrize("title", sorted(EXPECTED))
def test_panel_query_runs_with_its_columns(store, loaded, title):
    (name, p), = [(n, q) for n, q in panels() if q["title"] == title]
    columns, span = EXPECTED[title]
    rows = run(store, p["targets"][0]["rawSql"], DATA if span == "data" else ops_range())
    assert rows, f"{title} ({name}) is empty for the loaded range"
    assert columns <= set(rows[0]), f"{title}: {sorted(rows[0])}"
    if p["targets"][0]["format"] == build.TIMESERIES:
        assert all(isinstance(r["time"], datetime) for r in rows)


def test_panels_see_the_loaded_data(store, loaded):
    sql = {p["title"]: p["targets"][0]["rawSql"] for _, p in panels()}
    top = run(store, sql["Top cells"], DATA)
    assert top[0] == {**top[0], "cell": h3.int_to_str(cell_of(*CHELMSFORD)), "count": 2,
                      "charged": 1}
    trends = {(r["time"].date(), r["kind"]): r["count"]
              for r in run(store, sql["Weekly events by kind"], DATA)}
    monday = date(YEAR, 3, 6) - timedelta(days=date(YEAR, 3, 6).weekday())
    assert trends[(monday, "arrest")] == 2 and trends[(monday + timedelta(7), "arrest")] == 2
    reasons = {r["reason"]: r["records"] for r in run(store, sql["Dead letters by reason"],
                                                        ops_range())}
    assert reasons[REASON] >= 1
    nothing = run(store, sql["Live heat map"], (datetime(YEAR, 6, 1, tzinfo=UTC),
                                                datetime(YEAR, 6, 30, tzinfo=UTC)))
    assert nothing == []
    priorities = {r["cell_id"]: r for r in run(store, sql["Warrant priorities (rollup proxy)"], DATA)}
    chelmsford = priorities[h3.int_to_str(cell_of(*CHELMSFORD))]
    assert (chelmsford["arrests"], chelmsford["seizures"], chelmsford["warrants_executed"]) == (2, 1, 1)
    assert priorities[h3.int_to_str(cell_of(*BASILDON))]["safeguarded"] == 2


def test_geomap_centres_match_h3(store, loaded):
    (geomap,) = [p for _, p in panels() if p["type"] == "geomap"]
    layer = geomap["options"]["layers"][0]
    assert layer["location"] == {"mode": "coords", "latitude": "latitude", "longitude": "longitude"}
    assert layer["config"]["style"]["size"]["field"] == "count"
    rows = {r["cell_id"]: r for r in run(store, geomap["targets"][0]["rawSql"], DATA)}
    for town in (CHELMSFORD, BASILDON, COLCHESTER):
        cell = h3.int_to_str(cell_of(*town))
        lat, lng = h3.cell_to_latlng(cell)
        assert rows[cell]["latitude"] == pytest.approx(lat, abs=1e-9)
        assert rows[cell]["longitude"] == pytest.approx(lng, abs=1e-9)
        assert 51 < rows[cell]["latitude"] < 52 and 0 < rows[cell]["longitude"] < 1


def test_provider_matches_the_compose_mount():
    provider = yaml.safe_load(build.PROVIDER.read_text())
    (entry,) = provider["providers"]
    assert entry["folder"] == "hotspots" and entry["type"] == "file"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in compose["services"]["grafana"]["volumes"]
                  if v.startswith("./"))
    inside = mounts["./dashboards/provisioning"]
    relative = Path(entry["options"]["path"]).relative_to(inside)
    assert (ROOT / "dashboards" / "provisioning" / relative).resolve() == build.JSON_DIR


def test_alert_rules_parse_and_run(store, loaded):
    doc = yaml.safe_load(build.RULES.read_text())
    assert doc["apiVersion"] == 1
    rules = {r["title"]: r for g in doc["groups"] for r in g["rules"]}
    assert set(rules) == {"Dead letters surging", "Class change to new/intensifying hot spot",
                          "Spike alert raised"}
    values = {}
    for title, rule in rules.items():
        (query,) = [d for d in rule["data"] if d["refId"] == "A"]
        assert query["datasourceUid"] == "hotspots-clickhouse"
        assert query["model"]["datasource"]["uid"] == "hotspots-clickhouse"
        assert rule["condition"] in {d["refId"] for d in rule["data"]}
        assert "events" not in query["model"]["rawSql"]
        (row,) = run(store, query["model"]["rawSql"], ops_range())
        values[title] = row["value"]
    assert values["Dead letters surging"] >= 1
    assert values["Class change to new/intensifying hot spot"] >= 2
    assert values["Spike alert raised"] >= 1


def test_macros_expand_as_the_plugin_does():
    start = datetime.fromtimestamp(1415792726.371, UTC)
    end = datetime.fromtimestamp(1447328726.456, UTC)
    sql = ("SELECT * FROM hotspots.t WHERE $__timeFilter(ts) AND $__timeFilter_ms(ts) "
           "AND $__dateFilter(d) AND x BETWEEN $__fromTime AND $__toTime "
           "AND y > $__fromTime_ms AND $__timeInterval(ts) AND k = '${kind}' AND r = $res "
           "AND s = $__interval_s AND db = 'hotspots'")
    assert expand(sql, start, end, VARIABLES, interval_s=30, database="hotspots_unit") == (
        "SELECT * FROM hotspots_unit.t WHERE ts >= toDateTime(1415792726) AND "
        "ts <= toDateTime(1447328726) AND ts >= fromUnixTimestamp64Milli(1415792726371) AND "
        "ts <= fromUnixTimestamp64Milli(1447328726456) AND d >= toDate('2014-11-12') AND "
        "d <= toDate('2015-11-12') AND x BETWEEN toDateTime(1415792726) AND "
        "toDateTime(1447328726) AND y > fromUnixTimestamp64Milli(1415792726371) AND "
        "toStartOfInterval(toDateTime(ts), INTERVAL 30 second) AND k = 'arrest' AND r = 8 "
        "AND s = 30 AND db = 'hotspots_unit'")
    with pytest.raises(KeyError):
        interpolate("kind = '${nope}'", VARIABLES)


def test_dashboards_are_valid_json():
    for path in build.JSON_DIR.glob("*.json"):
        doc = json.loads(path.read_text())
        assert doc["uid"].startswith("hotspots-") and doc["panels"]
        ids = [p["id"] for p in doc["panels"]]
        assert len(ids) == len(set(ids))
        for var in doc["templating"]["list"]:
            assert var["current"]["value"] in var["query"].split(",")
