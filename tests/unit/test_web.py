"""The live map's page, its built assets and its small APIs (/, /static, /v1/periods, /v1/stream,
/v1/cells/{cell}/class).

Store-backed tests write event year 2081 to the shared store (see conftest.py), and EHSA classes
of year 2085 for cells of their own.
"""

from __future__ import annotations

import asyncio
import json
import re
import warnings
from datetime import UTC, date, datetime

import h3
import pytest

from hotspots.contract import Arrest
from hotspots.geo import to_int
from sinks.queries import QueryError
from sinks.web import STATIC, cell_class, periods, stream_events
from tests.unit.test_store import worker_output, write

with warnings.catch_warnings():  # starlette's notice about httpx, at import
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def client(store, sink_settings, api_client) -> TestClient:
    events = [Arrest(event_id=f"web-2081-{i}", occurred_at=datetime(2081, 5, 6 + i, 12, tzinfo=UTC),
                     lat=51.7356, lon=0.4685, force="essex", charged=True) for i in range(3)]
    write(store, sink_settings, *worker_output(events))
    return api_client(lambda: {"ok": True, "batches": 7, "rows": 70}, token="read")


def test_the_bundle_is_built_and_committed() -> None:
    for name in ("index.html", "app.js", "style.css"):
        assert (STATIC / name).is_file(), f"sinks/static/{name} missing: run `make web`"
    assert (STATIC / "app.js").stat().st_size > 100_000  # deck.gl and h3-js are bundled in
    bundle = (STATIC / "app.js").read_text()
    for needed in ("/v1/stream", "/v1/periods", "/v1/gistar", "/v1/events", "/v1/harm", "/v1/gap",
                   "/class?kind=", "__hotspots"):
        assert needed in bundle


def test_the_page_loads_only_local_assets() -> None:
    page = (STATIC / "index.html").read_text()
    assert not re.search(r"https?://", page), "the page must work without the internet"
    refs = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sorted(refs) == ["/static/app.js", "/static/style.css", "data:,"]  # data:, no favicon


def test_page_and_assets_are_served(client) -> None:
    got = client.get("/")
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/html")
    assert 'id="hexcount"' in got.text
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert client.get("/static/style.css").status_code == 200


def test_periods_lists_starts_with_data_latest_first(client) -> None:
    got = client.get("/v1/periods", params={"period": "week"})
    assert got.status_code == 200
    body = got.json()
    assert "2081-05-05" in body["starts"] and "arrest" in body["kinds"]
    assert body["starts"] == sorted(body["starts"], reverse=True)
    month = client.get("/v1/periods", params={"period": "month", "kind": "arrest", "res": 6}).json()
    assert "2081-05-01" in month["starts"]
    assert client.get("/v1/periods", params={"period": "day"}).status_code == 400
    assert client.get("/v1/periods", params={"kind": "parking"}).status_code == 400


def test_periods_errors(store) -> None:
    with pytest.raises(QueryError, match="resolution"):
        periods(store, "week", res=9)


def test_stream_endpoint_says_hello_then_ends(client) -> None:
    got = client.get("/v1/stream", params={"max_seconds": 0.2})
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/event-stream")
    assert got.text.startswith("retry: 1000\nevent: hello\n")
    assert 'data: {"batches": 7, "rows": 70}' in got.text
    assert "event: update" not in got.text  # nothing flushed meanwhile


def test_stream_emits_update_when_the_sink_flushes() -> None:
    state = {"ok": True, "batches": 1, "rows": 10}

    async def collect() -> list[str]:
        out = []
        async for chunk in stream_events(lambda: dict(state), interval=0.01, max_seconds=5):
            out.append(chunk)
            if len(out) == 2:
                state["batches"], state["rows"] = 2, 25
            if chunk.startswith("event: update"):
                break
        return out

    chunks = asyncio.run(collect())
    assert chunks[0].startswith("retry: 1000\nevent: hello")
    assert chunks[-1] == 'event: update\ndata: {"batches": 2, "rows": 25}\n\n'


def test_boundaries_empty_when_unset(client, monkeypatch) -> None:
    monkeypatch.delenv("HOTSPOTS_BOUNDARIES", raising=False)
    got = client.get("/v1/boundaries.geojson")
    assert got.status_code == 200 and got.json() == {"type": "FeatureCollection", "features": []}


def test_boundaries_served_as_geojson_when_set(client, monkeypatch, tmp_path) -> None:
    square = [[[0.4, 51.7], [0.5, 51.7], [0.5, 51.8], [0.4, 51.8], [0.4, 51.7]]]
    path = tmp_path / "districts.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "Chelmsford"},
         "geometry": {"type": "Polygon", "coordinates": square}}]}))
    monkeypatch.setenv("HOTSPOTS_BOUNDARIES", str(path))
    got = client.get("/v1/boundaries.geojson")
    assert got.status_code == 200 and got.headers["content-type"] == "application/geo+json"
    features = got.json()["features"]
    assert [f["properties"]["district"] for f in features] == ["Chelmsford"]


# Cells of this test's own: mid-Atlantic, where no other test classifies anything.
NO_CLASS_CELL = h3.latlng_to_cell(20.5, -35.5, 8)
CLASS_CELL = h3.latlng_to_cell(20.6, -35.7, 8)


def test_cell_class_is_null_when_none_is_stored(client) -> None:
    got = client.get(f"/v1/cells/{NO_CLASS_CELL}/class", params={"kind": "arrest", "res": 8})
    assert got.status_code == 200
    assert got.json() == {"cell": NO_CLASS_CELL, "kind": "arrest", "res": 8, "class": None,
                          "week_start": None}


def test_cell_class_is_the_latest_stored(client, store) -> None:
    now = datetime.now(UTC)
    store.insert("ehsa_classes",
                 [(8, "arrest", to_int(CLASS_CELL), date(2085, 3, 5), "new_hot_spot", now),
                  (8, "arrest", to_int(CLASS_CELL), date(2085, 3, 12), "persistent_hot_spot", now),
                  (8, "seizure", to_int(CLASS_CELL), date(2085, 3, 19), "sporadic_cold_spot", now)],
                 ("res", "kind", "cell", "week_start", "class", "computed_at"))
    got = client.get(f"/v1/cells/{CLASS_CELL}/class", params={"kind": "arrest", "res": 8})
    assert got.status_code == 200
    assert got.json()["class"] == "persistent_hot_spot"
    assert got.json()["week_start"] == "2085-03-12"
    assert cell_class(store, CLASS_CELL, "seizure")["class"] == "sporadic_cold_spot"  # res from cell
    assert cell_class(store, CLASS_CELL, "warrant")["class"] is None


def test_cell_class_errors(client) -> None:
    assert client.get("/v1/cells/nonsense/class", params={"kind": "arrest"}).status_code == 400
    assert client.get(f"/v1/cells/{CLASS_CELL}/class", params={"kind": "parking"}).status_code == 400
    assert client.get(f"/v1/cells/{CLASS_CELL}/class",
                      params={"kind": "arrest", "res": 7}).status_code == 400
    coarse = h3.latlng_to_cell(20.6, -35.7, 5)
    assert client.get(f"/v1/cells/{coarse}/class", params={"kind": "arrest"}).status_code == 400
