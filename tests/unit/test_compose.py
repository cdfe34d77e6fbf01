"""docker-compose.yml passes hotspots.compose_check; each kind of mistake fails with its message."""

from __future__ import annotations

import copy
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from hotspots.compose_check import check_text, environment, interpolate, main

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"

# Small and clean: each case below breaks one thing in it.
BASE: dict[str, Any] = {
    "services": {
        "db": {
            "image": "postgres:16.4",
            "ports": ["127.0.0.1:5432:5432"],
            "volumes": ["db-data:/var/lib/postgresql/data", "./init.sql:/init.sql:ro"],
            "healthcheck": {"test": ["CMD", "pg_isready"]},
        },
        "app": {
            "build": ".",
            "depends_on": {"db": {"condition": "service_healthy"}},
            "healthcheck": {"test": ["CMD", "true"]},
        },
    },
    "volumes": {"db-data": None},
}


def problems(edit: Callable[[dict[str, Any]], Any] | None = None,
             env: dict[str, str] | None = None) -> list[str]:
    doc = copy.deepcopy(BASE)
    if edit:
        edit(doc)
    return check_text(yaml.safe_dump(doc), env=env or {})


def db(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc["services"]["db"].update(fields)


def app(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc["services"]["app"].update(fields)


OUTLINES = "/etc/hotspots/boundaries/districts.geojson"


def test_the_deployment_file_passes():
    assert check_text(COMPOSE.read_text(), env={}) == []


def test_the_cli_passes_the_deployment_file(capsys):
    assert main([str(COMPOSE)]) == 0
    assert "OK" in capsys.readouterr().out


def test_the_base_snippet_passes():
    assert problems() == []


@pytest.mark.parametrize(("edit", "expected"), [
    (db(image="postgres"), "services.db: image 'postgres' is not pinned"),
    (db(image="postgres:latest"), "uses 'latest'"),
    (db(image="localhost:5000/postgres"), "is not pinned"),
    (db(ports=["0.0.0.0:5432:5432"]), "port '0.0.0.0:5432:5432' is published on every interface"),
    (db(ports=["5432:5432"]), "published on every interface"),
    (db(ports=[5432]), "published on every interface"),
    (db(ports=[{"target": 5432, "published": 5432}]), "published on every interface"),
    (lambda d: d["services"]["app"].pop("healthcheck"),
     "services.app: long-running service has no healthcheck"),
    (lambda d: d["services"]["app"].update(healthcheck={"disable": True}), "no healthcheck"),
    (db(volumes=["other:/data"]), "volume 'other' is not declared under the top-level volumes"),
    (db(volumes=["/var/lib/postgresql/data"]), "anonymous volume at /var/lib/postgresql/data"),
    (lambda d: d["services"]["app"].update(depends_on=["db"]), "depends_on is a list"),
    (lambda d: d["services"]["db"].pop("healthcheck"),
     "services.app: waits for db to be healthy but db has no healthcheck"),
    (lambda d: d["services"]["app"].update(depends_on={"cache": {"condition": "service_started"}}),
     "unknown service 'cache'"),
    # Schema violations, reported by path with the innermost reason.
    (db(ports=5), "schema: services.db.ports: 5 is not of type 'array'"),
    (db(imagee="postgres:16.4"), "schema: services.db: unknown key 'imagee'"),
    (lambda d: d["services"]["app"].update(depends_on={"db": {}}),
     "schema: services.app.depends_on.db: 'condition' is a required property"),
    # The product's settings.
    (app(environment={"HOTSPOTS_BOUNDARIES": OUTLINES}),
     f"services.app: HOTSPOTS_BOUNDARIES '{OUTLINES}' is not in a read-only mount of the service"),
    (app(environment={"HOTSPOTS_BOUNDARIES": OUTLINES},
         volumes=["./outlines:/etc/hotspots/boundaries"]), "not in a read-only mount"),
    (app(environment=[f"HOTSPOTS_BOUNDARIES={OUTLINES}"],
         volumes=["./outlines:/etc/hotspots/bound:ro"]), "not in a read-only mount"),
    (app(environment={"HOTSPOTS_WEBHOOK_URL": "https://alerts.example/hook"}),
     "services.app: HOTSPOTS_WEBHOOK_URL is set without HOTSPOTS_WEBHOOK_SECRET"),
    (app(environment={"HOTSPOTS_WEBHOOK_URL": "https://alerts.example/hook",
                      "HOTSPOTS_WEBHOOK_SECRET": "${HOOK_SECRET:-}"}), "without HOTSPOTS_WEBHOOK_SECRET"),
    (app(environment={"HOTSPOTS_WEBHOOK_URL": "alerts.example/hook"}), "is not an http(s) URL"),
    (app(environment={"HOTSPOTS_WEBHOOK_SECRET": "s3cret"}),
     "services.app: HOTSPOTS_WEBHOOK_SECRET is written in the file: take it from the environment"),
    (app(environment={"HOTSPOTS_WEBHOOK_SECRET": "${HOTSPOTS_WEBHOOK_SECRET:-s3cret}"}),
     "HOTSPOTS_WEBHOOK_SECRET is written in the file"),
    (app(environment=["HOTSPOTS_SASL_PASSWORD=pw-${SUFFIX}"]),
     "HOTSPOTS_SASL_PASSWORD is written in the file"),
])
def test_each_mistake_fails_with_its_message(edit, expected):
    found = problems(edit)
    assert any(expected in p for p in found), found


@pytest.mark.parametrize("edit", [
    db(image="postgres@sha256:" + "0" * 64),
    db(image="registry.local:5000/postgres:16.4"),
    db(ports=["127.0.0.1::5432", {"target": 5432, "published": 5432, "host_ip": "127.0.0.1"}]),
    db(volumes=[{"type": "volume", "source": "db-data", "target": "/data"},
                {"type": "bind", "source": "./x", "target": "/x"}]),
    # One-shot services need no healthcheck: on-demand tools and awaited init steps.
    lambda d: d["services"]["app"].pop("healthcheck") and d["services"]["app"].update(
        profiles=["tools"]),
    lambda d: d["services"].update(init={"image": "busybox:1.36"}) or d["services"]["app"].update(
        depends_on={"init": {"condition": "service_completed_successfully"}}),
    # Settings: outlines in a read-only mount (either form), empty means off, secrets from the
    # environment (substituted, here from nothing: empty).
    app(environment={"HOTSPOTS_BOUNDARIES": OUTLINES},
        volumes=["./outlines:/etc/hotspots/boundaries:ro"]),
    app(environment=[f"HOTSPOTS_BOUNDARIES={OUTLINES}"],
        volumes=[{"type": "bind", "source": "./outlines", "target": "/etc/hotspots/boundaries/",
                  "read_only": True}]),
    app(environment={"HOTSPOTS_BOUNDARIES": "", "HOTSPOTS_WEBHOOK_URL": "${HOOK_URL:-}"}),
    app(environment={"HOTSPOTS_WEBHOOK_SECRET": "${HOTSPOTS_WEBHOOK_SECRET:-}",
                     "HOTSPOTS_SASL_PASSWORD": "${KAFKA_SASL_PASSWORD}"}),
    app(environment=["HOTSPOTS_WEBHOOK_SECRET", "HOTSPOTS_SASL_PASSWORD=$KAFKA_SASL_PASSWORD"]),
])
def test_allowed_forms_pass(edit):
    assert problems(edit) == []


def test_variables_are_substituted_before_checking():
    edit = db(image="postgres:${PG_TAG:-latest}")
    assert any("uses 'latest'" in p for p in problems(edit))
    assert problems(edit, env={"PG_TAG": "16.4"}) == []
    assert problems(db(image="postgres:${PG_TAG:?set PG_TAG}")) == [
        "required variable PG_TAG is not set: set PG_TAG"]
    assert interpolate({"a": ["$$HOME", "${A}-${B-b}-${C:+c}", 1]}, {"A": "a", "C": "x"}) == {
        "a": ["$HOME", "a-b-c", 1]}


def test_duplicate_keys_are_refused():
    text = "services:\n  a:\n    image: x:1\n    image: x:2\n"
    assert check_text(text, env={}) == ["line 4: duplicate key 'image'"]


def test_the_cli_lists_problems_and_exits_1(tmp_path, capsys):
    bad = tmp_path / "compose.yml"
    bad.write_text("services:\n  a:\n    image: x\n    ports: ['80:80']\n")
    assert main([str(bad)]) == 1
    err = capsys.readouterr().err
    assert "3 problem(s)" in err
    assert "not pinned" in err and "every interface" in err and "no healthcheck" in err
    assert main([str(tmp_path / "missing.yml")]) == 2


def test_bind_mounted_files_exist():
    # Compose turns a missing bind-mount source into an empty directory instead of failing.
    # Substituted, so that a default such as ${HOTSPOTS_BOUNDARIES_DIR:-./deploy/...} is checked.
    doc = interpolate(yaml.safe_load(COMPOSE.read_text()), {})
    sources = [v.split(":")[0] for s in doc["services"].values() for v in s.get("volumes", [])
               if isinstance(v, str) and v.startswith("./")]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source


def test_grafana_reads_clickhouse_as_the_read_only_user():
    datasource = yaml.safe_load(
        (ROOT / "dashboards/provisioning/datasources/clickhouse.yml").read_text())["datasources"][0]
    assert datasource["uid"] == "hotspots-clickhouse"
    users = ET.parse(ROOT / "deploy/clickhouse/users.d/readonly.xml").getroot()
    user = users.find(f"users/{datasource['jsonData']['username']}")
    assert user is not None
    profile = users.find(f"profiles/{user.findtext('profile')}")
    assert profile is not None and profile.findtext("readonly") == "1"


def _deployment(env: dict[str, str]) -> dict[str, Any]:
    return interpolate(yaml.safe_load(COMPOSE.read_text()), env)


def test_the_deployment_file_with_outlines_and_a_webhook():
    env = {"HOTSPOTS_BOUNDARIES_FILE": "essex.geojson", "HOTSPOTS_WEBHOOK_URL": "https://x.example/h",
           "HOTSPOTS_WEBHOOK_SECRET": "s3cret", "HOTSPOTS_BOUNDARIES_DIR": "/srv/outlines"}
    assert check_text(COMPOSE.read_text(), env=env) == []
    services = _deployment(env)["services"]
    for name in ("worker", "sink"):  # district alerts in the worker, district rollups in the sink
        assert environment(services[name])["HOTSPOTS_BOUNDARIES"] == "/etc/hotspots/boundaries/essex.geojson"
        assert "/srv/outlines:/etc/hotspots/boundaries:ro" in services[name]["volumes"]
    sink = environment(services["sink"])
    assert sink["HOTSPOTS_WEBHOOK_URL"] == "https://x.example/h"
    assert sink["HOTSPOTS_WEBHOOK_SECRET"] == "s3cret"
    # A URL without its secret is caught here, not by a sink that will not start.
    del env["HOTSPOTS_WEBHOOK_SECRET"]
    assert check_text(COMPOSE.read_text(), env=env) == [
        "services.sink: HOTSPOTS_WEBHOOK_URL is set without HOTSPOTS_WEBHOOK_SECRET: every alert is "
        "signed, and the sink refuses to start without it"]


@pytest.mark.parametrize("name", ["worker", "sink"])
def test_the_deployment_defaults_mean_no_districts_and_no_webhook(monkeypatch, name):
    """What compose passes with none of the optional variables set, read by the settings."""
    from hotspots.settings import SinkSettings, WorkerSettings

    env = environment(_deployment({})["services"][name])
    for var in list(os.environ):
        if var.startswith("HOTSPOTS_"):
            monkeypatch.delenv(var)
    for var, value in env.items():
        if var.startswith("HOTSPOTS_") and value is not None:
            monkeypatch.setenv(var, value)
    assert env["HOTSPOTS_BOUNDARIES"] == ""
    settings = (WorkerSettings if name == "worker" else SinkSettings)()
    assert settings.boundaries is None
    if isinstance(settings, SinkSettings):
        assert env["HOTSPOTS_WEBHOOK_URL"] == env["HOTSPOTS_WEBHOOK_SECRET"] == ""
        assert settings.webhook_url is None and settings.webhook_secret is None
