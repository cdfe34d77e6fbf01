"""API tokens: opaque random secrets of which the server keeps only SHA-256 hashes.

Scopes form a ladder, each including those below it: ``public`` < ``partner`` < ``read`` <
``admin``. ``read`` is the analyst tier (exact counts); ``partner`` and ``public`` may only ask
for releases under disclosure control (sinks.privacy); ``admin`` adds state changes, raw dead
letters, tokens and the audit log. A ladder rather than a set keeps "admin implies read" true
by construction.

A token carries 256 random bits, so a fast hash is enough: nothing can be guessed offline from
its SHA-256 (a slow password hash protects low-entropy secrets, which these are not). The
tokens file is JSON, mode 0600, rewritten atomically under a lock; the server re-reads it when
it changes, so `hotspots token create/revoke` take effect at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger("hotspots.tokens")

SCOPES: tuple[str, ...] = ("public", "partner", "read", "admin")
PREFIX = "hst_"  # recognisable by secret scanners and in logs that should not hold one
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
TOKENS_FILE = "api-tokens.json"
OPERATOR_FILE = "operator-token"


class TokenError(ValueError):
    """A token request that cannot be honoured (bad name or scope, duplicate, unknown)."""


def covers(scope: str, required: str) -> bool:
    """Whether a token of ``scope`` may do what needs ``required``."""
    return SCOPES.index(scope) >= SCOPES.index(required)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Token:
    name: str
    scope: str
    sha256: str
    created_at: str
    created_by: str

    def public(self) -> dict[str, str]:
        """What may be shown: never the hash."""
        return {"name": self.name, "scope": self.scope, "created_at": self.created_at,
                "created_by": self.created_by}


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a 0600 file (never readable by others, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class TokenFile:
    """The tokens file: hashes with a name and a scope. Thread-safe; reloads on change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._tokens: tuple[Token, ...] = ()

    def _read(self) -> tuple[Token, ...]:
        if not self.path.exists():
            return ()
        mode = self.path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("%s is readable by others (mode %o): chmod 600 it", self.path, mode)
        doc = json.loads(self.path.read_text(encoding="utf-8"))
        return tuple(Token(**t) for t in doc.get("tokens", []))

    def tokens(self) -> tuple[Token, ...]:
        try:
            st = self.path.stat()
            stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._tokens, self._stamp = self._read(), stamp
            return self._tokens

    def verify(self, raw: str) -> Token | None:
        """The token whose secret is ``raw``, or None."""
        return self.by_hash(hash_token(raw))

    def by_hash(self, digest: str) -> Token | None:
        """The token with this hash (sessions re-check it, so a revocation ends them). Every
        hash is compared in constant time and the loop never stops early, so the timing says
        nothing about near misses."""
        found = None
        for token in self.tokens():
            if hmac.compare_digest(token.sha256, digest):
                found = token
        return found

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(f".{self.path.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _rewrite(self, change: Callable[[list[Token]], list[Token]]) -> None:
        with self._locked():
            tokens = change(list(self._read()))
            _write_private(self.path, json.dumps(
                {"version": 1, "tokens": [asdict(t) for t in tokens]}, indent=2) + "\n")

    def create(self, name: str, scope: str, created_by: str) -> str:
        """Add a token; return the secret, which is shown once and stored nowhere."""
        if not NAME.match(name):
            raise TokenError(f"token name {name!r}: 1-64 letters, digits, and _ . @ - "
                             "(starting with a letter or digit)")
        if scope not in SCOPES:
            raise TokenError(f"scope {scope!r} unknown; choose one of {SCOPES}")
        raw = new_token()
        token = Token(name, scope, hash_token(raw), datetime.now(UTC).isoformat(timespec="seconds"),
                      created_by)

        def add(tokens: list[Token]) -> list[Token]:
            if any(t.name == name for t in tokens):
                raise TokenError(f"a token named {name!r} exists: revoke it first or choose another")
            return [*tokens, token]

        self._rewrite(add)
        return raw

    def revoke(self, name: str) -> None:
        def drop(tokens: list[Token]) -> list[Token]:
            kept = [t for t in tokens if t.name != name]
            if len(kept) == len(tokens):
                raise TokenError(f"no token named {name!r}")
            return kept

        self._rewrite(drop)

    def listing(self) -> list[dict[str, str]]:
        return [t.public() for t in self.tokens()]


def ensure_operator_token(tokens: TokenFile, run_dir: Path, user: str) -> Path | None:
    """On a store's first start (no tokens file yet), make an admin token for the operator
    who started it and write it to ``run_dir/operator-token`` (0600), where the CLI finds it.
    Returns that path, or None when tokens already exist (revoked ones are not recreated)."""
    if tokens.path.exists():
        return None
    raw = tokens.create(f"operator-{re.sub(r'[^A-Za-z0-9_.@-]', '_', user)[:50] or 'local'}",
                        "admin", created_by="first start")
    path = run_dir / OPERATOR_FILE
    _write_private(path, raw + "\n")
    return path


def client_token(data_dir: Path, explicit: str | None = None) -> str | None:
    """The token the CLI sends: ``explicit`` (HOTSPOTS_API_TOKEN), else the operator's file."""
    if explicit:
        return explicit.strip()
    try:
        return (data_dir / "run" / OPERATOR_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None
