"""One real stack (KRaft broker, Faust worker, sink+API on chDB) per test session.

A worker takes seconds to join its group, so tests share the stack and keep out of
each other's way by time window (each test owns its own year) and unique event ids.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hotspots import stack
from tests.shared_data import ESSEX_OUTLINES


@pytest.fixture(scope="session")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack.StackConfig]:
    data_dir = tmp_path_factory.mktemp("stack")
    # Real district outlines, from ../shared beside the repository, for the map and districts.
    if ESSEX_OUTLINES.exists():
        os.environ.setdefault("HOTSPOTS_BOUNDARIES", str(ESSEX_OUTLINES))
    # Every query states why (audit log); the CLI reads the sink's operator token by itself.
    os.environ.setdefault("HOTSPOTS_JUSTIFICATION", "hotspots integration tests")
    with stack.throwaway(data_dir, "it") as config:
        yield config


def run_cli(config: stack.StackConfig, *args: str, timeout: float = 300) -> str:
    """Run the real `hotspots` CLI against the session stack; return stdout, fail loudly."""
    proc = subprocess.run([sys.executable, "-m", "hotspots.cli", *args, "--data-dir", config.data_dir],
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"hotspots {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def cli_json(config: stack.StackConfig, *args: str) -> object:
    return json.loads(run_cli(config, *args, "--format", "json"))


def log_tail(config: stack.StackConfig, name: str) -> str:
    path = Path(config.data_dir) / "logs" / f"{name}.log"
    return path.read_text(errors="replace")[-4000:] if path.exists() else ""
