"""hotspots.heap: survivors frozen, garbage cycles still freed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from hotspots.heap import Heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    """A garbage cycle only the cyclic collector can free; a weak reference to watch it."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test session keeps the default collector


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_what_survives_a_batch_is_frozen_and_its_garbage_cycles_are_freed() -> None:
    heap = Heap(clock=Clock())
    state = [[0] * 9 for _ in range(1000)]
    garbage = cycle()
    heap.settle()
    assert garbage() is None  # collected before the freeze, not kept for good
    assert gc.get_freeze_count() >= len(state)
    watched = {id(o) for o in gc.get_objects()}  # the collector's view: frozen ones are not in it
    assert not any(id(s) in watched for s in state)


def test_a_frozen_cycle_is_freed_by_the_periodic_full_collection() -> None:
    clock = Clock()
    heap = Heap(full_every=600, clock=clock)
    a = Node()
    a.other = Node()
    a.other.other = a
    kept = weakref.ref(a)
    heap.settle()  # frozen while still referenced
    del a
    clock.now = 599
    heap.settle()
    assert kept() is not None and heap.full_collections == 0  # out of the collector's sight
    clock.now = 600
    heap.settle()
    assert kept() is None and heap.full_collections == 1
    assert gc.get_freeze_count() > 0  # and what lives is frozen again
