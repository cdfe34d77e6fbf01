"""The live map in a real headless Chromium against the session stack (events of year 2013).

web/e2e/map.mjs drives Debian's /usr/bin/chromium with playwright-core (from web/node_modules,
`make web-deps`); no browser is downloaded. On CI (CI=true) a missing browser, Node or
node_modules fails the test; elsewhere it is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import h3
import pytest

from hotspots.contract import Arrest
from hotspots.settings import ProducerSettings
from producers.publisher import EventPublisher
from tests.integration.conftest import run_cli

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
SCRIPT = WEB / "e2e" / "map.mjs"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

WEEK = "2013-06-03"  # a Monday; this test owns 2013
# (lat, lon) -> arrests that week; distinct resolution-8 cells around Chelmsford.
PLACES = {(51.7356, 0.4685): 3, (51.7456, 0.4785): 2, (51.7256, 0.4585): 1}
# New cells, each produced at one step of web/e2e/map.mjs: after the first load but before the
# stream first opened; while it is open; while the page has lost it.
EARLY = (51.7256, 0.4785)
EXTRA = (51.7356, 0.4885)
GAP = (51.7456, 0.4985)
JUSTIFICATION = "integration test of the live map"


def _missing() -> list[str]:
    missing = []
    if not Path(CHROMIUM).is_file():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if shutil.which("node") is None:
        missing.append("node")
    if not (WEB / "node_modules" / "playwright-core").is_dir():
        missing.append("web/node_modules (make web-deps)")
    return missing


def _arrests(places: dict[tuple[float, float], int], tag: str) -> list[Arrest]:
    return [Arrest(event_id=f"map-2013-{tag}-{lat}-{lon}-{n}",
                   occurred_at=datetime(2013, 6, 3 + n % 5, 10 + n, tzinfo=UTC),
                   lat=lat, lon=lon, force="essex", charged=n % 2 == 0)
            for (lat, lon), count in places.items() for n in range(count)]


def _publish(config, events: list[Arrest]) -> None:
    settings = ProducerSettings(bootstrap=config.bootstrap, topic_prefix=config.topic_prefix)
    with EventPublisher(settings, source="test:map") as publisher:
        assert publisher.send_all(events) == len(events)
    run_cli(config, "wait", "--timeout", "180")


def _read(proc: subprocess.Popen, stderr_path: Path) -> dict:
    line = proc.stdout.readline() if proc.stdout else ""
    if not line:
        proc.wait(timeout=30)
        pytest.fail(f"map.mjs ended early (rc {proc.returncode}):\n{stderr_path.read_text()[-4000:]}")
    msg = json.loads(line)
    assert msg["step"] != "error", msg
    return msg


def test_live_map_draws_updates_and_drills_down(live_stack) -> None:
    missing = _missing()
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the browser test needs {', '.join(missing)}")
        pytest.skip(f"needs {', '.join(missing)}")

    cells = {h3.latlng_to_cell(lat, lon, 8): n for (lat, lon), n in PLACES.items()}
    extras = {h3.latlng_to_cell(*place, 8): 1 for place in (EARLY, EXTRA, GAP)}
    assert len(cells) == len(PLACES) and len(extras) == 3 and not set(extras) & set(cells)
    _publish(live_stack, _arrests(PLACES, "a"))
    # The calibrated synthetic year too (idempotent if another test produced it already).
    run_cli(live_stack, "produce", "synthetic", "--seed", "2023")
    run_cli(live_stack, "wait", "--timeout", "180")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "map.png"
    screenshot.unlink(missing_ok=True)
    token = (Path(live_stack.data_dir) / "run" / "operator-token").read_text().strip()
    plan = {"url": f"http://127.0.0.1:{live_stack.api_port}", "token": token,
            "justification": JUSTIFICATION, "start": WEEK, "cells": cells,
            "extras": extras, "screenshot": str(screenshot),
            "synthetic": "2023-07-31"}
    stderr_path = ARTIFACTS / "map-e2e.stderr.txt"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(["node", str(SCRIPT), json.dumps(plan)], cwd=WEB, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                env={**os.environ, "CHROMIUM": CHROMIUM})
        try:
            loaded = _read(proc, stderr_path)
            assert loaded["step"] == "loaded" and loaded["hexcount"] == len(cells)
            # Signed out the data routes refused; the sign-in cookie is out of scripts' reach.
            auth = loaded["auth"]
            assert (auth["before"], auth["after"], auth["cookieVisible"]) == (401, 200, False), auth
            assert auth["signedIn"].startswith("operator-"), auth
            assert loaded["canvas"] and loaded["canvas"]["width"] > 300, loaded
            # The default period is the latest week with data (maybe another test's year).
            assert loaded["defaultStart"] >= WEEK

            # The page must notice each by itself: see map.mjs for how it can hear of each.
            for place, tag, step in ((EARLY, "e", "live"), (EXTRA, "b", "offline"), (GAP, "c", "done")):
                _publish(live_stack, _arrests({place: 1}, tag))
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
                done = _read(proc, stderr_path)
                assert done["step"] == step, done
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    assert done["step"] == "done", done
    assert done["notReloaded"] and done["updates"] >= 1, done  # new hexagon arrived over SSE
    for cell, seen in done["panel"].items():
        assert seen["shown"] == seen["expected"], (cell, seen)
        assert seen["kinds"] == [f"arrest{seen['expected']}"], (cell, seen)
        assert seen["events"] == seen["expected"], (cell, seen)
    assert done["picked"] == {c: c for c in done["panel"]}, done["picked"]  # drawn where they belong
    busiest = max(cells, key=lambda c: cells[c])
    clicked = done["clicked"]
    assert {k: clicked[k] for k in ("cell", "shown")} == {"cell": busiest, "shown": cells[busiest]}
    assert clicked["trend"].startswith("Trend: "), clicked  # a class, or "not classified yet"

    assert done["top"][0] == busiest and sorted(done["top"]) == sorted([*cells, *extras])
    gistar = done["gistar"]  # the study area holds at least this week's cells and their rings
    assert gistar["hexcount"] >= len(cells) + 1 and gistar["error"] == "", gistar
    assert "Gi*" in gistar["legend"] and set(gistar["bins"]) <= {-3, -2, -1, 0, 1, 2, 3}, gistar
    harm, gap = done["layers"]["harm"], done["layers"]["gap"]
    assert "Harm (custody days" in harm["legend"] and "month" in harm["legend"], harm
    assert "under-enforced" in gap["legend"] and "Positive" in gap["legend"], gap
    for layer in (harm, gap):
        assert layer["error"] == "", layer
        assert layer["trend"].startswith("Trend: "), layer
    # police.uk crime is month precision: this week may hold no recorded crime at all.
    assert harm["hexcount"] > 0 or harm["message"].startswith("No recorded crime"), harm
    # The week's arrests are enforcement, so the gap layer holds at least their cells.
    assert gap["hexcount"] >= len(cells) + 1 and gap["message"] == "", gap
    assert done["errors"] == [], done["errors"]
    assert done["external"] == [], done["external"]  # nothing fetched from the internet
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000
    # Every view the page made is in the audit log, as the operator, with the stated reason.
    audit = json.loads(run_cli(live_stack, "audit", "list", "--who", auth["signedIn"],
                               "--limit", "10000", "--format", "json"))
    seen = {(e["action"], e["via"], e["justification"]) for e in audit if e["status"] == 200}
    for action in ("POST /v1/session", "GET /v1/periods", "GET /v1/cells", "GET /v1/gistar",
                   "GET /v1/events"):
        assert (action, "session", JUSTIFICATION) in seen, (action, sorted(seen)[:20])
    # Week of 2023-07-31 in the synthetic year: arrests in many Essex cells.
    assert done["synthetic"]["hexcount"] >= 5, done["synthetic"]
