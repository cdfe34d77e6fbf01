"""streams.alerts: the spike agents' fold, and the agents under faust's test_context().

Event times are relative to now, since only live events (HOTSPOTS_SPIKE_LIVE_DAYS) page.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import faust
import orjson
import pytest
from faust.topics import Topic
from prometheus_client import REGISTRY

from hotspots import accepted
from hotspots.contract import Arrest, RecordedCrime, Seizure, encode_event
from hotspots.geo import cells_of, partition_of, to_str
from hotspots.metrics import SPIKES_SILENT
from hotspots.periods import LONDON, week_start
from hotspots.settings import WorkerSettings
from streams.alerts import (
    CELLS,
    DISTRICTS,
    SRC,
    Fold,
    OpenAlerts,
    build_spikes_app,
    chunks,
    fold_cells,
    fold_districts,
)
from streams.app import build_app
from streams.districts import DistrictLocator
from streams.rollup import accepted_row, position
from tests.shared_data import ESSEX_OUTLINES, needs
from tests.unit.test_agent import Sent, _Delivered

CHELMSFORD = (51.7356, 0.4685)
NOW = datetime.now(UTC)
LIVE = timedelta(days=7)
SENTINEL = b"[]"


def arrest(event_id: str, at: datetime, where: tuple[float, float] = CHELMSFORD) -> Arrest:
    return Arrest(event_id=event_id, occurred_at=at, lat=where[0], lon=where[1], force="essex")


def envelope(events: list[Any], first: int = 0, partition: int = 0) -> bytes:
    """The worker's accepted envelope of ``events`` at offsets first, first + 1, ..."""
    return accepted.envelope([
        accepted.line(accepted_row(e, None, (partition, position(first + i))), encode_event(e))
        for i, e in enumerate(events)])


def this_week(n: int, tag: str = "s") -> list[Arrest]:
    """``n`` arrests in Chelmsford in the current London week, in the last hour or less."""
    monday = datetime.combine(week_start(NOW), datetime.min.time(), LONDON)
    base = max(NOW - timedelta(hours=1), monday)
    return [arrest(f"{tag}-{i}", base + timedelta(seconds=i)) for i in range(n)]


def history(weeks_ago: int = 12) -> list[Any]:
    """One arrest ``weeks_ago`` (long enough for the 8-week warm-up), and a seizure a week
    since then in the same place: a live feed, not one that went silent (Coverage)."""
    seizures = [Seizure(event_id=f"bg-s-{w}", occurred_at=NOW - timedelta(weeks=w), lat=CHELMSFORD[0],
                        lon=CHELMSFORD[1], force="essex", weapons_count=1)
                for w in range(weeks_ago, 0, -1)]
    return [arrest(f"bg-{weeks_ago}", NOW - timedelta(weeks=weeks_ago, hours=1)), *seizures]


def write_back(fold: Fold, data: dict[str, Any]) -> dict[str, Any]:
    for _, key, state in fold.states():
        data[key] = state
    return data


def test_a_spike_raises_one_alert_per_cell_and_never_again():
    spike = this_week(8)
    fold = Fold({}, CELLS, LIVE, NOW)
    assert fold_cells(fold, [(0, envelope([*history(), *spike]))], None, 4) == {}
    cells = cells_of(*CHELMSFORD)
    assert [(a["area"], a["res"], a["area_type"], a["period"], a["observed"], a["method"])
            for a in fold.alerts] == [(to_str(cells[7]), 7, "cell", "week", 5, "poisson-week"),
                                      (to_str(cells[6]), 6, "cell", "week", 5, "poisson-week")]
    first = fold.alerts[0]
    assert first["triggering_event_id"] == "s-4"  # the fifth event of the week, not the eighth
    assert first["period_start"] == week_start(NOW).isoformat()
    assert 0 < first["expected"] <= 1 / 10 and first["p_value"] < 1e-5  # about 12 quiet weeks
    assert datetime.fromisoformat(first["first_seen"]).tzinfo is not None
    assert len({a["alert_id"] for a in fold.alerts}) == 2
    data = write_back(fold, {})
    # One entry per res-6 cell holds its own series and its res-7 children's, of every kind,
    # and the last position it applied from each source partition.
    bundle = data[f"cell6|{to_str(cells[6])}"]
    assert sorted(bundle) == sorted([SRC, *(f"{to_str(cells[r])}|{k}" for r in (7, 6)
                                            for k in ("arrest", "seizure"))])
    assert bundle[SRC] == {"0": position(12 + 8)}
    assert bundle[f"{to_str(cells[7])}|arrest"]["a"] == week_start(NOW).isoformat()

    # The same envelope again (a worker re-sending after a crash): nothing changes.
    again = Fold(data, CELLS, LIVE, NOW)
    fold_cells(again, [(0, envelope([*history(), *spike]))], None, 4)
    assert again.alerts == [] and again.series == {}
    # More events in the spike's week: counted, but the cooldown holds.
    more = Fold(data, CELLS, LIVE, NOW)
    fold_cells(more, [(0, envelope(this_week(4, "t"), first=21))], None, 4)
    assert more.alerts == []
    assert sum(more.series[f"{to_str(cells[7])}|arrest"][1].weeks.values()) == 13


def test_below_the_minimum_count_and_in_warm_up_nothing_alerts():
    fold = Fold({}, CELLS, LIVE, NOW)
    fold_cells(fold, [(0, envelope([*history(), *this_week(4)]))], None, 4)
    assert fold.alerts == []  # 4 events on a quiet baseline: below the minimum count
    young = Fold({}, CELLS, LIVE, NOW)
    fold_cells(young, [(0, envelope([*history(5), *this_week(9)]))], None, 4)
    # 5 weeks of coverage: the week test is still warming up (8), EARS C2 needs 9 days only.
    assert [(a["method"], a["period"]) for a in young.alerts] == [("ears-c2", "day")] * 2


def test_backfill_counts_but_does_not_page():
    old = NOW - timedelta(weeks=5)
    spike = [arrest(f"old-{i}", old + timedelta(minutes=i)) for i in range(6)]
    before = SPIKES_SILENT.labels("cell")._value.get()
    fold = Fold({}, CELLS, LIVE, NOW)
    fold_cells(fold, [(0, envelope([*history(17), *spike]))], None, 4)
    assert fold.alerts == [] and fold.silent == 2  # res 7 and res 6
    series = fold.series[f"{to_str(cells_of(*CHELMSFORD)[7])}|arrest"][1]
    assert series.alerted == week_start(old)  # the backfilled spike starts its cooldown
    assert before == SPIKES_SILENT.labels("cell")._value.get()  # the agent counts, not the fold


def test_replayed_years_and_month_precision_do_not_fake_a_baseline():
    crime = RecordedCrime(event_id="rc-1", occurred_at=NOW.replace(day=1), time_precision="month",
                          lat=CHELMSFORD[0], lon=CHELMSFORD[1], force="essex",
                          crime_type="Drugs")
    # Another test's year first: its coverage ends long before now, so the live feed starts a
    # new one and warms up, rather than taking the years between as a quiet baseline.
    replay = [arrest(f"y2013-{i}", datetime(2013, 5, 1, 12, tzinfo=UTC) + timedelta(days=i))
              for i in range(60)]
    fold = Fold({}, CELLS, LIVE, NOW)
    fold_cells(fold, [(0, envelope([*replay, crime, *this_week(9)]))], None, 4)
    assert fold.alerts == []
    assert fold.feeds[0].coverage.start == this_week(1)[0].occurred_at.astimezone(LONDON).date()
    # Events older than the retained window are skipped once the feed is live.
    late = Fold(write_back(fold, {}), CELLS, LIVE, NOW)
    fold_cells(late, [(0, envelope([arrest("y2013-late", datetime(2013, 6, 1, tzinfo=UTC))],
                                   first=100))], None, 4)
    assert late.series == {}


@needs(ESSEX_OUTLINES)
@pytest.mark.parametrize("landed", ["entries", "feed"])
def test_a_crash_between_an_entry_and_its_feed_neither_skips_nor_doubles(landed):
    """A worker killed while a batch's changelog writes are in flight: only the cell's entry
    landed, or only the partition's feed. The redelivered batch then counts each event once."""
    events = [*history(), *this_week(3)]
    fold = Fold({}, CELLS, LIVE, NOW)
    fold_cells(fold, [(0, envelope(events))], None, 4)
    data = {key: state for _, key, state in fold.states()
            if key.startswith("partition|") == (landed == "feed")}
    again = Fold(data, CELLS, LIVE, NOW)
    fold_cells(again, [(0, envelope(events))], None, 4)
    counted = write_back(again, dict(data))
    cell7 = to_str(cells_of(*CHELMSFORD)[7])
    bundle = counted[f"cell6|{to_str(cells_of(*CHELMSFORD)[6])}"]
    assert sum(bundle[f"{cell7}|arrest"]["w"].values()) == 4  # the history's one and 3 this week
    assert sum(bundle[f"{cell7}|seizure"]["w"].values()) == 12


def test_district_locator_places_cells_by_their_centre():
    locate = DistrictLocator.from_file(ESSEX_OUTLINES)
    assert locate(cells_of(*CHELMSFORD)[8]) == "Chelmsford"
    assert locate(cells_of(51.8959, 0.8919)[8]) == "Colchester"
    assert locate(cells_of(51.5, -3.2)[8]) is None  # Cardiff
    assert len(locate._cache) == 3


def test_district_fold_skips_redelivered_sources():
    rows = [orjson.dumps({"district": "Chelmsford", "kind": "arrest", "occurred_at": e.occurred_at
                          .isoformat(), "event_id": e.event_id, "src": [2, position(i)]})
            for i, e in enumerate([*history(), *this_week(6)])]
    fold = Fold({}, DISTRICTS, LIVE, NOW)
    fold_districts(fold, [(1, env) for env in chunks(rows, 3)] + [(1, next(chunks(rows)))])
    (alert,) = fold.alerts
    assert (alert["area_type"], alert["area"], alert["res"], alert["observed"]) == (
        "district", "Chelmsford", 0, 5)
    assert fold.bundles["district|Chelmsford"][1][SRC] == {"2": position(12 + 6)}


def test_open_alerts_gauge_counts_this_weeks_alerts_and_survives_a_restart():
    opened = OpenAlerts()
    monday = week_start(NOW).isoformat()
    opened.seed("cell", {"partition|0": {"src": {}, "start": None, "latest": None},
                         "cell6|x": {"a|arrest": {"a": monday}, "b|arrest": {"a": "2020-01-06"},
                                     "c|arrest": {"a": None}}})
    opened.seed("cell", {"cell6|y": {"d|arrest": {"a": monday}}})  # seeded once only
    assert opened.count("cell") == 1
    opened.note({"area_type": "district", "area": "Harlow", "kind": "arrest",
                 "period_start": (NOW.astimezone(LONDON).date()).isoformat()})  # an EARS day
    assert opened.count("district") == 1


# --- the agents under faust's test_context() ---------------------------------------------------


@pytest.fixture
def sent(monkeypatch) -> Sent:
    sent = Sent()

    def send_soon(self: Any, **kw: Any) -> asyncio.Future:
        sent.records.append((self.get_topic_name(), kw.get("key"), kw.get("value"),
                             kw.get("partition")))  # outputs and table changelogs alike
        fut = _Delivered(loop=asyncio.get_running_loop())
        fut.message = SimpleNamespace(partition=kw.get("partition"))
        fut.set_result(None)
        return fut

    async def send(self: Any, **kw: Any) -> asyncio.Future:
        """Topic.send(force=True): the delivery future, already resolved."""
        assert kw.get("force") is True  # not attached to the event being processed
        return send_soon(self, **kw)

    monkeypatch.setattr(Topic, "send_soon", send_soon)
    monkeypatch.setattr(Topic, "send", send)
    return sent


def run(app: faust.App, agent: str, puts: list[tuple[bytes, int]], wait: float = 0.3) -> None:
    async def main() -> None:
        async with app.agents[agent].test_context() as ctx:
            for value, partition in puts:
                await ctx.put(value, key=None, partition=partition)
            await ctx.put(SENTINEL, key=None, partition=0)
            await asyncio.sleep(wait * 3)

    asyncio.run(asyncio.wait_for(main(), timeout=30))


@needs(ESSEX_OUTLINES)
def test_agents_publish_alerts_rekey_districts_and_resume_after_restart(tmp_path, sent):
    settings = WorkerSettings(data_dir=tmp_path, partitions=4, fold_within=0.3,
                              boundaries=ESSEX_OUTLINES)
    home = partition_of(to_str(cells_of(*CHELMSFORD)[6]).encode(), 4)
    events = [*history(), *this_week(7)]
    app = build_spikes_app(settings)
    run(app, "spikes", [(envelope(events[:9], 0, home), home), (envelope(events[9:], 9, home), home)])

    alerts = [orjson.loads(v) for _, v, _ in sent.to(".alerts.v1")]
    assert [(a["res"], a["observed"]) for a in alerts] == [(7, 5), (6, 5)]
    assert [k for k, _, _ in sent.to(".alerts.v1")] == [a["alert_id"].encode() for a in alerts]
    assert REGISTRY.get_sample_value("hotspots_spike_open_alerts", {"area_type": "cell"}) == 2
    changelog = sent.to("-spikes-changelog")
    assert {p for _, _, p in changelog} == {home}  # beside the source partition, for recovery
    assert {orjson.loads(k) if isinstance(k, bytes) else k for k, _, _ in changelog} >= {
        f"partition|{home}", f"cell6|{to_str(cells_of(*CHELMSFORD)[6])}"}
    rekeyed = sent.to(".district-events.v1")
    assert {p for _, _, p in rekeyed} == {partition_of(b"Chelmsford", 4)}
    records = [r for _, v, _ in rekeyed for r in orjson.loads(v)]
    assert [r["event_id"] for r in records] == [e.event_id for e in events]
    assert {r["district"] for r in records} == {"Chelmsford"}

    # The district agent, fed what the cell agent re-keyed.
    run(app, "district_spikes", [(v, p) for _, v, p in rekeyed])
    (district,) = [orjson.loads(v) for _, v, _ in sent.to(".alerts.v1")][2:]
    assert (district["area_type"], district["area"], district["observed"]) == (
        "district", "Chelmsford", 5)

    # A restarted worker: its tables recovered from the changelog, the envelopes redelivered,
    # then more events of the same week. Nothing is raised again.
    restarted = build_spikes_app(settings)
    for name in ("spikes", "district_spikes"):
        for _, key, value, _ in [r for r in sent.records if r[0].endswith(f"-{name}-changelog")]:
            restarted.tables[name].data[key] = value
    sent.records.clear()
    run(restarted, "spikes", [(envelope(events[9:], 9, home), home),
                              (envelope(this_week(3, "late"), len(events), home), home)])
    assert sent.to(".alerts.v1") == []
    late = [r["event_id"] for _, v, _ in sent.to(".district-events.v1") for r in orjson.loads(v)]
    assert late == ["late-0", "late-1", "late-2"]  # the redelivered rows are not re-keyed again


def test_the_spike_agents_are_an_app_of_their_own_with_their_changelogs_where_they_were(tmp_path):
    settings = WorkerSettings(data_dir=tmp_path, app_id="unit-worker")
    spikes, rollups = build_spikes_app(settings), build_app(settings)
    assert (spikes.conf.id, rollups.conf.id) == ("unit-worker-spikes", "unit-worker")
    assert [a.split(".")[-1] for a in spikes.agents] == ["spikes", "district_spikes"]
    assert [a.split(".")[-1] for a in rollups.agents] == ["aggregate"]
    # The names they had in the rollups app: an upgrade recovers the spike state from them.
    assert sorted(t.changelog_topic.get_topic_name() for t in spikes.tables.values()) == [
        f"unit-worker-{name}-changelog"
        for name in ("district_spikes", "district_spikes_progress", "spikes", "spikes_progress")]
    assert sorted(t.changelog_topic.get_topic_name() for t in rollups.tables.values()) == [
        f"unit-worker-{name}-changelog" for name in ("progress", "rollups", "seen")]


def test_series_with_nothing_left_in_the_window_are_dropped_from_their_entry():
    cell6 = to_str(cells_of(*CHELMSFORD)[6])
    stale = {"w": {"2020-01-06": 3}, "d": {}, "a": "2020-01-06"}
    data = {f"cell6|{cell6}": {f"{cell6}|warrant": stale}}
    fold = Fold(data, CELLS, LIVE, NOW)
    fold_cells(fold, [(0, envelope(this_week(1)))], None, 4)
    (bundle,) = [state for _, key, state in fold.states() if key == f"cell6|{cell6}"]
    assert sorted(bundle) == sorted([SRC, *(f"{to_str(cells_of(*CHELMSFORD)[r])}|arrest"
                                            for r in (7, 6))])


def test_the_spike_agent_reads_a_record_faust_dropped_again(tmp_path, sent):
    """Envelopes at offsets 0, then 2 (1 dropped by faust: the guard seeks back to it), then
    1 and 2 after the seek. Every event is counted once, and the alerts are the usual two."""
    settings = WorkerSettings(data_dir=tmp_path, partitions=1, fold_within=0.3)
    app = build_spikes_app(settings)
    events = [*history(), *this_week(7)]
    parts = [envelope(events[:5], 0), envelope(events[5:12], 5), envelope(events[12:], 12)]
    seeks: list[dict[Any, int]] = []

    async def seek_wait(partitions: dict[Any, int]) -> None:
        seeks.append({tp.topic: o for tp, o in partitions.items()})

    async def main() -> None:
        async with app.agents["spikes"].test_context() as ctx:
            app.consumer.seek_wait = seek_wait
            await ctx.put(parts[0], key=None, partition=0)  # 0
            ctx.sent_offset = 2
            await ctx.put(parts[2], key=None, partition=0)  # 2: 1 never arrived
            await asyncio.sleep(settings.fold_within * 3)
            assert seeks == [{settings.accepted_topic: 1}]
            ctx.sent_offset = 1
            for value in parts[1:]:
                await ctx.put(value, key=None, partition=0)  # 1, 2
            await ctx.put(SENTINEL, key=None, partition=0)  # 3
            await asyncio.sleep(settings.fold_within * 3)

    asyncio.run(asyncio.wait_for(main(), timeout=30))
    alerts = [orjson.loads(v) for _, v, _ in sent.to(".alerts.v1")]
    assert [(a["res"], a["observed"]) for a in alerts] == [(7, 5), (6, 5)]
    cell7 = to_str(cells_of(*CHELMSFORD)[7])
    entry = dict(app.tables["spikes"].items())[f"cell6|{to_str(cells_of(*CHELMSFORD)[6])}"]
    assert sum(entry[f"{cell7}|arrest"]["w"].values()) == 8  # the history's one and 7 this week
    assert sum(entry[f"{cell7}|seizure"]["w"].values()) == 12
    assert dict(app.tables["spikes_progress"].items()) == {"0": 4}
