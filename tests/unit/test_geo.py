"""Points to H3 cells, cell string/int conversion, and partition routing by resolution-6 cell."""

from __future__ import annotations

import random

import h3
import pytest
from kafka.partitioner.default import DefaultPartitioner, murmur2

from hotspots.geo import (
    FINEST_RES,
    PARTITION_RES,
    RESOLUTIONS,
    cell_of,
    cells_of,
    center,
    partition_key,
    partition_of,
    to_int,
    to_str,
)

CHELMSFORD = (51.7356, 0.4685)
# Computed once with h3 4.5.0: h3.latlng_to_cell(51.7356, 0.4685, res).
CHELMSFORD_CELLS = {8: "88194e0d37fffff", 7: "87194e0d3ffffff", 6: "86194e0d7ffffff"}


def essex_points(n: int, seed: int = 7) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [(rng.uniform(51.45, 52.09), rng.uniform(-0.02, 1.29)) for _ in range(n)]


class _Cluster:
    """The two ClusterMetadata methods DefaultPartitioner reads."""

    def __init__(self, topic: str, partitions: int) -> None:
        self.topic, self.partitions = topic, set(range(partitions))

    def topics(self) -> set[str]:
        return {self.topic}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


def test_known_chelmsford_cells():
    lat, lon = CHELMSFORD
    for res, expected in CHELMSFORD_CELLS.items():
        assert h3.latlng_to_cell(lat, lon, res) == expected
        assert to_str(cell_of(lat, lon, res)) == expected
    assert {res: to_str(c) for res, c in cells_of(lat, lon).items()} == CHELMSFORD_CELLS
    assert partition_key(lat, lon) == b"86194e0d7ffffff"
    assert partition_of(partition_key(lat, lon), 4) == 3


@pytest.mark.parametrize("res", [0, 6, 7, 8, 12])
def test_cell_of_resolution_and_type(res):
    for lat, lon in essex_points(20):
        cell = cell_of(lat, lon, res)
        assert type(cell) is int
        assert h3.get_resolution(to_str(cell)) == res
    assert h3.get_resolution(to_str(cell_of(*CHELMSFORD))) == FINEST_RES == 8


def test_cells_of_are_parents_of_the_finest_cell():
    assert RESOLUTIONS == (8, 7, 6)
    for lat, lon in essex_points(200):
        cells = cells_of(lat, lon)
        assert sorted(cells) == [6, 7, 8]
        assert all(type(c) is int for c in cells.values())
        assert cells[8] == cell_of(lat, lon, 8)
        finest = to_str(cells[8])
        assert to_str(cells[7]) == h3.cell_to_parent(finest, 7)
        assert to_str(cells[6]) == h3.cell_to_parent(finest, 6)
        assert h3.cell_to_parent(to_str(cells[7]), 6) == to_str(cells[6])


def test_string_int_round_trip():
    for lat, lon in essex_points(50):
        for res in RESOLUTIONS:
            cell = cell_of(lat, lon, res)
            text = to_str(cell)
            assert isinstance(text, str) and h3.is_valid_cell(text)
            assert to_int(text) == cell


@pytest.mark.parametrize("bad", ["", "not-a-cell", "88194e0d37ffff", "ffffffffffffffff", "0"])
def test_to_int_rejects_invalid_strings(bad):
    with pytest.raises(ValueError, match="not an H3 cell"):
        to_int(bad)


def test_center_is_inside_its_cell():
    cell = cell_of(*CHELMSFORD)
    lat, lon = center(cell)
    assert cell_of(lat, lon) == cell
    assert abs(lat - CHELMSFORD[0]) < 0.01 and abs(lon - CHELMSFORD[1]) < 0.01


def test_partition_key_is_the_res6_ancestor_cell_string():
    for lat, lon in essex_points(500):
        key = partition_key(lat, lon)
        assert isinstance(key, bytes)
        assert key.decode() == to_str(cells_of(lat, lon)[PARTITION_RES])
        assert key.decode() == h3.cell_to_parent(h3.latlng_to_cell(lat, lon, 8), PARTITION_RES)
        assert h3.get_resolution(key.decode()) == PARTITION_RES == 6


def test_partition_key_follows_the_finest_cell_not_the_point():
    # H3 children do not nest exactly: this point lies in res-6 cell 86194e0d7ffffff, but its
    # res-8 cell's res-6 ancestor (the cell its rollups are keyed by) is 86194e0dfffffff.
    lat, lon = 51.7314, 0.4845
    assert h3.latlng_to_cell(lat, lon, 6) == "86194e0d7ffffff"
    assert h3.cell_to_parent(h3.latlng_to_cell(lat, lon, 8), 6) == "86194e0dfffffff"
    assert partition_key(lat, lon) == b"86194e0dfffffff"


def test_every_rollup_cell_has_one_partition_key():
    # The worker's exactness rests on this: all events feeding one rollup cell share a key.
    rng = random.Random(11)
    keys_by_cell: dict[int, set[bytes]] = {}
    for _ in range(5000):  # dense enough that many res-8 cells get several points
        lat, lon = rng.uniform(51.70, 51.78), rng.uniform(0.42, 0.52)
        key = partition_key(lat, lon)
        for cell in cells_of(lat, lon).values():
            keys_by_cell.setdefault(cell, set()).add(key)
    assert sum(len(v) > 0 for v in keys_by_cell.values()) > 100
    assert all(len(keys) == 1 for keys in keys_by_cell.values())


@pytest.mark.parametrize("partitions", [1, 2, 3, 4, 12])
def test_partition_of_matches_kafka_python_default_partitioner(partitions):
    partitioner = DefaultPartitioner()
    cluster = _Cluster("events", partitions)
    keys = {partition_key(lat, lon) for lat, lon in essex_points(300)}
    assert len(keys) > 20
    seen = set()
    for key in keys:
        expected = partitioner.partition("events", key, key, None, None, cluster)
        assert partition_of(key, partitions) == expected
        assert expected == (murmur2(key) & 0x7FFFFFFF) % partitions
        seen.add(expected)
    assert seen == set(range(partitions))  # enough cells to reach every partition
