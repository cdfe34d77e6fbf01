"""Emerging hot spot classes kept current in the sink's process: as each week closes.

Every ``HOTSPOTS_EHSA_INTERVAL`` seconds the thread classifies the latest closed ISO week
(Europe/London) for every kind with events in it, at resolution 8, and publishes class
changes to the transitions topic. Re-running a week is harmless: ``update_classes`` stores
and publishes a transition once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hotspots.periods import local_date
from sinks.ehsa import update_classes
from sinks.store import Store

log = logging.getLogger(__name__)


def last_closed_week(now: datetime) -> date:
    """Monday of the last ISO week that has fully ended in Europe/London."""
    today = local_date(now)
    return today - timedelta(days=today.weekday() + 7)


def update_closed_week(store: Store, publish: Callable[[dict[str, Any]], None],
                       now: datetime | None = None, res: int = 8) -> int:
    week = last_closed_week(now or datetime.now(UTC))
    kinds = [r["kind"] for r in store.query(
        """SELECT DISTINCT kind FROM {db}.rollups FINAL
           WHERE period = 'week' AND res = %(res)s AND period_start = %(week)s AND count > 0""",
        {"res": res, "week": week})]
    changed = 0
    for kind in sorted(kinds):
        changed += len(update_classes(store, week, kind, res, publish=publish))
    return changed


class EhsaScheduler(threading.Thread):
    def __init__(self, store: Store, interval: float,
                 publisher: Callable[[], Callable[[dict[str, Any]], None]]) -> None:
        super().__init__(name="ehsa", daemon=True)
        self.store, self.interval, self.publisher = store, interval, publisher
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                changed = update_closed_week(self.store, self.publisher())
                log.info("emerging hot spots updated: %d class changes", changed)
            except Exception:  # a failed run is retried at the next interval
                log.exception("emerging hot spot update failed")
