"""`hotspots token ...` and `hotspots audit list`: admin commands, registered on the main group.

Like every query they go through the running API (which needs an admin token) or, with the
stack down, straight to the tokens file and the store; either way they are audited.
"""

from __future__ import annotations

import getpass
import json
from datetime import datetime, time
from pathlib import Path
from typing import Any

import click


def _cli() -> Any:
    from hotspots import cli  # at run time: cli is loaded, and tests may patch its helpers

    return cli


def _tokens(config: Any) -> Any:
    from hotspots.settings import SinkSettings
    from hotspots.tokens import TokenFile

    return TokenFile(SinkSettings(data_dir=Path(config.data_dir)).tokens_path)


def _token_errors(run: Any) -> Any:
    """Run a local token change; a refused one exits 2 with its message."""
    from hotspots.tokens import TokenError

    def local(store: Any) -> Any:
        try:
            return run(store)
        except TokenError as exc:
            _cli()._fail(str(exc), code=2)

    return local


def register(main: click.Group, data_dir: Any, fmt: Any) -> None:
    """Add the ``token`` and ``audit`` groups to ``main`` (options shared with hotspots.cli)."""
    from hotspots.tokens import SCOPES

    day = click.DateTime(formats=["%Y-%m-%d"])

    @main.group("token")
    def token_group() -> None:
        """API tokens (admin). The server keeps only their SHA-256 hashes.

        Scopes, each including the ones before it: public < partner < read < admin. read is
        the analyst tier (exact counts); partner and public tokens may only ask for releases
        with --tier partner|public; admin adds state changes, dead letters, tokens, audit.
        """

    @token_group.command("create")
    @data_dir
    @click.option("--name", required=True, help="Who or what holds it, e.g. a person or a partner.")
    @click.option("--scope", type=click.Choice(SCOPES), default="read", show_default=True)
    def token_create(data_dir: Path | None, name: str, scope: str) -> None:
        """Create a token and print its secret (once: only its hash is kept)."""
        cli = _cli()
        config = cli._config(data_dir)
        me = f"local:{getpass.getuser()}"
        data = cli._api_or_local(config, "/v1/tokens", {"name": name, "scope": scope}, _token_errors(
            lambda _store: {"name": name, "scope": scope,
                            "token": _tokens(config).create(name, scope, created_by=me)}),
            method="POST")
        click.echo(data["token"])
        click.echo(f"token {data['name']!r} ({data['scope']}) created; it is shown only now: "
                   "hand it over securely (HOTSPOTS_API_TOKEN)", err=True)

    @token_group.command("list")
    @data_dir
    @fmt
    def token_list(data_dir: Path | None, fmt: str) -> None:
        """Every token's name, scope, creation time and creator (never the secret)."""
        cli = _cli()
        config = cli._config(data_dir)
        data = cli._api_or_local(config, "/v1/tokens", {},
                                 lambda _store: _tokens(config).listing())
        click.echo(cli.render(data, fmt))

    @token_group.command("revoke")
    @data_dir
    @click.argument("name")
    def token_revoke(data_dir: Path | None, name: str) -> None:
        """Revoke a token at once (its map sessions end with it)."""
        cli = _cli()
        config = cli._config(data_dir)
        cli._api_or_local(config, f"/v1/tokens/{name}", {}, _token_errors(
            lambda _store: _tokens(config).revoke(name)), method="DELETE")
        click.echo(f"token {name!r} revoked")

    @main.group("audit")
    def audit_group() -> None:
        """The audit log (admin): who consulted or disclosed what, when and why (DPA 2018 s.62)."""

    @audit_group.command("list")
    @data_dir
    @click.option("--since", type=day, default=None, help="From this London date.")
    @click.option("--until", type=day, default=None, help="Before this London date.")
    @click.option("--who", default=None, help="Only this token name (or local:<user>).")
    @click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
    @fmt
    def audit_list(data_dir: Path | None, since: Any, until: Any, who: str | None, limit: int,
                   fmt: str) -> None:
        """Audit entries, newest first."""
        from hotspots.periods import LONDON
        from sinks.audit import entries

        cli = _cli()
        start, end = ((datetime.combine(d.date(), time(0), tzinfo=LONDON) if d else None)
                      for d in (since, until))
        params: dict[str, Any] = {"limit": limit}
        params.update({k: v.isoformat() for k, v in (("since", start), ("until", end)) if v})
        if who:
            params["who"] = who
        data = cli._api_or_local(cli._config(data_dir), "/v1/audit", params,
                                 lambda store: entries(store, start, end, who, limit))
        if fmt != "json":  # one text column for the parameters
            data = [{**r, "params": json.dumps(r["params"], sort_keys=True)} for r in data]
        click.echo(cli.render(data, fmt))
