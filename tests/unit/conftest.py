"""Shared fixtures. chDB opens one store path per process, so every store test shares one."""

from __future__ import annotations

import pytest

from hotspots.settings import SinkSettings
from sinks.store import Store


@pytest.fixture(scope="session")
def sink_settings(tmp_path_factory) -> SinkSettings:
    return SinkSettings(data_dir=tmp_path_factory.mktemp("hotspots"), clickhouse_url=None,
                        database="hotspots_unit")


@pytest.fixture(scope="session")
def store(sink_settings):
    """The real embedded engine. Tests share it: each writes its own weeks or years."""
    handle = Store(sink_settings)
    assert handle.embedded
    yield handle
    handle.close()
