"""Kafka security settings: validation, the kafka-python and faust mappings, the local broker's config."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import stat
from pathlib import Path

import faust
import pytest
from click.testing import CliRunner
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from faust.types.auth import AuthProtocol, SASLMechanism
from pydantic import ValidationError

from hotspots import broker
from hotspots.broker import security
from hotspots.kafka_security import faust_credentials, kafka_kwargs, security_kwargs, ssl_context
from hotspots.settings import BrokerSettings, ProducerSettings, WorkerSettings
from tests.tls import TlsFiles, make_tls

SECRET = 'p@ss "w0rd" \\ £'  # quote, backslash and non-ASCII: every escaping layer is exercised
SASL = {"sasl_username": "hotspots", "sasl_password": SECRET}


@pytest.fixture(autouse=True)
def _no_security_env(monkeypatch) -> None:
    for name in ("SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD", "SSL_CAFILE",
                 "SSL_CERTFILE", "SSL_KEYFILE", "SSL_CHECK_HOSTNAME", "BROKER_SSL_CERTFILE",
                 "BROKER_SSL_KEYFILE"):
        monkeypatch.delenv(f"HOTSPOTS_{name}", raising=False)


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


def test_plaintext_is_the_default_and_maps_to_no_credentials():
    settings = ProducerSettings(bootstrap="k:9092")
    assert kafka_kwargs(settings) == {"bootstrap_servers": "k:9092", "security_protocol": "PLAINTEXT"}
    assert kafka_kwargs(settings, "other:1")["bootstrap_servers"] == "other:1"
    assert faust_credentials(settings) is None


def test_sasl_plaintext_scram_maps_to_kafka_python_and_faust():
    settings = WorkerSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256", **SASL)
    assert security_kwargs(settings) == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "hotspots", "sasl_plain_password": SECRET}
    creds = faust_credentials(settings)
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.protocol, creds.mechanism) == (AuthProtocol.SASL_PLAINTEXT, SASLMechanism.SCRAM_SHA_256)
    # What faust hands to aiokafka's consumer and producer.
    assert credentials_to_aiokafka_auth(creds) == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "hotspots", "sasl_plain_password": SECRET, "ssl_context": None}


def test_sasl_ssl_scram_512_maps_to_kafka_python_and_faust(tls):
    settings = WorkerSettings(security_protocol="SASL_SSL", ssl_cafile=tls.ca, **SASL)
    assert settings.sasl_mechanism == "SCRAM-SHA-512"  # the default
    assert security_kwargs(settings) == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "hotspots", "sasl_plain_password": SECRET,
        "ssl_check_hostname": True, "ssl_cafile": str(tls.ca), "ssl_certfile": None, "ssl_keyfile": None}
    creds = faust_credentials(settings)
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.protocol, creds.mechanism) == (AuthProtocol.SASL_SSL, SASLMechanism.SCRAM_SHA_512)
    auth = credentials_to_aiokafka_auth(creds)
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_plain_password"] == SECRET
    ctx = auth["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "hotspots test CA"),),)]


def test_ssl_with_client_certificate_maps_to_ssl_credentials(tls):
    # The broker's certificate stands in for a client certificate: any signed pair will do.
    settings = ProducerSettings(security_protocol="SSL", ssl_cafile=tls.ca, ssl_certfile=tls.cert,
                                ssl_keyfile=tls.key, ssl_check_hostname=False)
    assert security_kwargs(settings) == {
        "security_protocol": "SSL", "ssl_check_hostname": False, "ssl_cafile": str(tls.ca),
        "ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)}
    creds = faust_credentials(settings)
    assert isinstance(creds, faust.SSLCredentials) and creds.protocol == AuthProtocol.SSL
    assert not creds.context.check_hostname and creds.context.verify_mode == ssl.CERT_REQUIRED
    assert not ssl_context(settings).check_hostname


def test_the_worker_app_gets_the_credentials(tmp_path):
    from streams.app import build_app

    settings = WorkerSettings(data_dir=tmp_path, security_protocol="SASL_PLAINTEXT", **SASL)
    creds = build_app(settings).conf.broker_credentials
    assert isinstance(creds, faust.SASLCredentials) and creds.username == "hotspots"
    assert build_app(WorkerSettings(data_dir=tmp_path)).conf.broker_credentials is None


@pytest.mark.parametrize(("fields", "message"), [
    ({"security_protocol": "SASL_SSL"}, "needs sasl_username and sasl_password"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u"}, "needs sasl_username and sasl_password"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u", "sasl_password": ""},
     "needs sasl_username and sasl_password"),
    ({"sasl_username": "u", "sasl_password": "p"}, "security_protocol is PLAINTEXT: use SASL_PLAINTEXT"),
    ({"security_protocol": "SSL", "sasl_password": "p"}, "security_protocol is SSL: use SASL_PLAINTEXT"),
    ({"ssl_cafile": "/etc/hostname"}, "ssl_cafile set but security_protocol is PLAINTEXT"),
    ({"security_protocol": "SSL", "ssl_cafile": "/no/such/ca.pem"},
     "ssl_cafile (HOTSPOTS_SSL_CAFILE): no such file /no/such/ca.pem"),
    ({"security_protocol": "SSL", "ssl_keyfile": "/etc/hostname"}, "ssl_keyfile is set without ssl_certfile"),
    ({"security_protocol": "SASL_TLS"}, "security_protocol"),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI", **SASL}, "sasl_mechanism"),
])
def test_bad_combinations_are_refused_with_a_clear_message(fields, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ProducerSettings(**fields)


def test_settings_come_from_the_environment_and_empty_means_unset(monkeypatch, tls):
    monkeypatch.setenv("HOTSPOTS_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("HOTSPOTS_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("HOTSPOTS_SASL_USERNAME", "hotspots")
    monkeypatch.setenv("HOTSPOTS_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("HOTSPOTS_SSL_CAFILE", str(tls.ca))
    monkeypatch.setenv("HOTSPOTS_SSL_CERTFILE", "")  # as compose passes an unset ${VAR:-}
    settings = ProducerSettings()
    assert (settings.security_protocol, settings.sasl_mechanism, settings.ssl_certfile) == (
        "SASL_SSL", "PLAIN", None)
    assert settings.sasl_password is not None and settings.sasl_password.get_secret_value() == SECRET


def test_the_password_is_never_shown(monkeypatch):
    from hotspots.cli import main

    monkeypatch.setenv("HOTSPOTS_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("HOTSPOTS_SASL_USERNAME", "hotspots")
    monkeypatch.setenv("HOTSPOTS_SASL_PASSWORD", "s3cret-value")
    settings = ProducerSettings()
    assert "s3cret-value" not in repr(settings) and "s3cret-value" not in str(settings)
    result = CliRunner().invoke(main, ["config", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "s3cret-value" not in result.output
    rows = {(r["stage"], r["env"]): r["value"] for r in json.loads(result.output)}
    assert rows[("producer", "HOTSPOTS_SASL_PASSWORD")] == "**********"
    assert rows[("worker", "HOTSPOTS_SECURITY_PROTOCOL")] == "SASL_PLAINTEXT"


# The local broker.

def _broker(tmp_path: Path, **fields) -> BrokerSettings:
    return BrokerSettings(data_dir=tmp_path, kafka_port=29092, controller_port=29093, **fields)


def _props(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_plaintext_broker_config_is_unchanged(tmp_path):
    path = broker.write_config(_broker(tmp_path))
    props = _props(path)
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["listener.security.protocol.map"] == "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert not [k for k in props if "sasl" in k or "ssl" in k or "inter.broker" in k]


def test_sasl_ssl_broker_config(tmp_path, tls):
    settings = _broker(tmp_path, security_protocol="SASL_SSL", ssl_cafile=tls.ca,
                       broker_ssl_certfile=tls.cert, broker_ssl_keyfile=tls.key, **SASL)
    path = broker.write_config(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the JAAS passwords
    props = _props(path)
    assert props["listeners"] == "SASL_SSL://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT"
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    assert props["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    # Quotes and backslashes escaped for JAAS, then backslashes and non-ASCII for .properties.
    assert props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"] == (
        'org.apache.kafka.common.security.scram.ScramLoginModule required username="hotspots" '
        'password="p@ss \\\\"w0rd\\\\" \\\\\\\\ \\u00a3";')
    assert "user_controller=" in props["listener.name.controller.plain.sasl.jaas.config"]
    keystore = Path(props["listener.name.sasl_ssl.ssl.keystore.location"])
    assert props["listener.name.sasl_ssl.ssl.keystore.type"] == "PEM"
    assert keystore.read_text() == tls.key.read_text() + "\n" + tls.cert.read_text()
    assert stat.S_IMODE(keystore.stat().st_mode) == 0o600
    assert props["listener.name.sasl_ssl.ssl.truststore.location"] == str(tls.ca)


def test_plain_mechanism_lists_the_user_in_jaas(tmp_path):
    settings = _broker(tmp_path, security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                       sasl_username="hotspots", sasl_password="pw")
    jaas = _props(broker.write_config(settings))["listener.name.sasl_plaintext.plain.sasl.jaas.config"]
    assert jaas.endswith('username="hotspots" password="pw" user_hotspots="pw";')
    assert security.scram_format_args(settings, tmp_path) == []


def test_tls_broker_needs_its_certificate(tmp_path, tls):
    settings = _broker(tmp_path, security_protocol="SSL", ssl_cafile=tls.ca)
    with pytest.raises(broker.BrokerError, match="HOTSPOTS_BROKER_SSL_CERTFILE"):
        broker.write_config(settings)


def test_broker_refuses_user_names_it_cannot_quote(tmp_path):
    settings = _broker(tmp_path, security_protocol="SASL_PLAINTEXT", sasl_username="a,b", sasl_password="p")
    with pytest.raises(broker.BrokerError, match="user names of letters"):
        broker.write_config(settings)


def test_scram_user_is_a_salted_password_checked_on_later_starts(tmp_path):
    settings = _broker(tmp_path, security_protocol="SASL_PLAINTEXT", **SASL)
    args = security.scram_format_args(settings, tmp_path)
    assert args[0] == "--add-scram" and SECRET not in args[1]
    inside = args[1].removeprefix("SCRAM-SHA-512=[").removesuffix("]")
    fields = dict(part.split("=", 1) for part in inside.split(","))
    assert fields["name"] == "hotspots" and fields["iterations"] == "4096"
    salted = hashlib.pbkdf2_hmac("sha512", SECRET.encode(), base64.b64decode(fields["salt"]), 4096)
    assert base64.b64decode(fields["saltedpassword"]) == salted
    record = tmp_path / "scram-user.json"
    assert SECRET not in record.read_text() and stat.S_IMODE(record.stat().st_mode) == 0o600

    security.check_formatted(settings, tmp_path)  # the same user and password: fine
    other = _broker(tmp_path, security_protocol="SASL_PLAINTEXT", sasl_username="hotspots",
                    sasl_password="other")
    with pytest.raises(security.SecurityConfigError, match="another password for 'hotspots'"):
        security.check_formatted(other, tmp_path)
    other = _broker(tmp_path, security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256", **SASL)
    with pytest.raises(security.SecurityConfigError,
                       match="SCRAM-SHA-512 user 'hotspots', not SCRAM-SHA-256"):
        security.check_formatted(other, tmp_path)
    record.unlink()
    with pytest.raises(security.SecurityConfigError, match="formatted with no SCRAM user"):
        security.check_formatted(settings, tmp_path)


def test_salted_password_is_rfc_5802_hi():
    """RFC 7677's SCRAM-SHA-256 example: the client proof from our SaltedPassword matches."""
    salted = security._salted("SCRAM-SHA-256", "pencil", base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth = f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r={nonce}"
    signature = hmac.new(hashlib.sha256(client_key).digest(), auth.encode(), hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    assert base64.b64encode(proof).decode() == "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="


def test_prop_value_escapes_for_java_properties():
    assert security.prop_value("a\\b £\u20ac") == "a\\\\b \\u00a3\\u20ac"
