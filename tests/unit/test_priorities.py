"""Warrant priorities: exact additive scores, ranks, the penalty, reasons, CSV and the HTML pack.

Store-backed tests write years 2071, 2074 and (the synthetic year shifted by +50 years)
2072-2073 to the shared store (see conftest.py). Rendered packs go to tests/artifacts/.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from hotspots import cli
from hotspots.contract import (
    Arrest,
    CuckooingAddress,
    RecordedCrime,
    Safeguarding,
    Seizure,
    Warrant,
)
from hotspots.geo import cell_of, to_str
from producers.synthetic import synthetic_year
from sinks.priorities import COLUMNS, TERMS, WEIGHTS, last_complete_week, priorities, ratio_trend
from sinks.priorities_pack import priorities_csv, priorities_html
from tests.unit.test_store import worker_output, write

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
P, Q, R, S = (51.5761, 0.4886), (51.5459, 0.7077), (51.7727, 0.1023), (51.7356, 0.4685)
AS_OF = date(2071, 6, 30)
NAMES = dict(TERMS)


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def ago(days: int, as_of: date = AS_OF) -> datetime:
    return at(as_of - timedelta(days=days))


def common(n: str, when: datetime, where) -> dict:
    return {"event_id": f"pr-{when:%Y}-{n}", "occurred_at": when, "lat": where[0], "lon": where[1],
            "force": "essex"}


def check_rows(rows: list[dict]) -> None:
    """The invariants every ranking keeps."""
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    for r in rows:
        parts = [r[t] for t, _ in TERMS]
        assert sum(round(p * 100) for p in parts) == round(r["score"] * 100)  # exact, in 0.01s
        assert round(sum(parts), 2) == r["score"]
        assert all(p == round(p, 2) for p in parts)
        top = sorted((t for t, _ in TERMS if t != "warrant_penalty" and r[t] > 0),
                     key=lambda t: -r[t])[:2]
        for t in top:
            assert NAMES[t] in r["reason"].lower()
        assert list(r) == list(COLUMNS)


@pytest.fixture(scope="module")
def crafted(store, sink_settings):
    events = [
        RecordedCrime(**common("c1", ago(10), P), crime_type="Robbery", time_precision="day"),
        RecordedCrime(**common("c2", ago(10), P), crime_type="Robbery", time_precision="day"),
        RecordedCrime(**common("c3", ago(5), P), crime_type="Violence and sexual offences"),
        *(Arrest(**common(f"a{i}", ago(9), P)) for i in range(2)),
        RecordedCrime(**common("m1", at(date(2071, 6, 1)), S), crime_type="Burglary",
                      time_precision="month"),
        RecordedCrime(**common("m2", at(date(2071, 4, 1)), Q), crime_type="Robbery",
                      time_precision="month"),  # not the last complete month: not counted
        Safeguarding(**common("g1", ago(20), Q), people=3, category="cuckooing"),
        CuckooingAddress(**common("k1", ago(60), Q)),
        *(Arrest(**common(f"r{i}", ago(41), R)) for i in range(5)),
        Warrant(**common("w1", ago(10), R), executed=True, outcome="nothing_found"),
        Seizure(**common("s1", ago(3), S), drugs_grams=2.0),
        Arrest(**common("late", ago(-1), P)),  # after as_of: never counted
    ]
    write(store, sink_settings, *worker_output(events))
    return {k: to_str(cell_of(*p)) for k, p in zip("PQRS", (P, Q, R, S), strict=True)}


def test_scores_add_up_and_rank(store, crafted):
    rows = priorities(store, AS_OF, limit=100, trend=ratio_trend)
    check_rows(rows)
    by = {r["cell"]: r for r in rows}
    p, q, r, s = (by[crafted[k]] for k in "PQRS")
    assert rows[0]["cell"] == crafted["P"]
    assert p["harm_days"] == 2 * 1460 + 252 and p["harm"] == WEIGHTS.harm
    assert s["harm_days"] == 365 and q["harm_days"] == 0
    assert p["arrests_seizures"] == 2 and r["arrests_seizures"] == 5 and r["enforcement"] == 15.0
    assert q["vulnerability"] == WEIGHTS.vulnerability and q["cuckooing_flagged"]
    assert "cuckooing flagged" in q["reason"]
    assert r["warrant_penalty"] == -WEIGHTS.warrant_penalty / 2 and r["warrants_executed"] == 1
    assert "warrant(s) executed" in r["reason"]
    assert p["reason"].startswith("Recent crime harm (3,172 harm-days) and near-repeat risk")
    assert p["near_repeat"] == WEIGHTS.near_repeat
    # The near-repeat term reaches the k=1 ring of a cell with recent incidents.
    ring = [row for row in rows if row["near_repeat"] > 0 and row["cell"] not in crafted.values()]
    assert len(ring) >= 6
    assert [r["rank"] for r in priorities(store, AS_OF, limit=2, trend=ratio_trend)] == [1, 2]


def test_penalty_lowers_rank(store, sink_settings):
    as_of = date(2074, 6, 30)
    x, y = (51.8959, 0.8919), (51.4755, 0.3271)
    events = [*(Arrest(**common(f"x{i}", ago(10, as_of), x)) for i in range(3)),
              *(Arrest(**common(f"y{i}", ago(10, as_of), y)) for i in range(4))]
    write(store, sink_settings, *worker_output(events))
    cx, cy = to_str(cell_of(*x)), to_str(cell_of(*y))

    def order() -> list[str]:
        rows = priorities(store, as_of, limit=100, trend=ratio_trend)
        check_rows(rows)
        return [r["cell"] for r in rows if r["cell"] in (cx, cy)]

    assert order() == [cy, cx]
    warrant = Warrant(**common("yw", ago(5, as_of), y), executed=True, outcome="drugs_found")
    write(store, sink_settings, *worker_output([warrant]))
    assert order() == [cx, cy]


def test_trend_ratio(store, crafted):
    trends = ratio_trend(store, AS_OF)
    assert last_complete_week(AS_OF) == date(2071, 6, 22)  # AS_OF is a Tuesday
    value, label = trends[cell_of(*R)]  # 5 arrests 41 days back: in the previous 4 weeks
    assert value < 0 and label == "0 v 5 events"
    value, label = trends[cell_of(*P)]
    assert value == pytest.approx(min(1.0, math.log2(6) / 2))


class Checker(HTMLParser):
    """Well-formedness: every non-void element closes, in order."""

    VOID = frozenset({"meta", "br", "img", "link", "input", "hr", "col", "area", "base", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.counts: dict[str, int] = {}
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.counts[tag] = self.counts.get(tag, 0) + 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.counts[tag] = self.counts.get(tag, 0) + 1

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with {self.stack[-3:]}")
        else:
            self.stack.pop()


def check_html(text: str, rows: list[dict]) -> None:
    checker = Checker()
    checker.feed(text)
    checker.close()
    assert not checker.errors and not checker.stack
    assert "http://" not in text and "https://" not in text and "<script" not in text.lower()
    sections = text.split('<section class="cell">')[1:]
    assert len(sections) == len(rows)
    for section, row in zip(sections, rows, strict=True):
        assert "<svg" in section and f"#{row['rank']} " in section
    assert text.count("<svg") >= len(rows) + bool(rows)  # and the overview
    assert "@media print" in text


def test_csv_and_html(store, crafted):
    rows = priorities(store, AS_OF, limit=10, trend=ratio_trend)
    text = priorities_csv(rows)
    lines = text.splitlines()
    assert lines[0] == ",".join((*COLUMNS, "tier")) and len(lines) == len(rows) + 1
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert [(r["cell"], float(r["score"]), r["reason"]) for r in parsed] == [
        (r["cell"], r["score"], r["reason"]) for r in rows]
    assert priorities_csv([]).strip() == ",".join((*COLUMNS, "tier"))
    assert {r["tier"] for r in parsed} <= {"analyst"}

    page = priorities_html(rows, AS_OF)
    check_html(page, rows)
    assert '<meta name="hotspots-tier" content="analyst">' in page and "Tier: analyst" in page
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "priorities-example.html").write_text(page, encoding="utf-8")

    hostile = [{**rows[0], "reason": "<script>alert('x')</script> & co"}]
    page = priorities_html(hostile, "<b>today</b>")
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;today" in page
    check_html(priorities_html([], AS_OF), [])


def test_api_and_cli(store, crafted, tmp_path, cli_on_store, api_client):
    client = api_client()
    params = {"as_of": AS_OF.isoformat(), "limit": 5}
    got = client.get("/v1/priorities", params=params)
    assert got.status_code == 200 and len(got.json()) == 5 and got.json()[0]["rank"] == 1
    got = client.get("/v1/priorities.csv", params=params)
    assert got.status_code == 200 and got.text.startswith("cell,rank,score,")
    assert got.headers["content-type"].startswith("text/csv")
    got = client.get("/v1/priorities.html", params=params)
    assert got.status_code == 200 and got.text.count('<section class="cell">') == 5
    assert client.get("/v1/priorities", params={"limit": 0}).status_code == 422

    out = tmp_path / "pack.html"
    run = CliRunner().invoke(cli.main, ["priorities", "--as-of", AS_OF.isoformat(), "--limit", "3",
                                        "--format", "html", "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert out.read_text().count('<section class="cell">') == 3
    run = CliRunner().invoke(cli.main, ["priorities", "--as-of", AS_OF.isoformat(), "--limit", "3",
                                        "--format", "csv"])
    assert run.exit_code == 0 and len(run.output.splitlines()) == 4


def test_synthetic_year(store, sink_settings):
    """The calibrated synthetic year, moved 50 years on (Dec 2072 - Nov 2073), default trend."""
    events = [e.model_copy(update={"occurred_at": e.occurred_at.replace(year=e.occurred_at.year + 50),
                                   "event_id": f"p50-{e.event_id}"}) for e in synthetic_year(2023)]
    assert min(e.occurred_at for e in events).year == 2072
    assert max(e.occurred_at for e in events).year == 2073
    write(store, sink_settings, *worker_output(events))
    as_of = date(2073, 11, 30)
    rows = priorities(store, as_of, limit=50)
    assert len(rows) == 50
    check_rows(rows)
    assert any(r["enforcement"] > 0 for r in rows) and any(r["vulnerability"] > 0 for r in rows)
    assert all(r["harm"] == 0 for r in rows)  # the synthetic year has no recorded crime
    check_html(page := priorities_html(rows, as_of), rows)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "priorities-synthetic.html").write_text(page, encoding="utf-8")
    (ARTIFACTS / "priorities-synthetic.csv").write_text(priorities_csv(rows), encoding="utf-8")
