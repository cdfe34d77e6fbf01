"""The CLI's side of access control and the audit log.

Through the API, the CLI sends a bearer token (HOTSPOTS_API_TOKEN, else the operator's
``<data_dir>/run/operator-token``) and the justification; the API records the query. With the
stack down the CLI opens the store itself and records the query there, as ``local:<os user>``:
whoever can open the data directory holds every right already, so no token is asked for.
"""

from __future__ import annotations

import getpass
import json
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import click

from hotspots.settings import ClientSettings, SinkSettings
from hotspots.tokens import client_token

T = TypeVar("T")
WHY, RECIPIENT = "hotspots.justification", "hotspots.recipient"
AUDIT_OPTIONS = ("--justification", "--recipient")
_HEADER_SAFE = " !#$&'()*+,-./:;=?@[]_~"  # kept readable; anything else is percent-encoded


class AuditedGroup(click.Group):
    """A group that accepts the audit options anywhere on the command line (``hotspots query
    summary ... --justification "case 123"``), not only before the command: they are moved to
    the front before click parses, so every command, present or future, takes them."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        front: list[str] = []
        rest: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                rest += args[i:]
                break
            if arg.split("=", 1)[0] in AUDIT_OPTIONS:
                step = 1 if "=" in arg else 2
                front += args[i:i + step]
                i += step
                continue
            rest.append(arg)
            i += 1
        return super().parse_args(ctx, front + rest)


def remember(ctx: click.Context, justification: str | None, recipient: str | None) -> None:
    ctx.meta[WHY] = (justification or "").strip() or None
    ctx.meta[RECIPIENT] = (recipient or "").strip() or None


def context() -> tuple[str | None, str | None, str]:
    """(justification, recipient, command) of the command being run."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return ClientSettings().justification, None, ""
    why = ctx.meta.get(WHY) or (ClientSettings().justification or "").strip() or None
    return why, ctx.meta.get(RECIPIENT), " ".join(ctx.command_path.split()[1:])


MISSING = ("say why you are querying: pass --justification TEXT (e.g. a case or tasking "
           "reference) or set HOTSPOTS_JUSTIFICATION. It is recorded with who and when in the "
           "audit log (DPA 2018 s.62).")


def headers(data_dir: Path, justification: str, recipient: str | None) -> dict[str, str]:
    sent = {"X-Justification": quote(justification, safe=_HEADER_SAFE)}
    token = client_token(data_dir, _secret(ClientSettings().api_token))
    if token:
        sent["Authorization"] = f"Bearer {token}"
    if recipient:
        sent["X-Recipient"] = quote(recipient, safe=_HEADER_SAFE)
    return sent


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def refused(status: int, detail: str, data_dir: Path) -> str:
    """The message for a refusal from the API; for a 401, with what to do about it."""
    if status == 401:
        return (f"{detail}\nthe API wants a token: set HOTSPOTS_API_TOKEN (an admin creates one "
                f"with `hotspots token create`), or run as the operator who started the stack "
                f"(its token is {data_dir / 'run' / 'operator-token'})")
    return detail


def run_audited(store: Any, data_dir: Path, command: str, params: dict[str, Any],
                justification: str, recipient: str | None, run: Callable[[], T]) -> T:
    """Run a query on the store opened directly and record it in the store's audit log,
    whatever the outcome (exit code 2, a refused argument, is recorded as 400)."""
    from sinks.audit import AuditEntry, clean_text, write

    status = 200
    try:
        return run()
    except SystemExit as exc:
        status = 200 if exc.code in (0, None) else 400 if exc.code == 2 else 500
        raise
    except BaseException:
        status = 500
        raise
    finally:
        entry = AuditEntry(
            at=datetime.now(UTC), who=f"local:{getpass.getuser()}", scope="admin", via="cli",
            action=f"cli {command}".strip(), params=json.dumps(params, default=str, sort_keys=True),
            justification=clean_text(justification), recipient=clean_text(recipient),
            client=socket.gethostname(), status=status)
        write(store, SinkSettings(data_dir=data_dir).audit_retention_days, [entry])
