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


class CliCalls(list):
    """The CLI's API calls, as (path, params); ``methods`` holds (method, path) pairs."""

    def __init__(self) -> None:
        super().__init__()
        self.methods: list[tuple[str, str]] = []


@pytest.fixture
def cli_on_store(store, monkeypatch) -> CliCalls:
    """Run CLI commands in this process against the shared store instead of a live API."""
    from hotspots import cli

    calls = CliCalls()

    def local(config, path, params, run, timeout=60, method="GET"):
        calls.append((path, params))
        calls.methods.append((method, path))
        return run(store)

    monkeypatch.setattr(cli, "_api_or_local", local)
    return calls
