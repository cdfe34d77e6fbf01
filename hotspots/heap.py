"""Keep CPython's cyclic garbage collector off long-lived state.

The worker holds millions of small containers (rollup states, seen ids) and the sink a large
heap of its own. A full collection walks every one of them, and CPython runs one each time
the heap has grown by a quarter: during a replay that was 15-20% of the worker's CPU (bench:
10.1 s of collections in a 42 s, 200,000-event replay; 3.2 s with this, docs/bench.md).

So after each batch, what survived it is moved out of the collector's sight (``gc.freeze``),
once the batch's own young garbage has been collected. Collections then walk only what the
next batch makes. Frozen objects are never freed by the collector, so cyclic garbage that
was still referenced when frozen would stay: every ``full_every`` seconds everything is
unfrozen and one full collection runs.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

FULL_EVERY = 600.0  # seconds between full collections


class Heap:
    """Call :meth:`settle` after each batch, once its objects are either state or garbage."""

    def __init__(self, full_every: float = FULL_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.full_every = full_every
        self.clock = clock
        self.last_full = clock()
        self.full_collections = 0

    def settle(self) -> None:
        now = self.clock()
        if now - self.last_full >= self.full_every:
            gc.unfreeze()
            gc.collect()
            self.last_full = now
            self.full_collections += 1
        else:
            gc.collect(1)  # the batch's garbage cycles: young objects only, cheap
        gc.freeze()
