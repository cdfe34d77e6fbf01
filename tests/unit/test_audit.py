"""The audit log: one entry per API query (granted or refused) and per CLI query on the store
opened directly, with who, when, what, why and the outcome; its retention is a real ClickHouse
TTL; queued entries are written on close. Queries look at 2091, which holds no data."""

from __future__ import annotations

import getpass
import json
import socket
import time
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from hotspots import cli
from hotspots.settings import SinkSettings
from hotspots.tokens import TokenFile
from sinks.audit import COLUMNS, AuditEntry, AuditLog, ensure_table, entries
from sinks.store import Store

SUMMARY = {"from": "2091-01-01", "to": "2091-01-31"}


def recent(api_client, **params) -> list[dict]:
    return api_client().get("/v1/audit", params={"limit": 10_000, **params}).json()


def test_api_queries_are_recorded_with_who_when_what_why(api_client, tokens) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    reader = api_client(token="read")
    reader.headers["X-Justification"] = "case 2091/1"
    reader.headers["X-Recipient"] = "Chelmsford CSP"
    assert reader.get("/v1/summary", params=SUMMARY).status_code == 200
    assert reader.get("/v1/summary", params={"from": "2091-13-01", "to": "x"}).status_code == 422
    assert reader.get("/v1/dlq", params={"samples": 1}).status_code == 403
    anonymous = api_client()
    anonymous.headers.clear()
    anonymous.headers["X-Justification"] = "no token"
    assert anonymous.get("/v1/summary", params=SUMMARY).status_code == 401
    got = {(e["action"], e["status"]): e for e in recent(api_client, since=before.isoformat())
           if e["justification"] in ("case 2091/1", "no token")}
    ok = got[("GET /v1/summary", 200)]
    assert {k: ok[k] for k in ("who", "scope", "via", "params", "recipient", "client")} == {
        "who": "unit-read", "scope": "read", "via": "token", "params": SUMMARY,
        "recipient": "Chelmsford CSP", "client": "testclient"}
    at = datetime.fromisoformat(ok["at"])
    assert at.tzinfo is not None and before <= at <= datetime.now(UTC)
    assert got[("GET /v1/summary", 422)]["who"] == "unit-read"
    assert got[("GET /v1/dlq", 403)]["params"] == {"samples": "1"}
    refused = got[("GET /v1/summary", 401)]
    assert (refused["who"], refused["via"]) == ("", "none")


def test_sign_in_is_recorded_but_never_its_token(api_client, tokens, store) -> None:
    browser = api_client()
    browser.headers.clear()
    browser.post("/v1/session", json={"token": tokens["read"], "justification": "map, op 2091"})
    browser.get("/v1/periods")
    browser.get("/v1/stream", params={"max_seconds": 0.1})  # a notice stream: not recorded
    browser.get("/health")
    mine = [e for e in recent(api_client) if e["justification"] == "map, op 2091"]
    assert {(e["action"], e["via"], e["who"]) for e in mine} == {
        ("POST /v1/session", "session", "unit-read"), ("GET /v1/periods", "session", "unit-read")}
    text = json.dumps(store.query("SELECT * FROM {db}.audit_log"), default=str)
    assert all(tokens[s] not in text for s in ("read", "admin", "partner", "public"))


def test_only_admins_read_the_log(api_client) -> None:
    assert api_client(token="read").get("/v1/audit").status_code == 403
    assert api_client().get("/v1/audit", params={"since": "2091-01-01T00:00:00"}).status_code == 400
    listed = recent(api_client, who="unit-read", limit=3)
    assert 0 < len(listed) <= 3 and {e["who"] for e in listed} == {"unit-read"}
    assert [e["at"] for e in listed] == sorted((e["at"] for e in listed), reverse=True)


@pytest.fixture
def own_store(sink_settings) -> Store:
    """A second database in the shared chDB path, so row counts and TTLs are this test's own."""
    handle = Store(SinkSettings(data_dir=sink_settings.data_dir, database="hotspots_audit_unit"))
    handle.command("DROP TABLE IF EXISTS hotspots_audit_unit.audit_log")
    yield handle
    handle.command("DROP DATABASE IF EXISTS hotspots_audit_unit")
    handle.close()


def entry(at: datetime, who: str = "t") -> AuditEntry:
    return AuditEntry(at, who, "read", "token", "GET /v1/x", "{}", "why", "", "", 200)


def test_retention_is_a_ttl_that_follows_the_setting(own_store) -> None:
    def ttl() -> str:
        return own_store.query("SELECT engine_full FROM system.tables WHERE database = "
                               "'hotspots_audit_unit' AND name = 'audit_log'")[0]["engine_full"]

    ensure_table(own_store, 2190)
    assert "TTL toDateTime(at) + toIntervalDay(2190)" in ttl()
    ensure_table(own_store, 5)  # the setting changed: the table follows at the next start
    assert "toIntervalDay(5)" in ttl()
    now = datetime.now(UTC)
    own_store.insert("audit_log", [astuple(entry(now - timedelta(days=10), "old")),
                                   astuple(entry(now, "new"))], COLUMNS)
    own_store.command("OPTIMIZE TABLE hotspots_audit_unit.audit_log FINAL")  # TTLs apply on merge
    assert [e["who"] for e in entries(own_store)] == ["new"]


def test_writes_are_queued_and_close_writes_them(own_store) -> None:
    log = AuditLog(own_store, 30, interval=3600)  # the writer would wait an hour
    now = datetime.now(UTC)
    for i in range(25):
        log.record(entry(now + timedelta(milliseconds=i), f"w{i}"))
    assert entries(own_store) == []  # the query did not wait for its audit row
    log.close()  # a normal shutdown
    assert len(entries(own_store, limit=100)) == 25
    log.record(entry(now, "late"))  # after close: written at once, not dropped
    assert entries(own_store, who="late")[0]["who"] == "late"
    with pytest.raises(ValueError, match="UTC offset"):
        entries(own_store, since=datetime(2091, 1, 1))  # noqa: DTZ001


def test_a_batch_is_written_without_waiting_for_the_interval(own_store) -> None:
    log = AuditLog(own_store, 30, interval=3600, batch=5)
    for i in range(5):
        log.record(entry(datetime.now(UTC), f"b{i}"))
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while len(entries(own_store)) < 5 and datetime.now(UTC) < deadline:
        time.sleep(0.05)
    assert len(entries(own_store)) == 5
    log.close()


# --- the CLI with the store opened directly ------------------------------------------------------

@pytest.fixture
def no_stack(sink_settings, monkeypatch) -> Path:
    """The CLI finds no API (a free port) and opens the shared store's path and database."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HOTSPOTS_API_PORT", str(port))
    monkeypatch.setenv("HOTSPOTS_DATABASE", sink_settings.database)
    monkeypatch.delenv("HOTSPOTS_API_TOKEN", raising=False)
    monkeypatch.delenv("HOTSPOTS_JUSTIFICATION", raising=False)
    return Path(sink_settings.data_dir)


def run(data_dir: Path, *args: str) -> tuple[int, str]:
    got = CliRunner().invoke(cli.main, [*args, "--data-dir", str(data_dir)])
    return got.exit_code, got.output


def test_a_local_cli_query_is_recorded(store, no_stack) -> None:
    code, out = run(no_stack, "query", "summary", "--from", "2091-02-01", "--to", "2091-02-28",
                    "--format", "json", "--justification", "local check", "--recipient", "DI Smith")
    assert code == 0, out
    code, out = run(no_stack, "query", "events", "--cell", "zz", "--period", "week", "--start",
                    "2091-02-05", "--justification", "local check")
    assert code == 2, out
    code, out = run(no_stack, "query", "summary", "--from", "2091-02-01", "--to", "2091-02-28")
    assert code == 2 and "--justification" in out  # refused before anything is opened
    found = [e for e in entries(store, who=f"local:{getpass.getuser()}", limit=1000)
             if e["justification"] == "local check"]
    by_action = {e["action"]: e for e in found}
    summary = by_action["cli query summary"]
    assert (summary["via"], summary["status"], summary["recipient"]) == ("cli", 200, "DI Smith")
    assert summary["params"] == {"from": "2091-02-01", "to": "2091-02-28"}
    assert by_action["cli query events"]["status"] == 400  # the bad cell: exit 2


def test_local_token_commands_write_the_file_and_the_log(store, no_stack) -> None:
    code, out = run(no_stack, "token", "create", "--name", "local-made", "--scope", "public",
                    "--justification", "set up a public feed")
    assert code == 0, out
    secret = out.splitlines()[0]
    tokens = TokenFile(SinkSettings(data_dir=no_stack).tokens_path)
    assert tokens.verify(secret).scope == "public"  # type: ignore[union-attr]
    code, out = run(no_stack, "token", "revoke", "local-made", "--justification", "feed ended")
    assert code == 0 and tokens.verify(secret) is None
    code, out = run(no_stack, "token", "revoke", "local-made", "--justification", "again")
    assert code == 2 and "no token named" in out
    code, out = run(no_stack, "audit", "list", "--who", f"local:{getpass.getuser()}",
                    "--format", "json", "--justification", "review")
    assert code == 0, out
    actions = [(e["action"], e["justification"], e["status"]) for e in json.loads(out)]
    assert ("cli token create", "set up a public feed", 200) in actions
    assert ("cli token revoke", "feed ended", 200) in actions
    assert ("cli token revoke", "again", 400) in actions


def test_audit_list_through_the_api_path(store, cli_on_store) -> None:
    got = CliRunner().invoke(cli.main, ["audit", "list", "--since", "2091-01-01", "--who", "x",
                                        "--limit", "5", "--format", "csv"])
    assert got.exit_code == 0, got.output
    (path, params), = cli_on_store
    assert path == "/v1/audit"
    assert params == {"limit": 5, "since": "2091-01-01T00:00:00+00:00", "who": "x"}
