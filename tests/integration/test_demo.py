"""The demo's synthetic year through the real pipeline prints the seed's figures."""

from __future__ import annotations

import pytest

from tests.integration.conftest import cli_json, run_cli

pytestmark = pytest.mark.integration


def test_synthetic_year_summary_equals_the_seed_figures(live_stack) -> None:
    out = run_cli(live_stack, "produce", "synthetic", "--seed", "2023")
    assert "produced" in out
    run_cli(live_stack, "wait", "--timeout", "180")
    summary = cli_json(live_stack, "query", "summary", "--from", "2022-12-01", "--to", "2023-11-30")
    assert {k: summary[k] for k in (
        "arrests", "charged", "weapons_seized", "drugs_grams", "cash_gbp", "warrants_executed",
        "sentence_years")} == {
        "arrests": 440, "charged": 305, "weapons_seized": 83, "drugs_grams": 6000.0,
        "cash_gbp": 261000.0, "warrants_executed": 168, "sentence_years": 804.0}
    assert summary["charge_rate"] == pytest.approx(305 / 440, abs=1e-4)
    assert summary["safeguarded"] >= 400

    # Producing the same seed again re-sends the same event ids: nothing changes.
    run_cli(live_stack, "produce", "synthetic", "--seed", "2023")
    run_cli(live_stack, "wait", "--timeout", "180")
    again = cli_json(live_stack, "query", "summary", "--from", "2022-12-01", "--to", "2023-11-30")
    assert again == summary

    top = cli_json(live_stack, "query", "top", "--week", "2023-W27", "--kind", "arrest", "--limit", "5")
    assert 0 < len(top) <= 5
    assert [r["count"] for r in top] == sorted((r["count"] for r in top), reverse=True)
    assert all(r["cell"].startswith("88") for r in top)  # resolution-8 cells as H3 strings
