"""The `hotspots` command line: run the stack, produce events, query hotspots."""

from __future__ import annotations

import os
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import click
import httpx

from hotspots import cli_admin, clientaccess, stack
from hotspots.output import FORMATS, render
from hotspots.settings import STAGE_SETTINGS, BrokerSettings, ProducerSettings, SinkSettings

DATA_DIR = click.option("--data-dir", type=click.Path(path_type=Path), envvar="HOTSPOTS_DATA_DIR",
                        default=None, help="Stack data directory [env HOTSPOTS_DATA_DIR; ~/.hotspots].")
FORMAT = click.option("--format", "fmt", type=click.Choice(FORMATS), default="table",
                      show_default=True, help="Output format.")


def _data_dir(data_dir: Path | None) -> Path:
    return (data_dir or BrokerSettings().data_dir).expanduser().resolve()


def _config(data_dir: Path | None) -> stack.StackConfig:
    """The running (or last started) stack's config, else one from settings and environment."""
    root = _data_dir(data_dir)
    saved = stack.StackConfig.load(root)
    if saved is not None:
        return saved
    b, s = BrokerSettings(), SinkSettings()
    return stack.StackConfig(str(root), b.kafka_port, b.controller_port, s.api_port,
                             b.topic_prefix, b.partitions,
                             bootstrap_servers=os.environ.get("HOTSPOTS_BOOTSTRAP", ""),
                             api_host=s.api_host)


def _emit(text: str, out: Path | None) -> None:
    """Write a generated document to --out, or to standard output."""
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(cls=clientaccess.AuditedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--justification", envvar="HOTSPOTS_JUSTIFICATION", metavar="TEXT",
              help="Why you are querying (a case or tasking reference), recorded in the audit log "
                   "with each query; accepted anywhere on the line [env HOTSPOTS_JUSTIFICATION].")
@click.option("--recipient", metavar="WHO", default=None,
              help="Who will receive what you export or disclose, when not you (audit log).")
@click.pass_context
def main(ctx: click.Context, justification: str | None, recipient: str | None) -> None:
    """hotspots: serious-violence hotspots from a live stream of enforcement events."""
    clientaccess.remember(ctx, justification, recipient)


cli_admin.register(main, DATA_DIR, FORMAT)  # hotspots token create|list|revoke, audit list


@main.command()
@DATA_DIR
@click.option("--kafka-port", type=int, envvar="HOTSPOTS_KAFKA_PORT", default=19092, show_default=True)
@click.option("--controller-port", type=int, envvar="HOTSPOTS_CONTROLLER_PORT", default=19093,
              show_default=True)
@click.option("--api-port", type=int, envvar="HOTSPOTS_API_PORT", default=8765, show_default=True)
@click.option("--partitions", type=int, envvar="HOTSPOTS_PARTITIONS", default=4, show_default=True)
@click.option("--topic-prefix", envvar="HOTSPOTS_TOPIC_PREFIX", default="hotspots", show_default=True)
@click.option("--metrics-port", type=click.IntRange(0, 65535), envvar="HOTSPOTS_METRICS_PORT",
              default=19101, show_default=True,
              help="Worker's Prometheus exporter on 127.0.0.1 (0: off); the sink's is the API's /metrics.")
@click.option("--timeout", type=float, default=180.0, show_default=True)
def up(data_dir: Path | None, kafka_port: int, controller_port: int, api_port: int,
       partitions: int, topic_prefix: str, metrics_port: int, timeout: float) -> None:
    """Start broker, worker and sink/API in the background; return when all are healthy."""
    config = stack.StackConfig(str(_data_dir(data_dir)), kafka_port, controller_port, api_port,
                               topic_prefix, partitions, metrics_port=metrics_port)
    try:
        stack.up(config, timeout=timeout, echo=click.echo)
    except (stack.StackError, RuntimeError) as exc:
        _fail(str(exc))
    click.echo(f"stack up: kafka {config.bootstrap}, api {config.api_url}, data {config.data_dir}")


@main.command()
@DATA_DIR
def down(data_dir: Path | None) -> None:
    """Stop the stack (sink, worker, then broker); data is kept."""
    stack.down(_config(data_dir), echo=click.echo)


@main.command()
@DATA_DIR
@FORMAT
def status(data_dir: Path | None, fmt: str) -> None:
    """Show each service's pid and health; exit 1 unless all are healthy."""
    state = stack.status(_config(data_dir))
    rows = [{"service": name, **info} for name, info in state.items()]
    click.echo(render(rows, fmt))
    sys.exit(0 if all(info["healthy"] for info in state.values()) else 1)


@main.command()
@DATA_DIR
@click.option("--timeout", type=float, default=120.0, show_default=True)
def wait(data_dir: Path | None, timeout: float) -> None:
    """Return 0 once everything produced so far is aggregated and queryable.

    The worker has folded every event and its spike agents everything it accepted (their
    progress changelogs, not faust's committed offsets: hotspots/caughtup.py), and the
    sink has stored every output. Exit 2 on timeout, naming what is behind."""
    from hotspots.caughtup import wait_pipeline
    from hotspots.kafka_security import connect_failure
    from hotspots.settings import WorkerSettings

    config = _config(data_dir)
    settings = SinkSettings(data_dir=Path(config.data_dir), topic_prefix=config.topic_prefix,
                            bootstrap=config.bootstrap)
    worker = WorkerSettings(data_dir=Path(config.data_dir), topic_prefix=config.topic_prefix,
                            bootstrap=config.bootstrap)
    deadline = time.monotonic() + timeout
    try:
        wait_pipeline(config.bootstrap, worker, settings, deadline)
    except TimeoutError as exc:
        _fail(str(exc), code=2)
    except Exception as exc:
        _fail(f"cannot reach the stack: {connect_failure(settings, exc)}")
    click.echo("caught up")


@main.group()
def produce() -> None:
    """Publish events to the events topic."""


@produce.command("synthetic")
@DATA_DIR
@click.option("--seed", type=int, default=2023, show_default=True)
def produce_synthetic(data_dir: Path | None, seed: int) -> None:
    """A calibrated synthetic year (Dec 2022 - Nov 2023) of Essex enforcement events."""
    from producers.synthetic import synthetic_year

    events = synthetic_year(seed)
    sent, _ = _publish(_config(data_dir), events, f"synthetic:{seed}", rate=None, total=len(events))
    click.echo(f"produced {sent} events (seed {seed})")


def BULK(default: int | None, shown: str | None = None) -> Any:
    return click.option(
        "--bulk", type=click.IntRange(0, 10000), default=default, show_default=shown or True,
        help="Events packed into one Kafka record per partition (0: one record per event). A "
             "bulk is sent when full or when its first event has waited HOTSPOTS_BULK_LINGER_MS "
             "(20 ms), so live feeds use it too: the worker's cost is mostly per record.")


HISTORY = click.option(
    "--history", is_flag=True,
    help="Send to the history topic, for `hotspots backfill` to load, instead of the live worker's.")


def _publish(config: stack.StackConfig, items: Any, source: str, rate: float | None,
             total: int | None = None, bulk: int | None = 0, history: bool = False) -> tuple[int, int]:
    """Send events and dead letters; return (events acknowledged, records dead-lettered).
    ``bulk`` None: 500 events a record, or for the history topic the history framer's
    records (producers.history), which no live worker has to wait for."""
    from producers.history import HISTORY_BULK, HISTORY_BULK_BYTES
    from producers.publisher import BULK_BYTES, EventPublisher, Pacer, PublishError, Rejected

    settings = ProducerSettings(bootstrap=config.bootstrap, topic_prefix=config.topic_prefix)
    pacer = Pacer(rate, total)
    topic = settings.history_topic if history else None
    if bulk is None:
        bulk = HISTORY_BULK if history else 500
    if history:  # no live worker waits for these: a bulk leaves when full, not after a linger
        settings = settings.model_copy(update={"bulk_linger_ms": 0})
    try:
        with EventPublisher(settings, source=source, bulk=bulk, topic=topic,
                            bulk_bytes=HISTORY_BULK_BYTES if history else BULK_BYTES) as publisher:
            for item in items:
                if isinstance(item, Rejected):
                    publisher.send_rejected(item)
                else:
                    publisher.send(item)
                pacer.tick()
            publisher.flush()
            return publisher.acked, publisher.dead_lettered
    except PublishError as exc:
        _fail(str(exc))
    finally:
        pacer.close()
    raise AssertionError("unreachable")


@produce.command("jsonl")
@DATA_DIR
@click.argument("source", type=click.File("rb"))
@click.option("--rate", type=float, default=None, help="Events per second (default: as fast as possible).")
@BULK(default=None, shown="100; 2000 with --history")
@HISTORY
def produce_jsonl(data_dir: Path | None, source: Any, rate: float | None, bulk: int | None,
                  history: bool) -> None:
    """Events as JSON lines in the contract's shape, from FILE or - (stdin).

    With --history the lines are framed as they came, 2,000 to a record unless --bulk says
    otherwise: `hotspots backfill` checks each one by the contract, with the worker's reasons."""
    from hotspots.contract import InvalidEvent
    from producers.publisher import Rejected

    config = _config(data_dir)
    if history:
        _frame_history(config, source, rate, bulk)
        return
    admission = ProducerSettings().admission()
    name = getattr(source, "name", "-")
    reasons: dict[str, int] = {}

    def items() -> Any:
        for number, line in enumerate(source, start=1):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                yield admission.admit(line)
            except InvalidEvent as exc:
                reasons[exc.reason] = reasons.get(exc.reason, 0) + 1
                yield Rejected(line, exc.reason, exc.detail, f"jsonl:{name}:{number}")

    sent, dead = _publish(config, items(), f"jsonl:{name}", rate, bulk=100 if bulk is None else bulk)
    click.echo(render({"produced": sent, "dead_lettered": dead, **{f"rejected.{k}": v
                       for k, v in sorted(reasons.items())}}, "json"))
    if dead:
        sys.exit(3)


def _frame_history(config: stack.StackConfig, source: Any, rate: float | None, bulk: int | None) -> None:
    """`produce jsonl --history`: the file's lines onto the history topic, unchecked."""
    from kafka.errors import KafkaError

    from producers.history import HISTORY_BULK, HistoryFramer
    from producers.publisher import Pacer, PublishError

    settings = ProducerSettings(bootstrap=config.bootstrap, topic_prefix=config.topic_prefix)
    pacer = Pacer(rate, None)
    lines = source
    if rate or pacer.show:  # a tick a line costs the producer: only when it does something
        def paced() -> Any:
            for line in source:
                pacer.tick()
                yield line
        lines = paced()
    try:
        with HistoryFramer(settings, f"jsonl:{getattr(source, 'name', '-')}",
                           HISTORY_BULK if bulk is None else bulk) as framer:
            framer.add(lines)
            framer.flush()
    except (PublishError, KafkaError) as exc:
        _fail(str(exc))
    finally:
        pacer.close()
    click.echo(render({"produced": framer.acked, "dead_lettered": framer.dead_lettered,
                       "checked": "by hotspots backfill"}, "json"))
    if framer.dead_lettered:
        sys.exit(3)


@main.group()
def replay() -> None:
    """Replay published data files as events."""


@replay.command("police-uk")
@DATA_DIR
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rate", type=float, default=None, help="Events per second (default: as fast as possible).")
@BULK(default=None, shown="500; 2000 with --history")
@HISTORY
def replay_police_uk(data_dir: Path | None, files: tuple[Path, ...], rate: float | None,
                     bulk: int | None, history: bool) -> None:
    """data.police.uk street and stop-and-search CSVs (plain or .csv.gz)."""
    from producers.policeuk import ReplayError, ReplayReport, read_file

    config = _config(data_dir)
    report = ReplayReport()
    admission = ProducerSettings().admission()

    def items() -> Any:
        for path in files:
            yield from read_file(path, report, admission)

    try:
        sent, dead = _publish(config, items(), "police-uk", rate, bulk=bulk, history=history)
    except ReplayError as exc:
        _fail(str(exc))
    click.echo(render({**report.as_dict(), "acknowledged": sent, "dead_lettered": dead}, "json"))


def _api_or_local(config: stack.StackConfig, path: str, params: dict[str, Any],
                  local: Any, timeout: float = 60, method: str = "GET") -> Any:
    """Ask the running API; with no stack running, open the embedded store directly. Either
    way the query needs a justification and is recorded in the audit log (clientaccess)."""
    why, recipient, command = clientaccess.context()
    if not why:
        _fail(clientaccess.MISSING, code=2)
    assert why is not None
    root = Path(config.data_dir)
    try:
        response = httpx.request(method, f"{config.api_url}{path}", params=params, timeout=timeout,
                                 headers=clientaccess.headers(root, why, recipient))
    except httpx.TransportError:
        if stack.status(config)["sink"]["running"]:
            _fail(f"the sink is running but its API at {config.api_url} does not answer")
        from sinks.store import Store

        store = Store(SinkSettings(data_dir=root))
        try:
            return clientaccess.run_audited(store, root, command or path, params, why, recipient,
                                            lambda: local(store))
        finally:
            store.close()
    if response.status_code != 200:
        detail = response.json().get("detail", response.text) if response.headers.get(
            "content-type", "").startswith("application/json") else response.text
        _fail(clientaccess.refused(response.status_code, str(detail), root))
    return response.json()


@main.group()
def query() -> None:
    """Query hotspots (through the running API, or the store when the stack is down)."""


def _iso(value: date) -> str:
    return value.isoformat()


DATE = click.DateTime(formats=["%Y-%m-%d"])


def PERIOD_START(fn: Any) -> Any:
    """--period week|month and --start, the period's first day: shared by the analytics."""
    fn = click.option("--start", type=DATE, required=True,
                      help="The week's Monday or the month's 1st.")(fn)
    return click.option("--period", type=click.Choice(["week", "month"]), required=True)(fn)


@query.command("summary")
@DATA_DIR
@click.option("--from", "start", type=DATE, required=True)
@click.option("--to", "end", type=DATE, required=True)
@FORMAT
def query_summary(data_dir: Path | None, start: Any, end: Any, fmt: str) -> None:
    """Headline figures (arrests, charge rate, seizures, warrants, sentences, safeguarding)."""
    from sinks import queries

    s, e = start.date(), end.date()
    data = _api_or_local(_config(data_dir), "/v1/summary", {"from": _iso(s), "to": _iso(e)},
                         lambda store: queries.summary(store, s, e))
    click.echo(render(data, fmt))


@query.command("top")
@DATA_DIR
@click.option("--week", required=True, help="ISO week, e.g. 2023-W05.")
@click.option("--kind", required=True)
@click.option("--res", type=click.IntRange(6, 8), default=8, show_default=True)
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True)
@FORMAT
def query_top(data_dir: Path | None, week: str, kind: str, res: int, limit: int, fmt: str) -> None:
    """The busiest cells in one ISO week."""
    from hotspots.periods import parse_iso_week
    from sinks import queries

    try:
        monday = parse_iso_week(week)
    except ValueError as exc:
        _fail(str(exc), code=2)
    data = _api_or_local(_config(data_dir), "/v1/top",
                         {"week": week, "kind": kind, "res": res, "limit": limit},
                         lambda store: queries.top(store, monday, kind, res, limit))
    click.echo(render(data, fmt))


@query.command("cells")
@DATA_DIR
@click.option("--from", "start", type=DATE, required=True)
@click.option("--to", "end", type=DATE, required=True)
@click.option("--res", type=click.IntRange(6, 8), default=8, show_default=True)
@click.option("--period", type=click.Choice(["week", "month", "day"]), default="week",
              show_default=True)
@click.option("--kind", default=None)
@FORMAT
def query_cells(data_dir: Path | None, start: Any, end: Any, res: int, period: str,
                kind: str | None, fmt: str) -> None:
    """Counts per cell, period and kind for periods overlapping --from..--to."""
    from sinks import queries

    s, e = start.date(), end.date()
    params: dict[str, Any] = {"from": _iso(s), "to": _iso(e), "res": res, "period": period}
    if kind:
        params["kind"] = kind
    data = _api_or_local(_config(data_dir), "/v1/cells", params,
                         lambda store: queries.cells(store, s, e, res, period, kind))
    click.echo(render(data, fmt))


@query.command("dlq")
@DATA_DIR
@click.option("--samples", type=click.IntRange(0, 100), default=3, show_default=True,
              help="Sample records per reason.")
@FORMAT
def query_dlq(data_dir: Path | None, samples: int, fmt: str) -> None:
    """Dead letters: counts by reason, with samples of what was refused and where from."""
    from sinks import queries

    data = _api_or_local(_config(data_dir), "/v1/dlq", {"samples": samples},
                         lambda store: queries.dead_letters(store, samples))
    click.echo(render(data, fmt))


@query.command("gistar")
@DATA_DIR
@PERIOD_START
@click.option("--kind", required=True)
@click.option("--res", type=click.IntRange(6, 8), default=8, show_default=True)
@click.option("--k", "k", type=click.IntRange(1, 5), default=1, show_default=True,
              help="Neighbourhood: each cell's k-ring, itself included.")
@FORMAT
def query_gistar(data_dir: Path | None, period: str, start: Any, kind: str, res: int, k: int,
                 fmt: str) -> None:
    """Getis-Ord Gi* hot and cold spots, with FDR-adjusted q and ArcGIS-style bins (-3..3)."""
    from sinks.gistar import gistar
    from sinks.queries import QueryError

    s = start.date()

    def local(store: Any) -> Any:
        try:
            return gistar(store, period, s, kind, res, k)
        except QueryError as exc:
            _fail(str(exc), code=2)

    data = _api_or_local(_config(data_dir), "/v1/gistar",
                         {"period": period, "start": _iso(s), "kind": kind, "res": res, "k": k},
                         local)
    click.echo(render(data, fmt))


def _checked(run: Any) -> Any:
    """Run a local query; a bad argument exits 2 with the query's own message."""
    from sinks.queries import QueryError

    def local(store: Any) -> Any:
        try:
            return run(store)
        except QueryError as exc:
            _fail(str(exc), code=2)

    return local


LIMIT = click.option("--limit", type=click.IntRange(1, 10_000), default=None,
                     help="At most this many rows (default: all).")


@query.command("change")
@DATA_DIR
@PERIOD_START
@click.option("--kind", required=True)
@click.option("--res", type=click.IntRange(6, 8), default=8, show_default=True)
@click.option("--mode", type=click.Choice(["pop", "4v4"]), default="pop", show_default=True,
              help="pop: against the previous period; 4v4: 4 weeks ending --start against the 4 before.")
@LIMIT
@FORMAT
def query_change(data_dir: Path | None, period: str, start: Any, kind: str, res: int, mode: str,
                 limit: int | None, fmt: str) -> None:
    """Change per cell, current against previous window, biggest rise first (p: binomial test)."""
    from sinks.trends import change

    s = start.date()
    params: dict[str, Any] = {"period": period, "start": _iso(s), "kind": kind, "res": res,
                              "mode": mode}
    if limit:
        params["limit"] = limit
    data = _api_or_local(_config(data_dir), "/v1/change", params,
                         _checked(lambda store: change(store, period, s, kind, res, mode, limit)))
    click.echo(render(data, fmt))


@query.command("smoothed")
@DATA_DIR
@PERIOD_START
@click.option("--kind", required=True)
@click.option("--res", type=click.IntRange(6, 8), default=8, show_default=True)
@click.option("--k", "k", type=click.IntRange(1, 5), default=1, show_default=True,
              help="Kernel: the mean over each cell's k-ring, itself included.")
@LIMIT
@FORMAT
def query_smoothed(data_dir: Path | None, period: str, start: Any, kind: str, res: int, k: int,
                   limit: int | None, fmt: str) -> None:
    """k-ring smoothed intensity per cell, highest first, with the raw count."""
    from sinks.trends import smoothed

    s = start.date()
    params: dict[str, Any] = {"period": period, "start": _iso(s), "kind": kind, "res": res, "k": k}
    if limit:
        params["limit"] = limit
    data = _api_or_local(_config(data_dir), "/v1/smoothed", params,
                         _checked(lambda store: smoothed(store, period, s, kind, res, k, limit)))
    click.echo(render(data, fmt))


@query.command("events")
@DATA_DIR
@click.option("--cell", required=True, help="An H3 cell at resolution 6, 7 or 8.")
@PERIOD_START
@click.option("--kind", default=None)
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@FORMAT
def query_events(data_dir: Path | None, cell: str, period: str, start: Any, kind: str | None,
                 limit: int, fmt: str) -> None:
    """Drill down: the events in one cell and period, earliest first."""
    from sinks.trends import drill

    s = start.date()
    params: dict[str, Any] = {"cell": cell, "period": period, "start": _iso(s), "limit": limit}
    if kind:
        params["kind"] = kind
    data = _api_or_local(_config(data_dir), "/v1/events", params,
                         _checked(lambda store: drill(store, cell, period, s, kind, limit)))
    if fmt != "json":  # one text column for the measures, which differ by kind
        data = [{**r, "measures": " ".join(f"{k}={v}" for k, v in r["measures"].items())}
                for r in data]
    click.echo(render(data, fmt))


WEEK = click.option("--week", required=True, help="ISO week, e.g. 2023-W05: the last week analysed.")
EHSA_WEEKS = click.option("--weeks", type=click.IntRange(10, 260), default=12, show_default=True,
                          help="Weeks analysed, ending with --week.")
EHSA_K = click.option("--k", "k", type=click.IntRange(1, 5), default=1, show_default=True,
                      help="Gi* neighbourhood: each cell's k-ring, itself included.")


def _ehsa_call(data_dir: Path | None, path: str, week: str, kind: str, res: int, weeks: int, k: int,
               run: Any, method: str = "GET") -> Any:
    """Emerging hot spots through the API, or locally with ``run(store, config, monday)``."""
    from hotspots.periods import parse_iso_week
    from sinks.ehsa import TransitionPublishError
    from sinks.queries import QueryError

    try:
        monday = parse_iso_week(week)
    except ValueError as exc:
        _fail(str(exc), code=2)
    config = _config(data_dir)

    def local(store: Any) -> Any:
        try:
            return run(store, config, monday)
        except QueryError as exc:
            _fail(str(exc), code=2)
        except TransitionPublishError as exc:
            _fail(str(exc))

    return _api_or_local(config, path, {"week": week, "kind": kind, "res": res, "weeks": weeks,
                                        "k": k}, local, timeout=600, method=method)


@query.command("ehsa")
@DATA_DIR
@WEEK
@click.option("--kind", required=True)
@click.option("--res", type=click.IntRange(6, 8), default=8, show_default=True)
@EHSA_WEEKS
@EHSA_K
@FORMAT
def query_ehsa(data_dir: Path | None, week: str, kind: str, res: int, weeks: int, k: int,
               fmt: str) -> None:
    """Emerging hot spots: ArcGIS's 17 classes from weekly Gi* and a Mann-Kendall trend."""
    from sinks.ehsa import ehsa

    data = _ehsa_call(data_dir, "/v1/ehsa", week, kind, res, weeks, k,
                      lambda store, _cfg, monday: ehsa(store, monday, kind, res, weeks, k))
    click.echo(render(data, fmt))


@main.group("ehsa")
def ehsa_group() -> None:
    """Emerging hot spot classes kept in the store, and their transitions."""


@ehsa_group.command("update")
@DATA_DIR
@WEEK
@click.option("--kind", required=True)
@click.option("--res", type=click.IntRange(6, 8), default=8, show_default=True)
@EHSA_WEEKS
@EHSA_K
@FORMAT
def ehsa_update(data_dir: Path | None, week: str, kind: str, res: int, weeks: int, k: int,
                fmt: str) -> None:
    """Store the week's classes; publish each cell's class change to the transitions topic."""
    from sinks.ehsa import kafka_publisher, update_classes

    def run(store: Any, config: stack.StackConfig, monday: date) -> Any:
        publish = kafka_publisher(SinkSettings(bootstrap=config.bootstrap,
                                               topic_prefix=config.topic_prefix))
        try:
            return update_classes(store, monday, kind, res, weeks, k, publish)
        finally:
            publish.close()

    data = _ehsa_call(data_dir, "/v1/ehsa/update", week, kind, res, weeks, k, run, method="POST")
    click.echo(render(data, fmt))


@main.command("backfill")
@DATA_DIR
@click.option("--build-only", is_flag=True,
              help="Only build the rollups before the cutover again, from the raw events (after late "
                   "events of those periods, which reconcile reports as drift).")
@click.option("--check", type=click.Choice(["auto", "store", "python"]), default="auto", show_default=True,
              help="Who checks the lines by the contract: the store (chDB; auto there), or Python "
                   "(auto on a ClickHouse server, whose version may lack the store check's functions).")
def backfill_cmd(data_dir: Path | None, build_only: bool, check: str) -> None:
    """Load the history topic into the raw table, then build the rollups before HOTSPOTS_CUTOVER.

    Reads the history topic (`produce jsonl --history`, `replay police-uk --history`) from
    where its last run committed up to its present end; refused lines go to the dead letters
    with their reason. With the stack up and the embedded store, the sink is paused meanwhile
    (one process opens the store) and started again after: the live events wait in Kafka.
    """
    from kafka.errors import KafkaError

    from sinks.backfill import BackfillError, backfill
    from sinks.store import Store

    config = _config(data_dir)
    settings = SinkSettings(data_dir=Path(config.data_dir), bootstrap=config.bootstrap,
                            topic_prefix=config.topic_prefix, partitions=config.partitions)
    paused = settings.clickhouse_url is None and stack.stop_service(config, "sink")
    if paused:
        click.echo("sink: paused while the backfill holds the embedded store", err=True)
    try:
        store = Store(settings)
        try:
            report = backfill(store, settings, check, build_only,
                              echo=lambda text: click.echo(text, err=True))
        finally:
            store.close()
    except BackfillError as exc:
        _fail(str(exc), code=2)
    except KafkaError as exc:  # nothing past the last commit counts as loaded: run it again
        _fail(f"the backfill stopped on a Kafka error ({exc!r}); what it committed is kept, run it again")
    finally:
        if paused:
            stack.up(config, echo=lambda text: click.echo(text, err=True))
    click.echo(render(report.as_dict(), "json"))


@main.command("reconcile")
@DATA_DIR
@click.option("--from", "start", type=DATE, default=None,
              help="Check periods overlapping this London date onwards (default: all).")
@click.option("--to", "end", type=DATE, default=None, help="... up to this date (default: all).")
@click.option("--format", "fmt", type=click.Choice(["json", "table"]), default="table",
              show_default=True, help="Output format.")
def reconcile_cmd(data_dir: Path | None, start: Any, end: Any, fmt: str) -> None:
    """Recompute every rollup from the raw events and compare; exit 4 on drift or duplicate ids."""
    from sinks.reconcile import reconcile, summary_text

    s, e = (start.date() if start else None), (end.date() if end else None)
    if s and e and s > e:
        _fail(f"--from {_iso(s)} is after --to {_iso(e)}", code=2)
    params = {name: _iso(day) for name, day in (("from", s), ("to", e)) if day}
    data = _api_or_local(_config(data_dir), "/v1/reconcile", params,
                         lambda store: reconcile(store, s, e), timeout=600)
    click.echo(render(data, "json") if fmt == "json" else summary_text(data))
    sys.exit(0 if data["ok"] else 4)


def _gis_local(run: Any) -> Any:
    """Run a local GIS query; a bad argument or boundaries file exits 2 with its message."""

    def local(store: Any) -> Any:
        try:
            return run(store)
        except ValueError as exc:  # QueryError, BoundaryError
            _fail(str(exc), code=2)

    return local


def TIER(what: str) -> Any:
    from sinks.privacy import TIER_NAMES  # small: no store, no geopandas

    return click.option("--tier", type=click.Choice(TIER_NAMES), default="analyst", show_default=True,
                        help=f"Privacy tier of the {what}: analyst (exact, read scope), partner "
                             "(res 8 at most) or public (res 7 at most), both under the ONS 10-5 "
                             "rule with complementary suppression.")


RES_BY_TIER = click.option("--res", type=click.IntRange(6, 8), default=None,
                           help="H3 resolution [default: 8, or 7 for --tier public].")


def _tier_res(tier: str, res: int | None) -> int:
    """The resolution asked for, or the tier's finest; exit 2 if the tier does not allow it."""
    from sinks.privacy import TIERS, check_tier

    chosen = res or TIERS[tier].max_res
    try:
        check_tier(tier, chosen)
    except ValueError as exc:
        _fail(str(exc), code=2)
    return chosen


@query.command("districts")
@DATA_DIR
@PERIOD_START
@click.option("--kind", required=True)
@RES_BY_TIER
@click.option("--boundaries", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="District outlines, GeoJSON or GeoPackage [default: HOTSPOTS_BOUNDARIES of the API].")
@click.option("--name-property", default="name", show_default=True,
              help="The property naming each district in --boundaries.")
@TIER("counts")
@FORMAT
def query_districts(data_dir: Path | None, period: str, start: Any, kind: str, res: int | None,
                    boundaries: Path | None, name_property: str, tier: str, fmt: str) -> None:
    """Counts per district (each H3 cell placed by its centre), zeros too, then "outside".
    With --tier partner|public the counts are released under disclosure control, with a total."""
    from sinks import gis, privacy, queries

    s = start.date()
    res = _tier_res(tier, res)
    try:
        gis.check_period(period, s, kind)
        bounds = gis.load_districts(boundaries, name_property) if boundaries else None
    except ValueError as exc:
        _fail(str(exc), code=2)
    config = _config(data_dir)
    if bounds is None:  # the API's own setting, or this shell's when the stack is down
        params = {"period": period, "start": _iso(s), "kind": kind, "res": res, "tier": tier}
        data = _api_or_local(config, "/v1/districts", params, _gis_local(
            lambda store: privacy.release_districts(gis.district_rollup(
                store, SinkSettings().boundaries, period, s, kind, res), tier, res)))
    else:  # exact cells from the API or store (read scope), placed and released here
        params = {"from": _iso(s), "to": _iso(s), "res": res, "period": period, "kind": kind}
        rows = _api_or_local(config, "/v1/cells", params, _gis_local(
            lambda store: queries.cells(store, s, s, res, period, kind)))
        data = privacy.release_districts(gis.rollup_cells(rows, bounds), tier, res)
    release = data if isinstance(data, dict) else privacy.release_districts(data, tier, res)
    if tier == "analyst":
        click.echo(render(release["rows"], fmt))
    elif fmt == "json":
        click.echo(render(release, fmt))
    else:  # every row states the tier; the last one is the published total
        click.echo(render([*({**r, "tier": tier} for r in release["rows"]),
                           {"district": "total", "count": release["total"], "tier": tier}], fmt))


@main.group()
def export() -> None:
    """Write hotspots as GIS files (EPSG:4326)."""


@export.command("cells")
@DATA_DIR
@click.option("--from", "start", type=DATE, required=True)
@click.option("--to", "end", type=DATE, required=True)
@RES_BY_TIER
@click.option("--period", type=click.Choice(["week", "month"]), default="week", show_default=True)
@click.option("--kind", default=None)
@TIER("export")
@click.option("--format", "fmt", type=click.Choice(["geojson", "gpkg"]), required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def export_cells(data_dir: Path | None, start: Any, end: Any, res: int | None, period: str,
                 kind: str | None, tier: str, fmt: str, out: Path) -> None:
    """`query cells` as hexagons: GeoJSON, or a GeoPackage with layer "hotspots". The file
    states its tier and disclosure control; partner and public files carry totals per period
    and kind (a "totals" table in a GeoPackage). Name who receives it with --recipient."""
    from sinks import gis, privacy, queries

    s, e = start.date(), end.date()
    res = _tier_res(tier, res)
    params: dict[str, Any] = {"from": _iso(s), "to": _iso(e), "res": res, "period": period,
                              "tier": tier}
    if kind:
        params["kind"] = kind
    data = _api_or_local(_config(data_dir), "/v1/cells", params, _gis_local(
        lambda store: privacy.release_cells(queries.cells(store, s, e, res, period, kind), tier, res)))
    release = data if isinstance(data, dict) else privacy.release_cells(data, tier, res)
    path = gis.export(gis.cells_frame(release["rows"]), out, fmt, gis.release_meta(release))
    click.echo(f"wrote {len(release['rows'])} cells to {path} ({fmt}, {tier} tier)")


@main.group()
def contract() -> None:
    """The event contract."""


@contract.command("schema")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of standard output.")
def contract_schema(out: Path | None) -> None:
    """The contract's JSON Schema (committed as contract/events.v1.schema.json)."""
    from hotspots.contract import json_schema

    text = json_schema()
    _emit(text, out)


@main.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def openapi(out: Path | None) -> None:
    """The HTTP API's OpenAPI document (published as docs/openapi.json)."""
    from sinks.api import openapi_json

    text = openapi_json()
    _emit(text, out)


@main.command()
@FORMAT
def config(fmt: str) -> None:
    """Every setting of every stage, with its environment variable and current value."""
    rows = []
    for cls in STAGE_SETTINGS:
        current = cls()
        for name, field in cls.model_fields.items():
            rows.append({"stage": cls.__name__.removesuffix("Settings").lower(),
                         "env": f"HOTSPOTS_{name.upper()}", "value": str(getattr(current, name)),
                         "description": field.description or ""})
    click.echo(render(rows, fmt))


@main.group()
def kafka() -> None:
    """The local Kafka broker's artifacts."""


@kafka.command("fetch")
def kafka_fetch() -> None:
    """Fetch the broker jars from Maven Central into the cache (idempotent)."""
    from hotspots.broker import BrokerError, fetch_jars

    try:
        path = fetch_jars(BrokerSettings())
    except BrokerError as exc:
        _fail(str(exc))
    click.echo(f"kafka jars in {path}")


HARM_OPTIONS = (click.option("--period", type=click.Choice(["week", "month"]), required=True),
                click.option("--start", type=DATE, required=True,
                             help="The week's Monday or the month's 1st."),
                click.option("--res", type=click.IntRange(6, 8), default=8, show_default=True),
                click.option("--no-proactive", is_flag=True,
                             help="Leave out police-detected Drugs and Possession of weapons (as the CCHI)."))


def _harm_query(name: str, doc: str) -> None:
    """`query harm` and `query gap`: the same options, one function of sinks.harm each."""

    def command(data_dir: Path | None, period: str, start: Any, res: int, no_proactive: bool,
                fmt: str) -> None:
        from sinks import harm

        s, fn = start.date(), getattr(harm, name)
        params = {"period": period, "start": _iso(s), "res": res, "proactive": not no_proactive}
        data = _api_or_local(_config(data_dir), f"/v1/{name}", params,
                             _checked(lambda store: fn(store, period, s, res, not no_proactive)))
        click.echo(render(data, fmt))

    command.__doc__ = doc
    for option in reversed((DATA_DIR, *HARM_OPTIONS, FORMAT)):  # as if stacked decorators
        command = option(command)
    query.command(name)(command)


_harm_query("harm", "Recorded crime weighted by CCHI-style harm-days per cell, most harmful first.")
_harm_query("gap", "Harm rank against enforcement rank per cell; positive gap = under-enforced.")


@main.command("priorities")
@DATA_DIR
@click.option("--as-of", "as_of", type=DATE, default=None, help="Last day counted (default: today).")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["csv", "html", "json", "table"]),
              default="table", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of standard output.")
def priorities_cmd(data_dir: Path | None, as_of: Any, limit: int, fmt: str, out: Path | None) -> None:
    """Warrant priorities: res-8 cells ranked by an explainable score, for the tasking meeting."""
    from datetime import datetime

    from hotspots.periods import LONDON
    from sinks.priorities import priorities
    from sinks.priorities_pack import priorities_csv, priorities_html

    day = as_of.date() if as_of else datetime.now(LONDON).date()
    rows = _api_or_local(_config(data_dir), "/v1/priorities", {"as_of": _iso(day), "limit": limit},
                         lambda store: priorities(store, day, limit))
    text = (priorities_csv(rows) if fmt == "csv" else priorities_html(rows, day) if fmt == "html"
            else render(rows, fmt) + "\n")
    _emit(text, out)
    if out is not None:
        click.echo(f"{len(rows)} cells written to {out}")


@main.group("alerts")
def alerts_group() -> None:
    """Spike alerts: a place's activity above its own normal (streams/alerts.py)."""


@alerts_group.command("list")
@DATA_DIR
@click.option("--since", default=None,
              help="Alerts first seen since a date (London midnight) or an ISO 8601 time with offset.")
@click.option("--kind", default=None)
@click.option("--area-type", type=click.Choice(["cell", "district"]), default=None)
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@FORMAT
def alerts_list(data_dir: Path | None, since: str | None, kind: str | None, area_type: str | None,
                limit: int, fmt: str) -> None:
    """Spike alerts, newest first: area, kind, period, observed v expected, p, method."""
    from sinks.alerts import list_alerts, parse_since
    from sinks.queries import QueryError

    try:
        since_at = parse_since(since) if since else None
    except QueryError as exc:
        _fail(str(exc), code=2)
    params: dict[str, Any] = {"limit": limit}
    params.update({k: v for k, v in (("since", since), ("kind", kind), ("area_type", area_type)) if v})
    data = _api_or_local(_config(data_dir), "/v1/alerts", params, _checked(
        lambda store: list_alerts(store, since_at, kind, area_type, limit)))
    click.echo(render(data, fmt))


if __name__ == "__main__":
    main()
