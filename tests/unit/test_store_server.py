"""The same SQL on a ClickHouse server, through clickhouse-connect's HTTP client.

No modern ClickHouse server can be installed on the development machines, so this runs
whenever HOTSPOTS_TEST_CLICKHOUSE_URL points at one (e.g. http://default:@127.0.0.1:8123),
as the docker-compose deployment provides. It uses its own database and drops it after.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, date, datetime

import pytest

from hotspots.contract import Arrest
from hotspots.geo import cells_of
from hotspots.settings import SinkSettings
from sinks import queries
from sinks.store import Store

URL = os.environ.get("HOTSPOTS_TEST_CLICKHOUSE_URL")
pytestmark = pytest.mark.skipif(not URL, reason="set HOTSPOTS_TEST_CLICKHOUSE_URL to test a server")


@pytest.fixture
def server_store(tmp_path):
    settings = SinkSettings(data_dir=tmp_path, clickhouse_url=URL,
                            database=f"hotspots_test_{uuid.uuid4().hex[:8]}")
    store = Store(settings)
    assert not store.embedded
    yield store, settings
    store.command(f"DROP DATABASE IF EXISTS {settings.database}")
    store.close()


def test_schema_sink_and_queries_on_a_server(server_store) -> None:
    from tests.unit.test_store import worker_output, write

    store, settings = server_store
    events = [Arrest(event_id=f"srv-{i}", occurred_at=datetime(2023, 7, 3 + i % 5, 12, tzinfo=UTC),
                     lat=51.7356, lon=0.4685, force="essex", charged=i % 2 == 0) for i in range(10)]
    write(store, settings, *worker_output(events))
    write(store, settings, *worker_output(events))  # redelivered: no change
    rows = queries.cells(store, date(2023, 7, 3), date(2023, 7, 9))
    assert [(r["period_start"], r["kind"], r["count"]) for r in rows] == [("2023-07-03", "arrest", 10)]
    assert queries.summary(store, date(2023, 7, 1), date(2023, 7, 31))["charged"] == 5


def test_server_h3_matches_python(server_store) -> None:
    store, _ = server_store
    lat, lon = 51.7356, 0.4685
    # Servers from 25.5 take (lat, lon) under this setting; older ones take (lon, lat) and do
    # not know the setting. The product computes cells in Python and never relies on either.
    version = tuple(int(x) for x in store.query("SELECT version() AS v")[0]["v"].split(".")[:2])
    if version >= (25, 5):
        sql = "SELECT geoToH3(%(lat)s, %(lon)s, 8) AS c8 SETTINGS geotoh3_argument_order = 'lat_lon'"
    else:
        sql = "SELECT geoToH3(%(lon)s, %(lat)s, 8) AS c8"
    assert store.query(sql, {"lat": lat, "lon": lon})[0]["c8"] == cells_of(lat, lon)[8]
