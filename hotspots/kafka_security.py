"""Kafka client security from settings: one mapping for kafka-python, one for faust/aiokafka.

Every client the product creates goes through ``kafka_kwargs`` (kafka-python) or
``faust_credentials`` (the worker), so HOTSPOTS_SECURITY_PROTOCOL and friends apply everywhere.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from hotspots.settings import SASL_PROTOCOLS, TLS_PROTOCOLS, _Common

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT


def uses_sasl(settings: _Common) -> bool:
    return settings.security_protocol in SASL_PROTOCOLS


def uses_tls(settings: _Common) -> bool:
    return settings.security_protocol in TLS_PROTOCOLS


def _password(settings: _Common) -> str:
    if settings.sasl_password is None:  # the settings' validator refuses SASL without one
        raise ValueError("sasl_password is not set")
    return settings.sasl_password.get_secret_value()


def _str(path: object) -> str | None:
    return None if path is None else str(path)


def security_kwargs(settings: _Common) -> dict[str, Any]:
    """kafka-python's security arguments (KafkaProducer, KafkaConsumer, KafkaAdminClient)."""
    kwargs: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if uses_sasl(settings):
        kwargs.update(sasl_mechanism=settings.sasl_mechanism,
                      sasl_plain_username=settings.sasl_username,  # kafka-python's name, SCRAM too
                      sasl_plain_password=_password(settings))
    if uses_tls(settings):
        kwargs.update(ssl_check_hostname=settings.ssl_check_hostname,
                      ssl_cafile=_str(settings.ssl_cafile), ssl_certfile=_str(settings.ssl_certfile),
                      ssl_keyfile=_str(settings.ssl_keyfile))
    return kwargs


def kafka_kwargs(settings: _Common, bootstrap: str | None = None) -> dict[str, Any]:
    """``bootstrap_servers`` (``bootstrap`` or the settings') plus the security arguments."""
    return {"bootstrap_servers": bootstrap or settings.bootstrap, **security_kwargs(settings)}


def ssl_context(settings: _Common) -> ssl.SSLContext:
    """The TLS client context, with the policy kafka-python applies to the same settings."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificates
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = settings.ssl_check_hostname
    if settings.ssl_cafile is not None:
        ctx.load_verify_locations(cafile=str(settings.ssl_cafile))
    else:
        ctx.load_default_certs()
    if settings.ssl_certfile is not None:
        ctx.load_cert_chain(str(settings.ssl_certfile), _str(settings.ssl_keyfile))
    return ctx


def faust_credentials(settings: _Common) -> CredentialsT | None:
    """faust's ``broker_credentials`` (aiokafka supports SCRAM-SHA-256/512 and PLAIN); None: plaintext."""
    if settings.security_protocol == "PLAINTEXT":
        return None
    import faust

    context = ssl_context(settings) if uses_tls(settings) else None
    if uses_sasl(settings):
        # With an ssl_context faust selects SASL_SSL, without one SASL_PLAINTEXT.
        return faust.SASLCredentials(username=settings.sasl_username, password=_password(settings),
                                     mechanism=settings.sasl_mechanism, ssl_context=context)
    return faust.SSLCredentials(context)


def _first_server(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    return host.strip("[]"), int(port)


def login_error(settings: _Common, timeout: float = 10.0) -> str | None:
    """The broker's reason for refusing this SASL login; None if accepted, not SASL or no answer.

    kafka-python 3.0.12 loses the broker's SaslAuthenticate error (it arrives together with
    the close of the connection) and retries until its bootstrap timeout, so a wrong password
    looks like an unreachable broker. aiokafka reads the error: ask it, on one connection.
    """
    if not uses_sasl(settings):
        return None
    import asyncio

    from aiokafka import errors
    from aiokafka.conn import create_conn

    host, port = _first_server(settings.bootstrap)

    async def probe() -> None:
        conn = await asyncio.wait_for(create_conn(
            host, port, security_protocol=settings.security_protocol,
            ssl_context=ssl_context(settings) if uses_tls(settings) else None,
            sasl_mechanism=settings.sasl_mechanism, sasl_plain_username=settings.sasl_username,
            sasl_plain_password=_password(settings), request_timeout_ms=int(timeout * 1000)), timeout)
        conn.close()

    try:
        asyncio.run(probe())
    except (errors.SaslAuthenticationFailed, errors.AuthenticationFailedError,
            errors.UnsupportedSaslMechanismError, errors.IllegalSaslStateError) as exc:
        return str(exc)
    except Exception:  # unreachable, TLS refused, timed out: not a login answer
        return None
    return None


def connect_failure(settings: _Common, exc: BaseException) -> str:
    """Why a kafka-python client could not connect, with the broker's word on a refused login."""
    refused = login_error(settings)
    if refused is not None:
        return (f"Kafka at {settings.bootstrap} refused the {settings.sasl_mechanism} login of "
                f"{settings.sasl_username!r} (HOTSPOTS_SASL_USERNAME, HOTSPOTS_SASL_PASSWORD): {refused}")
    return f"Kafka unreachable at {settings.bootstrap} ({settings.security_protocol}): {exc}"
