"""Emerging hot spot analysis: Mann-Kendall, the 17 classes, stored transitions, API and CLI.

The store-backed tests write their own years (2066 counts, 2067 background) to the shared store.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from hotspots import cli
from hotspots.contract import Arrest, Seizure
from hotspots.geo import cell_of, center, to_str
from hotspots.settings import SinkSettings
from sinks import ehsa as ehsa_module
from sinks.ehsa import (
    CLASSES,
    TransitionPublishError,
    classify,
    ehsa,
    kafka_publisher,
    mann_kendall,
    update_classes,
)
from sinks.gistar import study_area
from sinks.queries import QueryError
from tests.unit.test_store import worker_output, write

YEAR = 2066
FIRST = date.fromisocalendar(YEAR, 2, 1)  # the cluster is there in ISO weeks 2..11 of 2066
LAST = FIRST + timedelta(weeks=9)


# --- Mann-Kendall -------------------------------------------------------------------------

def test_mann_kendall_by_hand():
    # 1..5: all 10 pairs rise, S = 10; Var = 5·4·15/18; z = (10 − 1)/√Var.
    s, z, p = mann_kendall([1, 2, 3, 4, 5])
    assert s == 10 and z == pytest.approx(9 / math.sqrt(300 / 18))
    assert z == pytest.approx(2.2045, abs=1e-4) and p == pytest.approx(0.02749, abs=1e-5)
    s, z, p2 = mann_kendall([5, 4, 3, 2, 1])
    assert s == -10 and z == pytest.approx(-9 / math.sqrt(300 / 18)) and p2 == pytest.approx(p)


def test_mann_kendall_with_ties():
    # 3 1 4 1 5: rises 3→4 3→5 1→4 1→5 4→5 1→5 (6), falls 3→1 3→1 4→1 (3), 1→1 tied: S = 3.
    # One tie group of t = 2 takes 2·1·9 = 18 off 300: Var = 282/18; z = (3 − 1)/√Var.
    s, z, p = mann_kendall([3, 1, 4, 1, 5])
    assert s == 3 and z == pytest.approx(2 / math.sqrt(282 / 18))
    assert p == pytest.approx(math.erfc(z / math.sqrt(2))) and p == pytest.approx(0.6134, abs=1e-4)
    # Tie groups of 2 and 3: 1 1 2 2 2 → S = 2·3 = 6; Var = (300 − 2·1·9 − 3·2·11)/18.
    s, z, _ = mann_kendall([1, 1, 2, 2, 2])
    var = (300 - 2 * 1 * 9 - 3 * 2 * 11) / 18
    assert s == 6 and z == pytest.approx(5 / math.sqrt(var))
    assert mann_kendall([4, 4, 4]) == (0, 0.0, 1.0)
    assert mann_kendall([2, 1, 1, 2]) == (0, 0.0, 1.0)  # S = 0: no trend, no correction


# --- the 17 classes (N = 10 weeks, oldest first) -----------------------------------------

UP = [2.5 + 0.5 * i for i in range(10)]  # significant rising z-scores
FLAT = [3.0] * 10  # no trend: every pair tied

HOT_CASES = {
    "no_pattern": ([0] * 10, [0.0] * 10),
    "new_hot_spot": ([0] * 9 + [2], None),
    "consecutive_hot_spot": ([0] * 7 + [2, 3, 2], None),
    "intensifying_hot_spot": ([3] * 10, UP),
    "persistent_hot_spot": ([2] * 10, FLAT),
    "diminishing_hot_spot": ([3] * 10, UP[::-1]),
    "sporadic_hot_spot": ([2, 0, 2, 0, 0, 3, 0, 1, 0, 2], None),
    "oscillating_hot_spot": ([-2, 0, 2, 0, 0, 0, 0, -3, 0, 2], None),
    "historical_hot_spot": ([2] * 9 + [0], None),
}


def _z(bins: list[int]) -> list[float]:
    return [1.0 * b + 0.5 * (b > 0) - 0.5 * (b < 0) for b in bins]


def _case(name: str) -> tuple[list[int], list[float]]:
    hot_name = name.replace("cold", "hot")
    bins, z = HOT_CASES[hot_name]
    z = z if z is not None else _z(bins)
    if "cold" in name:
        return [-b for b in bins], [-v for v in z]
    return bins, z


@pytest.mark.parametrize("name", CLASSES)
def test_every_class(name):
    bins, z = _case(name)
    assert classify(z, bins) == name
    assert len(CLASSES) == 17


def test_trend_decides_among_the_mostly_hot():
    _, tz, tp = mann_kendall(UP)
    assert tz > 0 and tp < 0.05
    noisy = [3.0, 3.4, 2.9, 3.5, 3.1, 2.8, 3.3, 3.0, 3.2, 3.1]  # no significant trend
    assert mann_kendall(noisy)[2] > 0.05 and classify(noisy, [3] * 10) == "persistent_hot_spot"
    assert classify(UP, [3] * 10, alpha=1e-6) == "persistent_hot_spot"  # alpha is the trend's


@pytest.mark.parametrize(
    ("bins", "expected"),
    [
        ([0] + [2] * 9, "persistent_hot_spot"),  # 9/10 = 90%: mostly hot, not consecutive
        ([0, 0] + [2] * 8, "consecutive_hot_spot"),  # 8/10 < 90%
        ([0] + [2] * 11, "persistent_hot_spot"),  # 11/12 ≥ 90%
        ([0, 0] + [2] * 10, "consecutive_hot_spot"),  # 10/12 = 83%
        ([2, 2, 2, 0] + [2] * 6, "persistent_hot_spot"),  # 9/10 with a gap
        ([2, 2, 0, 0] + [2] * 6, "sporadic_hot_spot"),  # 8/10 with a gap
        ([2] * 9 + [0], "historical_hot_spot"),  # 9/10, not hot last
        ([0] + [2] * 8 + [0], "no_pattern"),  # 8/10, not hot last
        ([2] * 10 + [0, 0], "no_pattern"),  # 10/12 = 83%, not hot last
        ([2] * 11 + [0], "historical_hot_spot"),  # 11/12
        ([0] * 9 + [1], "no_pattern"),  # bin 1 (90%) is not significant
        ([1] * 9 + [2], "new_hot_spot"),
    ],
)
def test_ninety_percent_rule(bins, expected):
    assert classify([3.0 if b else 0.0 for b in bins], bins) == expected


def test_overlaps_are_settled_in_arcgis_order():
    # Hot only in the final week after cold weeks: new (listed before oscillating), and the
    # final week's sign beats a 90% cold history (historical cold).
    assert classify(_z([-2] * 9 + [2]), [-2] * 9 + [2]) == "new_hot_spot"
    assert classify(_z([-2, 0, 0, 0, 0, 0, 0, 2, 2, 2]), [-2, 0, 0, 0, 0, 0, 0, 2, 2, 2]) \
        == "consecutive_hot_spot"
    with pytest.raises(ValueError):
        classify([1.0], [2])
    with pytest.raises(ValueError):
        classify([1.0, 2.0], [2])


# --- the store ----------------------------------------------------------------------------

def _cluster(hub: int, monday: date, tag: str) -> list:
    """Arrests on a week's Wednesday: 10 in the hub cell and 5 in each of its six neighbours."""
    events: list = []
    when = datetime(monday.year, monday.month, monday.day, 12, tzinfo=UTC) + timedelta(days=2)
    for ring, cell in enumerate(sorted(study_area({hub}, 1), key=lambda c: c != hub)):
        lat, lon = center(cell)
        events += [Arrest(event_id=f"ehsa-{tag}-{ring}-{n}", force="essex", lat=lat, lon=lon,
                          occurred_at=when) for n in range(10 if cell == hub else 5)]
    return events


@pytest.fixture(scope="module")
def hub(store, sink_settings) -> int:
    hub = cell_of(51.7356, 0.4685)  # Chelmsford
    events = [e for w in range(10) for e in _cluster(hub, FIRST + timedelta(weeks=w), f"w{w}")]
    # 2067: seizures scattered over Essex widen the study area (any kind, any period).
    events += [Seizure(event_id=f"ehsa-bg-{i}-{j}", force="essex", lat=51.50 + 0.03 * i,
                       lon=0.20 + 0.06 * j, occurred_at=datetime(YEAR + 1, 5, 5, 9, tzinfo=UTC),
                       weapons_count=1) for i in range(12) for j in range(12)]
    write(store, sink_settings, worker_output(events)[0])
    return hub


def test_ehsa_finds_the_persistent_cluster(store, hub):
    rows = ehsa(store, LAST, "arrest", 8, weeks=10)
    assert all(tuple(r) == ("cell", "class", "trend_z", "trend_p", "hot_weeks", "cold_weeks",
                            "last_z") for r in rows)
    by_cell = {r["cell"]: r for r in rows}
    top = by_cell[to_str(hub)]
    # The same counts every week: the same z, no trend.
    assert top["class"] == "persistent_hot_spot" and top["hot_weeks"] == 10 and top["cold_weeks"] == 0
    assert top["trend_z"] == 0 and top["trend_p"] == 1 and top["last_z"] > 3
    assert rows[0]["class"] != "no_pattern" and rows[-1]["class"] == "no_pattern"
    assert len(rows) == len(by_cell) > 300
    # One week later the cluster is gone: hot 9 of the last 10 weeks, not in the final one.
    later = {r["cell"]: r for r in ehsa(store, LAST + timedelta(weeks=1), "arrest", 8, weeks=10)}
    assert later[to_str(hub)]["class"] == "historical_hot_spot"
    # Over 12 weeks ending at LAST, 10 hot ending at the last: consecutive.
    twelve = {r["cell"]: r for r in ehsa(store, LAST, "arrest", 8, weeks=12)}
    assert twelve[to_str(hub)]["class"] == "consecutive_hot_spot"
    # Only the first week of the cluster: new.
    first = {r["cell"]: r for r in ehsa(store, FIRST, "arrest", 8, weeks=10)}
    assert first[to_str(hub)]["class"] == "new_hot_spot"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((LAST + timedelta(days=1), "arrest", 8, 10, 1), "not a Monday"),
        ((LAST, "parking", 8, 10, 1), "kind"),
        ((LAST, "arrest", 9, 10, 1), "resolution"),
        ((LAST, "arrest", 8, 9, 1), "weeks must be"),
        ((LAST, "arrest", 8, 10, 6), "k must be"),
    ],
)
def test_ehsa_errors(store, args, message):
    with pytest.raises(QueryError, match=message):
        ehsa(store, *args)


def _stored(store, table: str, res: int, week: date) -> int:
    return store.query(f"SELECT count() AS n FROM {{db}}.{table} FINAL WHERE res = %(res)s "
                       "AND kind = 'arrest' AND week_start = %(week)s",
                       {"res": res, "week": week})[0]["n"]


def test_update_classes_publishes_each_change_once(store, hub):
    published: list[dict[str, Any]] = []
    first = update_classes(store, LAST, "arrest", 8, weeks=10, publish=published.append)
    mine = [t for t in first if t["cell"] == to_str(hub)]
    assert mine and len(mine) == 1 and mine[0]["from_class"] == "no_pattern"  # no history
    assert mine[0]["to_class"] == "persistent_hot_spot" and mine[0]["week"] == f"{YEAR}-W11"
    assert published == first and len({t["cell"] for t in first}) == len(first)
    assert all(t["to_class"] != "no_pattern" for t in first)  # no history, no pattern: no change
    classes = _stored(store, "ehsa_classes", 8, LAST)
    assert _stored(store, "ehsa_transitions", 8, LAST) == len(first) and classes > 300

    assert update_classes(store, LAST, "arrest", 8, weeks=10, publish=published.append) == []
    assert len(published) == len(first)  # nothing new published...
    assert _stored(store, "ehsa_transitions", 8, LAST) == len(first)  # ...or stored
    assert _stored(store, "ehsa_classes", 8, LAST) == classes
    rows = store.query("SELECT count() AS n FROM {db}.ehsa_classes WHERE res = 8 "
                       "AND kind = 'arrest' AND week_start = %(w)s", {"w": LAST})
    assert rows[0]["n"] == classes  # not even a replaced duplicate awaiting a merge

    # The next week the hub turns historical: exactly one transition for it, from persistent.
    published.clear()
    nxt = update_classes(store, LAST + timedelta(weeks=1), "arrest", 8, weeks=10,
                         publish=published.append)
    mine = [t for t in nxt if t["cell"] == to_str(hub)]
    assert [(t["from_class"], t["to_class"]) for t in mine] == [
        ("persistent_hot_spot", "historical_hot_spot")]
    assert published == nxt
    assert update_classes(store, LAST + timedelta(weeks=1), "arrest", 8, weeks=10) == []


class FlakyPublisher:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.fail = True

    def __call__(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def flush(self) -> None:
        if self.fail:
            raise TransitionPublishError("broker down")


def test_a_failed_publish_stores_nothing_and_is_retried(store, hub):
    publish = FlakyPublisher()
    with pytest.raises(TransitionPublishError):
        update_classes(store, LAST, "arrest", 7, weeks=10, publish=publish)
    assert publish.records and _stored(store, "ehsa_transitions", 7, LAST) == 0
    assert _stored(store, "ehsa_classes", 7, LAST) == 0
    sent = len(publish.records)
    publish.fail = False
    again = update_classes(store, LAST, "arrest", 7, weeks=10, publish=publish)
    assert len(again) == sent and publish.records[sent:] == again  # at least once


# --- Kafka publisher with a fake producer -------------------------------------------------

class FakeFuture:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def add_errback(self, fn: Any) -> FakeFuture:
        if self.error is not None:
            fn(self.error)
        return self


class FakeProducer:
    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.flushed = self.closed = 0
        self.error = error

    def send(self, topic: str, key: bytes, value: bytes) -> FakeFuture:
        self.sent.append((topic, key, value))
        return FakeFuture(self.error)

    def flush(self, timeout: float | None = None) -> None:
        self.flushed += 1

    def close(self, timeout: float | None = None) -> None:
        self.closed += 1


def test_kafka_publisher_sends_json_keyed_by_cell():
    producer = FakeProducer()
    settings = SinkSettings(topic_prefix="t")
    assert settings.transitions_topic == "t.transitions.v1"
    publish = kafka_publisher(settings, producer)
    record = {"cell": "88194e6f3bfffff", "from_class": "no_pattern", "to_class": "new_hot_spot"}
    publish(record)
    publish.flush()
    publish.close()
    assert producer.sent == [("t.transitions.v1", b"88194e6f3bfffff", orjson.dumps(record))]
    assert producer.flushed == 1 and producer.closed == 1
    failing = kafka_publisher(settings, FakeProducer(RuntimeError("not leader")))
    failing(record)
    with pytest.raises(TransitionPublishError, match="1 of 1 transitions not acknowledged"):
        failing.flush()
    idle = kafka_publisher(settings)  # no producer until the first record
    idle.flush()
    idle.close()
    assert idle.producer is None


# --- API and CLI --------------------------------------------------------------------------

def _client(api_client, publisher):
    return api_client(transitions_publisher=lambda: publisher)


def test_api(store, hub, api_client):
    producer = FakeProducer()
    client = _client(api_client, kafka_publisher(SinkSettings(), producer))
    params = {"week": f"{YEAR}-W11", "kind": "arrest", "res": 8, "weeks": 10}
    got = client.get("/v1/ehsa", params=params)
    assert got.status_code == 200
    assert {r["cell"]: r["class"] for r in got.json()}[to_str(hub)] == "persistent_hot_spot"
    bad = client.get("/v1/ehsa", params={**params, "week": "2066-11"})
    assert bad.status_code == 400 and "ISO week" in bad.json()["detail"]
    assert client.get("/v1/ehsa", params={**params, "weeks": 3}).status_code == 422

    upd = {**params, "res": 6}
    first = client.post("/v1/ehsa/update", params=upd)
    assert first.status_code == 200 and first.json()
    assert len(producer.sent) == len(first.json()) and producer.flushed == 1 and producer.closed == 1
    assert {orjson.loads(v)["cell"] for _, _, v in producer.sent} == {t["cell"] for t in first.json()}
    again = client.post("/v1/ehsa/update", params=upd)
    assert again.status_code == 200 and again.json() == [] and len(producer.sent) == len(first.json())
    assert client.post("/v1/ehsa/update", params={**upd, "kind": "parking"}).status_code == 400

    down = _client(api_client, kafka_publisher(SinkSettings(), FakeProducer(RuntimeError("down"))))
    failed = down.post("/v1/ehsa/update", params={**upd, "week": f"{YEAR}-W12"})
    assert failed.status_code == 503 and "not acknowledged" in failed.json()["detail"]


def test_cli(store, hub, monkeypatch, cli_on_store):
    calls = cli_on_store.methods
    out = CliRunner().invoke(cli.main, ["query", "ehsa", "--week", f"{YEAR}-W11", "--kind",
                                        "arrest", "--weeks", "10", "--format", "csv"])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0] == "cell,class,trend_z,trend_p,hot_weeks,cold_weeks,last_z"
    assert f"{to_str(hub)},persistent_hot_spot," in out.output

    producer = FakeProducer()
    monkeypatch.setattr(ehsa_module, "kafka_publisher",
                        lambda settings: kafka_publisher(settings, producer))
    args = ["ehsa", "update", "--week", f"{YEAR}-W12", "--kind", "arrest", "--res", "6",
            "--weeks", "10", "--format", "json"]
    out = CliRunner().invoke(cli.main, args)
    assert out.exit_code == 0, out.output
    assert len(orjson.loads(out.output)) == len(producer.sent) > 0 and producer.closed == 1
    assert calls == [("GET", "/v1/ehsa"), ("POST", "/v1/ehsa/update")]
    out = CliRunner().invoke(cli.main, args)
    assert out.exit_code == 0 and orjson.loads(out.output) == []
    out = CliRunner().invoke(cli.main, ["query", "ehsa", "--week", "2066-W11", "--kind", "parking"])
    assert out.exit_code == 2 and "kind" in out.output
    out = CliRunner().invoke(cli.main, ["query", "ehsa", "--week", "W11", "--kind", "arrest"])
    assert out.exit_code == 2 and "ISO week" in out.output
