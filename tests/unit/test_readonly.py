"""The dashboards' read-only ClickHouse user (deploy/clickhouse/users.d/readonly.xml).

On the real engine: a second chDB session on the shared store's path, with the user's profile
settings (readonly=1 and its limits), runs every panel's and alert rule's query, and refuses
every write and every DDL. chDB has no users, so its grants are checked as configuration: the
panels never read what they revoke. The compose file and Grafana's provisioning must use that
user. With HOTSPOTS_TEST_CLICKHOUSE_URL set (an account that may create users), a temporary
user with the same profile settings and grants is tested on a real server too; with
HOTSPOTS_TEST_CLICKHOUSE_GRAFANA_URL, the deployed grafana_ro itself.
"""

from __future__ import annotations

import os
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
import pytest
import yaml

from dashboards import build
from dashboards.macros import expand
from hotspots.settings import SinkSettings

ROOT = Path(__file__).resolve().parents[2]
USERS = ET.parse(ROOT / "deploy" / "clickhouse" / "users.d" / "readonly.xml").getroot()
DATASOURCE = yaml.safe_load((ROOT / "dashboards/provisioning/datasources/clickhouse.yml")
                            .read_text())["datasources"][0]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
USER = DATASOURCE["jsonData"]["username"]
SPAN = (datetime(2093, 1, 1, tzinfo=UTC), datetime(2093, 12, 31, tzinfo=UTC))
WRITES = [
    "INSERT INTO {db}.rollups (period, res, kind, period_start, cell, seq) "
    "VALUES ('week', 8, 'arrest', '2093-01-05', 1, 1)",
    "INSERT INTO {db}.rollups SELECT * FROM {db}.rollups LIMIT 1",
    "CREATE TABLE {db}.ro_probe (a UInt8) ENGINE = Memory",
    "CREATE DATABASE ro_probe",
    "DROP TABLE {db}.rollups",
    "TRUNCATE TABLE {db}.dead_letters",
    "ALTER TABLE {db}.rollups DELETE WHERE 1",
    "ALTER TABLE {db}.audit_log MODIFY TTL toDateTime(at) + toIntervalDay(1)",
    "OPTIMIZE TABLE {db}.rollups FINAL",
    "SET readonly = 0",
]


def the_user() -> ET.Element:
    user = USERS.find(f"users/{USER}")
    assert user is not None, f"{USER} (the datasource's user) is not in readonly.xml"
    return user


def profile_settings() -> dict[str, str]:
    """The user's profile as session settings; readonly last (after it nothing may be set)."""
    profile = USERS.find(f"profiles/{the_user().findtext('profile')}")
    assert profile is not None
    settings = {e.tag: (e.text or "").strip() for e in profile if e.tag != "constraints"}
    assert settings.get("readonly") == "1"
    return {**{k: v for k, v in settings.items() if k != "readonly"}, "readonly": "1"}


def grants() -> list[str]:
    return [q.text or "" for q in the_user().findall("grants/query")]


def queries(database: str) -> list[tuple[str, str]]:
    """(title, SQL) of every panel and alert rule, macros expanded for ``database``."""
    found = [(p["title"], t["rawSql"]) for d in build.dashboards().values() for p in d["panels"]
             for t in p["targets"]]
    rules = yaml.safe_load(build.RULES.read_text())
    found += [(r["title"], q["model"]["rawSql"]) for g in rules["groups"] for r in g["rules"]
              for q in r["data"] if "rawSql" in q.get("model", {})]
    assert len(found) >= 10
    return [(title, expand(sql, *SPAN, variables={"kind": "arrest", "res": 8}, database=database))
            for title, sql in found]


@pytest.fixture(scope="module")
def read_only(store, sink_settings, audit_log) -> Iterator[Any]:
    """A session on the shared store's path with the user's profile (the audit_log fixture
    makes sure that table exists too)."""
    client = clickhouse_connect.get_client(interface="chdb", path=str(sink_settings.chdb_path),
                                           settings=profile_settings())
    yield client
    client.close()


def test_every_panel_query_runs_read_only(store, read_only) -> None:
    assert read_only.query("SELECT getSetting('readonly') AS r").result_rows == [(1,)]
    for title, sql in queries(store.database):
        read_only.query(sql)  # raises if the profile refuses it
        assert title


@pytest.mark.parametrize("statement", WRITES)
def test_writes_and_ddl_are_refused(store, read_only, statement) -> None:
    before = store.query("SELECT count() AS n FROM {db}.rollups")[0]["n"]
    with pytest.raises(Exception, match=r"readonly|READONLY"):
        read_only.command(statement.format(db=store.database))
    assert store.query("SELECT count() AS n FROM {db}.rollups")[0]["n"] == before


def test_inserts_through_the_client_are_refused(store, read_only) -> None:
    with pytest.raises(Exception, match="READONLY"):
        read_only.insert(f"{store.database}.dead_letters", [("ro", "s", "d", "r")],
                         column_names=["reason", "source", "detail", "raw"])


def test_grants_are_select_only_and_keep_it_from_sensitive_data() -> None:
    database = SinkSettings().database
    assert grants()[0] == f"GRANT SELECT ON {database}.*"
    assert all(re.match(r"(GRANT|REVOKE) SELECT\b", g) for g in grants())
    revoked = {g.split(" ON ")[1] for g in grants() if g.startswith("REVOKE")}
    assert revoked == {f"{database}.audit_log", f"{database}.events",
                       f"{database}.events_from_landing", f"{database}.dead_letters"}
    assert "REVOKE SELECT(raw) ON hotspots.dead_letters" in grants()
    for title, sql in queries(database):  # what is revoked, no panel needs
        assert "audit_log" not in sql and f"{database}.events" not in sql, title
        assert not re.search(r"\braw\b", sql), title


def test_compose_and_provisioning_use_the_read_only_user() -> None:
    services = COMPOSE["services"]
    clickhouse, grafana, sink = services["clickhouse"], services["grafana"], services["sink"]
    assert any(v.endswith("users.d/readonly.xml:ro") and v.startswith("./deploy/clickhouse/")
               for v in clickhouse["volumes"])
    assert DATASOURCE["jsonData"]["defaultDatabase"] == clickhouse["environment"]["CLICKHOUSE_DB"]
    assert clickhouse["environment"]["CLICKHOUSE_DB"] == SinkSettings().database
    admin = clickhouse["environment"]["CLICKHOUSE_USER"]
    assert admin != USER  # Grafana is not the sink's admin user
    assert DATASOURCE["secureJsonData"]["password"] == "$CLICKHOUSE_GRAFANA_PASSWORD"
    assert grafana["environment"]["CLICKHOUSE_GRAFANA_PASSWORD"] == \
        clickhouse["environment"]["CLICKHOUSE_GRAFANA_PASSWORD"]
    assert the_user().find("password").get("from_env") == "CLICKHOUSE_GRAFANA_PASSWORD"
    assert USER not in sink["environment"]["HOTSPOTS_CLICKHOUSE_URL"]
    assert "clickhouse" in grafana["depends_on"]


# --- a real server -------------------------------------------------------------------------------

SERVER = os.environ.get("HOTSPOTS_TEST_CLICKHOUSE_URL")
GRAFANA = os.environ.get("HOTSPOTS_TEST_CLICKHOUSE_GRAFANA_URL")


def _connect(url: str, **kwargs: Any) -> Any:
    parts = urlparse(url)
    return clickhouse_connect.get_client(host=parts.hostname, port=parts.port or 8123,
                                         username=kwargs.pop("username", parts.username or "default"),
                                         password=kwargs.pop("password", parts.password or ""),
                                         secure=parts.scheme == "https", **kwargs)


@pytest.mark.skipif(not SERVER, reason="set HOTSPOTS_TEST_CLICKHOUSE_URL to test a server")
def test_the_same_user_on_a_server(tmp_path) -> None:
    from sinks.audit import ensure_table
    from sinks.store import Store

    assert SERVER is not None
    database, user = f"hotspots_ro_{uuid.uuid4().hex[:8]}", f"ro_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    store = Store(SinkSettings(data_dir=tmp_path, clickhouse_url=SERVER, database=database))
    ensure_table(store, 30)
    profile = profile_settings()
    try:
        try:
            store.command(
                f"CREATE USER {user} IDENTIFIED WITH sha256_password BY '{password}' SETTINGS "
                + ", ".join(f"{k} = {v}" + (" CHANGEABLE_IN_READONLY" if k == "max_execution_time"
                                            else "") for k, v in profile.items()))
        except Exception as exc:  # an account without access management
            pytest.skip(f"cannot create a user on {urlparse(SERVER).hostname}: {exc}")
        for grant in grants():
            target = "FROM" if grant.startswith("REVOKE") else "TO"
            store.command(grant.replace("hotspots.", f"{database}.") + f" {target} {user}")
        client = _connect(SERVER, username=user, password=password)
        for title, sql in queries(database):
            client.query(sql)
            assert title
        for statement in WRITES[:-1]:
            with pytest.raises(Exception, match=r"READONLY|ACCESS_DENIED|readonly|Not enough"):
                client.command(statement.format(db=database))
        for denied in (f"SELECT count() FROM {database}.audit_log",
                       f"SELECT count() FROM {database}.events",
                       f"SELECT count() FROM {database}.events_from_landing",
                       f"SELECT raw FROM {database}.dead_letters"):
            with pytest.raises(Exception, match=r"ACCESS_DENIED|Not enough privileges"):
                client.query(denied)
        client.query(f"SELECT reason, count() FROM {database}.dead_letters GROUP BY reason")
    finally:
        store.command(f"DROP USER IF EXISTS {user}")
        store.command(f"DROP DATABASE IF EXISTS {database}")
        store.close()


@pytest.mark.skipif(not GRAFANA, reason="set HOTSPOTS_TEST_CLICKHOUSE_GRAFANA_URL "
                                        "(http://grafana_ro:PASSWORD@host:8123) to test it")
def test_the_deployed_grafana_user() -> None:
    assert GRAFANA is not None
    client = _connect(GRAFANA)
    assert client.query("SELECT getSetting('readonly') AS r").result_rows == [(1,)]
    for title, sql in queries("hotspots"):
        client.query(sql)
        assert title
    with pytest.raises(Exception, match=r"READONLY|readonly"):
        client.command(WRITES[0].format(db="hotspots"))
    with pytest.raises(Exception, match=r"ACCESS_DENIED|Not enough privileges"):
        client.query("SELECT count() FROM hotspots.audit_log")
