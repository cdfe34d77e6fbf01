"""The stack's own commands: status, an idempotent up, and clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hotspots import stack
from tests.integration.conftest import cli_json

pytestmark = pytest.mark.integration


def test_status_reports_every_service_healthy(live_stack) -> None:
    rows = cli_json(live_stack, "status")
    assert {r["service"]: r["healthy"] for r in rows} == {
        "broker": True, "worker": True, "spikes": True, "sink": True}


def test_up_again_starts_nothing_new(live_stack) -> None:
    before = {name: info["pid"] for name, info in stack.status(live_stack).items()}
    messages: list[str] = []
    stack.up(live_stack, echo=messages.append)
    assert messages == [f"{name}: already running" for name in stack.SERVICES]
    assert {name: info["pid"] for name, info in stack.status(live_stack).items()} == before


def test_bad_query_arguments_get_a_clear_error(live_stack) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hotspots.cli", "query", "top", "--week", "2023-W60", "--kind", "arrest",
         "--data-dir", live_stack.data_dir], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "not an ISO week" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "hotspots.cli", "query", "top", "--week", "2023-W10", "--kind", "burglary",
         "--data-dir", live_stack.data_dir], capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "kind 'burglary' unknown" in proc.stderr
