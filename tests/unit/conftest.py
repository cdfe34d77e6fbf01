"""Shared fixtures. chDB opens one store path per process, so every store test shares one."""

from __future__ import annotations

from pathlib import Path

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


@pytest.fixture(scope="session")
def tokens(tmp_path_factory) -> dict[str, str]:
    """A tokens file of its own with one token per scope: scope -> secret (``file``: its path)."""
    from hotspots.tokens import SCOPES, TokenFile

    path = tmp_path_factory.mktemp("tokens") / "api-tokens.json"
    file = TokenFile(path)
    return {"file": str(path), **{s: file.create(f"unit-{s}", s, "conftest") for s in SCOPES}}


@pytest.fixture(scope="session")
def audit_log(store):
    """The audit log every test API writes to (one writer; closed, so flushed, at the end)."""
    from sinks.audit import AuditLog

    log = AuditLog(store, SinkSettings().audit_retention_days)
    yield log
    log.close()


@pytest.fixture(scope="session")
def api_client(store, tokens, audit_log):
    """``api_client(health=..., token="admin", **build_api_kwargs)``: a TestClient of the real API
    on the shared store that signs every request with a token of that scope and a justification."""
    import warnings

    from hotspots.tokens import TokenFile
    from sinks.api import build_api
    from sinks.auth import Access

    with warnings.catch_warnings():  # starlette's notice about httpx, at import
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    access = Access(TokenFile(Path(tokens["file"])))

    def make(health=lambda: {"ok": True}, token: str = "admin", **kwargs):
        headers = {"Authorization": f"Bearer {tokens[token]}", "X-Justification": "unit tests"}
        kwargs.setdefault("audit", audit_log)
        return TestClient(build_api(store, health, access=access, **kwargs), headers=headers)

    return make


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
