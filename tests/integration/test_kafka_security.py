"""The product against brokers that demand SCRAM logins: its own stack on SASL_SSL (TLS with a
throwaway CA) and a bare broker on SASL_PLAINTEXT with SCRAM-SHA-256.

Neither uses the session's plaintext ``live_stack``: each starts its own broker (own data dir,
free ports) and stops it, whatever happens.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer
from pydantic import SecretStr

from hotspots import broker, stack
from hotspots.kafka_security import kafka_kwargs, login_error
from hotspots.settings import BrokerSettings, ProducerSettings, _Common
from hotspots.topics import committed_offsets, end_offsets, ensure_topics
from producers.publisher import EventPublisher, PublishError
from tests.integration.conftest import cli_json, log_tail, run_cli
from tests.integration.truth import random_events, weekly_truth
from tests.tls import make_tls

pytestmark = pytest.mark.integration

USER = "hotspots-analyst"
# A quote, a backslash and a non-ASCII letter: they pass through JAAS, .properties and SCRAM.
PASSWORD = f'S3cret "{secrets.token_hex(4)}" \\ é'


# First, before the module's secure stack starts: one broker at a time.
def test_a_bare_broker_with_scram_sha_256_over_sasl_plaintext(tmp_path) -> None:
    port = stack.free_port()
    settings = BrokerSettings(
        data_dir=tmp_path, kafka_port=port, controller_port=stack.free_port(), bootstrap=f"127.0.0.1:{port}",
        topic_prefix=f"sec256-{uuid.uuid4().hex[:8]}", partitions=2, security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256", sasl_username=USER, sasl_password=PASSWORD,
        # Explicit, so that no HOTSPOTS_SSL_* of the developer's environment leaks in.
        ssl_cafile=None, ssl_certfile=None, ssl_keyfile=None)
    broker.fetch_jars(settings)
    broker.format_storage(settings)
    log = tmp_path / "broker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(broker.server_command(settings), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not broker.is_ready(settings.bootstrap, settings):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        ensure_topics(settings)
        events = random_events(2012, 50, tag=f"sec256-{uuid.uuid4().hex[:6]}", seed=32)
        producer = ProducerSettings(**settings.model_dump(include=set(ProducerSettings.model_fields)))
        with EventPublisher(producer, source="test:scram-256") as publisher:
            assert publisher.send_all(events) == len(events)
        assert sum(end_offsets(settings.bootstrap, [settings.events_topic], settings).values()) == len(events)

        consumer = KafkaConsumer(settings.events_topic, **kafka_kwargs(settings), group_id="sec-reader",
                                 auto_offset_reset="earliest", enable_auto_commit=False)
        seen: set[str] = set()
        try:
            until = time.monotonic() + 60
            while len(seen) < len(events) and time.monotonic() < until:
                for records in consumer.poll(timeout_ms=1000).values():
                    seen |= {orjson.loads(m.value)["event_id"] for m in records}
            consumer.commit()
        finally:
            consumer.close()
        assert seen == {e.event_id for e in events}
        assert sum(committed_offsets(settings.bootstrap, "sec-reader", settings).values()) == len(events)
        assert "invalid credentials" in (login_error(settings.model_copy(
            update={"sasl_password": SecretStr("wrong")})) or "")
        # The real worker (faust, aiokafka) with a wrong password: it says why and exits.
        started = time.monotonic()
        worker = _run_worker(settings, tmp_path, password="wrong")
        print(f"worker with a wrong password exited {worker.returncode} in {time.monotonic() - started:.1f}s")
        assert worker.returncode != 0 and "SaslAuthenticationFailed" in worker.stdout, worker.stdout[-3000:]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _run_worker(settings: BrokerSettings, data_dir: Path, password: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTSPOTS_")}
    env |= {"HOTSPOTS_DATA_DIR": str(data_dir), "HOTSPOTS_BOOTSTRAP": settings.bootstrap,
            "HOTSPOTS_TOPIC_PREFIX": settings.topic_prefix, "HOTSPOTS_PARTITIONS": str(settings.partitions),
            "HOTSPOTS_SECURITY_PROTOCOL": settings.security_protocol,
            "HOTSPOTS_SASL_MECHANISM": settings.sasl_mechanism, "HOTSPOTS_SASL_USERNAME": USER,
            "HOTSPOTS_SASL_PASSWORD": password}
    proc = subprocess.Popen([sys.executable, "-m", "streams", "worker"], env=env, cwd=data_dir, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out)


@pytest.fixture(scope="module")
def secure_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack.StackConfig]:
    """`hotspots up` with HOTSPOTS_SECURITY_PROTOCOL=SASL_SSL and SCRAM-SHA-512, as a user runs it."""
    root = tmp_path_factory.mktemp("secure-stack")
    tls = make_tls(root / "tls")
    config = stack.StackConfig(str(root / "data"), stack.free_port(), stack.free_port(), stack.free_port(),
                               topic_prefix=f"sec-{uuid.uuid4().hex[:8]}", partitions=2)
    env = {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-512", "SASL_USERNAME": USER,
           "SASL_PASSWORD": PASSWORD, "SSL_CAFILE": str(tls.ca), "BROKER_SSL_CERTFILE": str(tls.cert),
           "BROKER_SSL_KEYFILE": str(tls.key)}
    # The environment reaches every stage: this process's clients, the worker and the sink.
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(f"HOTSPOTS_{name}", value)
        mp.setenv("HOTSPOTS_JUSTIFICATION", "kafka security integration test")  # queries are audited
        try:
            started = time.monotonic()
            stack.up(config, timeout=180, echo=lambda _msg: None)
            print(f"secure stack up in {time.monotonic() - started:.1f}s")
            yield config
        finally:
            stack.down(config, echo=lambda _msg: None)


def test_the_whole_stack_runs_on_sasl_ssl_with_scram(secure_stack) -> None:
    props = (Path(secure_stack.data_dir) / "kafka" / "server.properties").read_text()
    assert f"listeners=SASL_SSL://127.0.0.1:{secure_stack.kafka_port},CONTROLLER:" in props
    assert "PLAINTEXT://" not in props.replace("SASL_PLAINTEXT", "")  # no unauthenticated listener
    assert {r["service"]: r["healthy"] for r in cli_json(secure_stack, "status")} == {
        "broker": True, "worker": True, "spikes": True, "sink": True}

    year = 2012  # the stack is this module's own: any past year will do
    events = random_events(year, 400, tag=f"sec-{uuid.uuid4().hex[:6]}", seed=31)
    settings = ProducerSettings(bootstrap=secure_stack.bootstrap, topic_prefix=secure_stack.topic_prefix)
    with EventPublisher(settings, source="test:security") as publisher:
        assert publisher.send_all(events) == len(events)
    # The CLI's admin clients (wait), the worker's aiokafka clients and the sink's consumer all
    # log in: the rollups only appear if every one of them did.
    run_cli(secure_stack, "wait", "--timeout", "180")
    rows = cli_json(secure_stack, "query", "cells", "--from", f"{year}-01-01", "--to", f"{year}-12-31",
                    "--res", "8")
    got = Counter({(r["cell"], r["period_start"], r["kind"]): r["count"] for r in rows})
    assert got == weekly_truth(events, 8), log_tail(secure_stack, "worker")


def test_a_wrong_password_fails_fast_with_the_brokers_reason(secure_stack) -> None:
    bad = ProducerSettings(bootstrap=secure_stack.bootstrap, topic_prefix=secure_stack.topic_prefix,
                           sasl_password="not-the-password")
    assert "invalid credentials" in (login_error(bad) or "")
    started = time.monotonic()
    with pytest.raises(PublishError, match=r"refused the SCRAM-SHA-512 login of 'hotspots-analyst'.*"
                                           r"Authentication failed.*invalid credentials"):
        EventPublisher(bad, source="test:security")
    assert time.monotonic() - started < 30  # the producer's 15 s bootstrap bound, then the probe


def test_clients_without_tls_trust_or_login_are_refused(secure_stack) -> None:
    bootstrap = secure_stack.bootstrap
    assert broker.is_ready(bootstrap)  # the environment's settings: SASL_SSL, our CA, the user
    plaintext = _Common(bootstrap=bootstrap, security_protocol="PLAINTEXT", sasl_username=None,
                        sasl_password=None, ssl_cafile=None)
    assert not broker.is_ready(bootstrap, plaintext)  # no TLS, no login
    # SASL_SSL trusting only the system's CAs: the throwaway CA's certificate is refused.
    untrusting = _Common(bootstrap=bootstrap, security_protocol="SASL_SSL", sasl_username=USER,
                         sasl_password=PASSWORD, ssl_cafile=None)
    assert not broker.is_ready(bootstrap, untrusting)
    assert login_error(untrusting) is None  # not a refused login: TLS failed first


def test_formatted_storage_refuses_another_scram_password(secure_stack) -> None:
    settings = BrokerSettings(data_dir=Path(secure_stack.data_dir), kafka_port=secure_stack.kafka_port,
                              controller_port=secure_stack.controller_port, sasl_password="changed")
    before = (Path(secure_stack.data_dir) / "kafka" / "server.properties").read_text()
    with pytest.raises(broker.BrokerError, match="formatted with another password"):
        broker.format_storage(settings)
    assert (Path(secure_stack.data_dir) / "kafka" / "server.properties").read_text() == before
