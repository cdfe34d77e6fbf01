"""Prometheus's config and rules are valid, and the rules' own unit tests pass (promtool).

promtool comes from Debian's prometheus package (.ci/run installs it). Without it the test
is skipped on a developer machine and fails in CI (the CI variable is set).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PROMETHEUS = Path(__file__).resolve().parents[2] / "dashboards" / "prometheus"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: install Debian's prometheus package (.ci/run does)")
        pytest.skip("promtool is missing (Debian's prometheus package); `make check-rules` needs it")
    return path


@pytest.mark.parametrize("args", [
    ["check", "config", "prometheus.yml"],
    ["check", "rules", "rules.yml"],
    ["test", "rules", "rules.test.yml"],
], ids=" ".join)
def test_promtool(args: list[str]) -> None:
    proc = subprocess.run([promtool(), *args], cwd=PROMETHEUS, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, f"promtool {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
