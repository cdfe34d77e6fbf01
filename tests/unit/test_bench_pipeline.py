"""bench/pipeline.py's freshness percentiles when some probes are never seen."""

from __future__ import annotations

import math

from bench.pipeline import _finite, _pct


def test_unseen_probes_count_as_never_visible_not_as_missing() -> None:
    seen = [0.5 + i / 100 for i in range(56)]
    waited = [*seen, *[math.inf] * 4]  # 4 of 60 probes not seen before the bench gave up
    assert _finite(_pct(waited, 50)) == seen[30]  # the middle of all 60, not of the 56 seen
    assert _finite(_pct(waited, 99)) is None  # not the p99 of the 56 seen
    assert _finite(_pct(seen, 99)) == seen[54]  # what dropping them would have reported
