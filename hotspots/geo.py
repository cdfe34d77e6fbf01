"""Points to H3 cells. Cells are integers inside the pipeline and strings only at the edges."""

from __future__ import annotations

import functools

from h3.api import basic_int as h3i
from h3.api import basic_str as h3s
from kafka.partitioner.default import murmur2

FINEST_RES = 8
RESOLUTIONS: tuple[int, ...] = (8, 7, 6)
# Events are partitioned by their resolution-6 cell, so every rollup key (a cell at
# 6, 7 or 8 and all its ancestors) is fed from exactly one Kafka partition.
PARTITION_RES = 6


def cell_of(lat: float, lon: float, res: int = FINEST_RES) -> int:
    return int(h3i.latlng_to_cell(lat, lon, res))


# police.uk coordinates are snap points, a few thousand per force, so the producer and the
# worker meet the same points again and again: remember the last many. (Read the result,
# never change it: it is shared.)
@functools.lru_cache(maxsize=1 << 15)  # ~12 MB
def cells_of(lat: float, lon: float) -> dict[int, int]:
    """The point's cell at each rollup resolution, {res: cell}."""
    finest = cell_of(lat, lon, FINEST_RES)
    return {res: finest if res == FINEST_RES else int(h3i.cell_to_parent(finest, res))
            for res in RESOLUTIONS}


@functools.lru_cache(maxsize=1 << 15)
def partition_key(lat: float, lon: float) -> bytes:
    """The res-6 *ancestor* of the point's finest cell, as the rollups key it (cells_of).

    Not the res-6 cell that contains the point: H3 children do not nest exactly inside
    their parent, and for ~6% of points the two differ, which would feed one rollup key
    from two partitions.
    """
    return to_str(cells_of(lat, lon)[PARTITION_RES]).encode()


@functools.lru_cache(maxsize=1 << 14)  # kafka-python's murmur2 is pure Python: ~5 µs a call
def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


# The spike agents name each event's res-6 and res-7 cells, of which a force has a few
# hundred: 0.09 µs a remembered name against 0.7 for h3's.
@functools.lru_cache(maxsize=1 << 16)
def to_str(cell: int) -> str:
    return str(h3i.int_to_str(cell))


def to_int(cell: str) -> int:
    if not h3s.is_valid_cell(cell):
        raise ValueError(f"not an H3 cell: {cell!r}")
    return int(h3s.str_to_int(cell))


def center(cell: int) -> tuple[float, float]:
    lat, lon = h3i.cell_to_latlng(cell)
    return float(lat), float(lon)
