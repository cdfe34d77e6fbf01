"""Listener security of the local broker: its client listener follows ``security_protocol``.

- SASL_*: the client listener (also the inter-broker one) authenticates with
  ``sasl_mechanism``. SCRAM users live in the KRaft metadata, so the user is written when
  the storage is formatted, as a salted password (the password is never on a command line);
  PLAIN users live in the listener's JAAS configuration.
- SSL, SASL_SSL: the listener serves ``broker_ssl_certfile``/``broker_ssl_keyfile`` as a
  PEM keystore (no JKS needed).
- Any protocol but PLAINTEXT: the controller listener takes SASL/PLAIN with a secret made
  at each start and known to this broker only, so that no unauthenticated port is left
  (PLAIN, not SCRAM: SCRAM users are stored in the metadata this listener serves).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
from pathlib import Path

from hotspots.kafka_security import uses_sasl, uses_tls
from hotspots.settings import BrokerSettings

SCRAM_ITERATIONS = 4096  # Kafka's minimum for SCRAM-SHA-256/512
_USER = re.compile(r"[A-Za-z0-9._@-]+")
_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}


class SecurityConfigError(RuntimeError):
    pass


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read: it may hold passwords or a private key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its old mode through os.open
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def prop_value(value: str) -> str:
    """Escape a value for a Java .properties file (read as ISO-8859-1, backslash escapes)."""
    out = value.replace("\\", "\\\\")
    return "".join(c if 32 <= ord(c) < 127 else f"\\u{ord(c):04x}" for c in out)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _jaas(module: str, **options: str) -> str:
    return f"{module} required {' '.join(f'{k}={_quote(v)}' for k, v in options.items())};"


def _credentials(settings: BrokerSettings) -> tuple[str, str]:
    user = settings.sasl_username or ""
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
    if not _USER.fullmatch(user):
        raise SecurityConfigError(f"the local broker takes SASL user names of letters, digits and ._@- "
                                  f"only, not {user!r}")
    if any(ord(c) < 32 for c in password):
        raise SecurityConfigError("the local broker's SASL password may not hold control characters")
    return user, password


def _write_keystore(settings: BrokerSettings, root: Path) -> Path:
    cert, key = settings.broker_ssl_certfile, settings.broker_ssl_keyfile
    if cert is None or key is None:
        raise SecurityConfigError(
            f"security_protocol {settings.security_protocol}: the local broker needs its certificate and "
            "key (HOTSPOTS_BROKER_SSL_CERTFILE, HOTSPOTS_BROKER_SSL_KEYFILE)")
    for name, path in (("broker_ssl_certfile", cert), ("broker_ssl_keyfile", key)):
        if not path.is_file():
            raise SecurityConfigError(f"{name} (HOTSPOTS_{name.upper()}): no such file {path}")
    keystore = root / "tls" / "broker.pem"
    # Kafka's PEM keystore file holds the private key followed by the certificate chain.
    write_private(keystore, key.read_text() + "\n" + cert.read_text())
    return keystore


def listener_props(settings: BrokerSettings, root: Path) -> dict[str, str]:
    """server.properties entries that replace the plaintext listeners; {} for PLAINTEXT."""
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return {}
    name = protocol.lower()
    secret = secrets.token_urlsafe(24)
    props = {
        "listeners": (f"{protocol}://127.0.0.1:{settings.kafka_port},"
                      f"CONTROLLER://127.0.0.1:{settings.controller_port}"),
        "advertised.listeners": f"{protocol}://127.0.0.1:{settings.kafka_port}",
        "listener.security.protocol.map": f"{protocol}:{protocol},CONTROLLER:SASL_PLAINTEXT",
        "inter.broker.listener.name": protocol,
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": _jaas(
            "org.apache.kafka.common.security.plain.PlainLoginModule",
            username="controller", password=secret, user_controller=secret),
    }
    if uses_sasl(settings):
        mechanism = settings.sasl_mechanism
        user, password = _credentials(settings)
        if mechanism == "PLAIN":
            jaas = _jaas("org.apache.kafka.common.security.plain.PlainLoginModule",
                         username=user, password=password, **{f"user_{user}": password})
        else:
            jaas = _jaas("org.apache.kafka.common.security.scram.ScramLoginModule",
                         username=user, password=password)
        props |= {f"listener.name.{name}.sasl.enabled.mechanisms": mechanism,
                  "sasl.mechanism.inter.broker.protocol": mechanism,
                  f"listener.name.{name}.{mechanism.lower()}.sasl.jaas.config": jaas}
    if uses_tls(settings):
        props |= {f"listener.name.{name}.ssl.keystore.type": "PEM",
                  f"listener.name.{name}.ssl.keystore.location": str(_write_keystore(settings, root))}
        if settings.ssl_cafile is not None:  # the broker's own inter-broker client trusts it too
            props |= {f"listener.name.{name}.ssl.truststore.type": "PEM",
                      f"listener.name.{name}.ssl.truststore.location": str(settings.ssl_cafile)}
    return props


def _salted(mechanism: str, password: str, salt: bytes, iterations: int) -> bytes:
    """SCRAM's SaltedPassword: Hi(password, salt, i) of RFC 5802, i.e. PBKDF2 with the hash's HMAC."""
    return hashlib.pbkdf2_hmac(_HASHES[mechanism], password.encode(), salt, iterations)


def _record_path(root: Path) -> Path:
    return root / "scram-user.json"


def scram_format_args(settings: BrokerSettings, root: Path) -> list[str]:
    """StorageTool arguments that create the SCRAM user; records it (no password) for later starts."""
    if not uses_sasl(settings) or settings.sasl_mechanism not in _HASHES:
        _record_path(root).unlink(missing_ok=True)
        return []
    user, password = _credentials(settings)
    salt = secrets.token_bytes(16)
    salted = _salted(settings.sasl_mechanism, password, salt, SCRAM_ITERATIONS)
    record = {"mechanism": settings.sasl_mechanism, "user": user,
              "salt": base64.b64encode(salt).decode(), "iterations": SCRAM_ITERATIONS,
              "check": hashlib.sha256(salted).hexdigest()}
    write_private(_record_path(root), json.dumps(record))
    return ["--add-scram", (f"{settings.sasl_mechanism}=[name={user},salt={record['salt']},"
                            f"saltedpassword={base64.b64encode(salted).decode()},"
                            f"iterations={SCRAM_ITERATIONS}]")]


def check_formatted(settings: BrokerSettings, root: Path) -> None:
    """Refuse to start a formatted broker whose SCRAM user is not the configured one.

    SCRAM users are written at format time, so a mismatch would only show as every client
    failing to authenticate.
    """
    if not uses_sasl(settings) or settings.sasl_mechanism not in _HASHES:
        return
    user, password = _credentials(settings)
    path = _record_path(root)
    record = json.loads(path.read_text()) if path.exists() else None
    fresh = (f"SCRAM users are created when the broker's storage is formatted: use a new data dir "
             f"or delete {root} (its topics go with it)")
    if record is None or (record["mechanism"], record["user"]) != (settings.sasl_mechanism, user):
        had = "no SCRAM user" if record is None else f"{record['mechanism']} user {record['user']!r}"
        raise SecurityConfigError(f"the local broker's storage was formatted with {had}, not "
                                  f"{settings.sasl_mechanism} user {user!r}; {fresh}")
    salted = _salted(record["mechanism"], password, base64.b64decode(record["salt"]), record["iterations"])
    if not hmac.compare_digest(hashlib.sha256(salted).hexdigest(), record["check"]):
        raise SecurityConfigError(f"the local broker's storage was formatted with another password for "
                                  f"{user!r}; {fresh}")
