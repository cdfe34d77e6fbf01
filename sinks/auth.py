"""Access control for the HTTP API: bearer tokens with scopes, map sessions, and the policy.

The policy is default-deny and lives here, not in the routes: ``AUTHORIZE`` is an app-wide
dependency, so a route added later (by any router) is protected without code of its own.

- Open: ``/`` (the map page holds no data), ``/static``, ``/health`` (container and stack
  health checks), ``/metrics`` (Prometheus: process counters by stage, kind and reason, no
  locations or records; restrict it at the network like the worker's exporter) and
  ``/v1/session`` (sign-in and sign-out check the token themselves). FastAPI's ``/docs`` and
  ``/openapi.json`` describe the API and hold no data.
- ``admin``: every method other than GET/HEAD (state changes such as POST /v1/ehsa/update),
  ``/v1/dlq`` (refused records verbatim, which may hold the personal data the contract refused),
  ``/v1/audit`` and ``/v1/tokens``.
- Routes with a ``tier`` query parameter: the tier asked for decides (sinks.privacy.TIERS:
  analyst needs ``read``, partner ``partner``, public ``public``).
- Everything else: ``read``.

No credentials or an unknown token: 401 with ``WWW-Authenticate: Bearer``. A valid token whose
scope is too low: 403 (RFC 6750 ``insufficient_scope``). Audited routes also need a
justification (``X-Justification``, or the one given at sign-in): 400 without one.

Browsers cannot put a header on an EventSource, so the map signs in: POST /v1/session with a
token and a justification sets an HttpOnly, SameSite=Strict cookie naming a server-side
session. A session carries at most ``read`` (the map only reads), ends after
HOTSPOTS_SESSION_HOURS or at a restart, and ends at once when its token is revoked.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response, Security
from fastapi.routing import APIRoute
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from hotspots.settings import SinkSettings
from hotspots.tokens import Token, TokenError, TokenFile, covers
from sinks.audit import (
    CONTEXT,
    AuditLog,
    AuditMiddleware,
    RequestContext,
    Scope,
    audit_router,
    clean_text,
)
from sinks.privacy import TIERS
from sinks.store import Store

COOKIE = "hotspots_session"
OPEN = "open"
OPEN_PATHS = frozenset({"/", "/health", "/metrics", "/v1/session"})
ADMIN_PATHS = ("/v1/dlq", "/v1/audit", "/v1/tokens")
UNAUDITED = frozenset({"/v1/stream"})  # "something changed" notices: no data, reconnects often
SAFE_METHODS = frozenset({"GET", "HEAD"})


def requirement(path: str, method: str, tiered: bool = False, tier: str | None = None) -> str:
    """The scope a route needs (``OPEN`` for none); ``path`` is the route's template."""
    if path in OPEN_PATHS or path == "/static" or path.startswith("/static/"):
        return OPEN
    if method not in SAFE_METHODS or any(path == p or path.startswith(p + "/") for p in ADMIN_PATHS):
        return "admin"
    if tiered:
        rule = TIERS.get(tier or "analyst")
        return rule.scope if rule else "read"  # an unknown tier is refused by the route (422)
    return "read"


def _tiered(route: Any) -> bool:
    return isinstance(route, APIRoute) and any(p.name == "tier" for p in route.dependant.query_params)


def route_path(scope: Scope) -> str:
    """The request's path within the app (behind a proxy's root_path too). The policy matches
    concrete paths, so routers included with a prefix are judged by their full path."""
    path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
    return path[len(root):] if root and path.startswith(root + "/") else path


def audited(scope: Scope) -> bool:
    """Whether a finished request goes into the audit log: protected API routes (granted or
    refused) and sign-in/out; not static files, docs, health, metrics or 404s."""
    if not isinstance(scope.get("route"), APIRoute):
        return False
    path = route_path(scope)
    if path == "/v1/session":
        return scope["method"] not in SAFE_METHODS
    return path not in UNAUDITED and requirement(path, scope["method"]) != OPEN


@dataclass(frozen=True)
class Principal:
    name: str
    scope: str
    via: str  # "token" or "session"
    justification: str = ""


@dataclass(frozen=True)
class Session:
    token_sha256: str
    name: str
    scope: str
    justification: str
    expires: datetime


class Sessions:
    """Map sessions in memory, keyed by the SHA-256 of their id (a lookup by a hash of a
    256-bit secret leaks nothing through timing)."""

    def __init__(self, hours: float, limit: int = 1000) -> None:
        self.hours, self.limit = hours, limit
        self._lock = threading.Lock()
        self._by_hash: dict[str, Session] = {}

    @staticmethod
    def _key(sid: str) -> str:
        return hashlib.sha256(sid.encode("utf-8")).hexdigest()

    def open(self, token: Token, justification: str) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        scope = token.scope if covers("read", token.scope) else "read"
        session = Session(token.sha256, token.name, scope, justification,
                          now + timedelta(hours=self.hours))
        with self._lock:
            self._by_hash = {k: s for k, s in self._by_hash.items() if s.expires > now}
            if len(self._by_hash) >= self.limit:  # drop the oldest rather than grow unbounded
                oldest = min(self._by_hash, key=lambda k: self._by_hash[k].expires)
                del self._by_hash[oldest]
            self._by_hash[self._key(sid)] = session
        return sid, session

    def get(self, sid: str) -> Session | None:
        with self._lock:
            session = self._by_hash.get(self._key(sid))
            if session is not None and session.expires <= datetime.now(UTC):
                del self._by_hash[self._key(sid)]
                return None
            return session

    def close(self, sid: str) -> None:
        with self._lock:
            self._by_hash.pop(self._key(sid), None)


class Access:
    """The tokens file and the sessions: who a request is."""

    def __init__(self, tokens: TokenFile, session_hours: float = 8.0) -> None:
        self.tokens = tokens
        self.sessions = Sessions(session_hours)

    @classmethod
    def from_settings(cls, settings: SinkSettings) -> Access:
        return cls(TokenFile(settings.tokens_path), settings.session_hours)

    def session(self, sid: str | None) -> Session | None:
        """The live session ``sid`` names; None when unknown, expired or its token revoked."""
        session = self.sessions.get(sid) if sid else None
        if session is not None and self.tokens.by_hash(session.token_sha256) is None:
            self.sessions.close(sid or "")
            return None
        return session

    def principal(self, bearer: HTTPAuthorizationCredentials | None,
                  cookie: str | None) -> Principal:
        """Who is asking: a bearer token first, else the session cookie; 401 otherwise."""
        if bearer is not None:
            token = self.tokens.verify(bearer.credentials)
            if token is None:
                raise unauthorized("invalid_token", "the bearer token is unknown or was revoked")
            return Principal(token.name, token.scope, "token")
        session = self.session(cookie)
        if session is not None:
            return Principal(session.name, session.scope, "session", session.justification)
        raise unauthorized(None, "sign in: send 'Authorization: Bearer <token>' (create one with "
                                 "`hotspots token create`), or sign in to the map at /")


def unauthorized(error: str | None, detail: str) -> HTTPException:
    challenge = 'Bearer realm="hotspots"' + (f', error="{error}"' if error else "")
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": challenge})


BEARER = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="An API token: `hotspots token create --name N --scope S`.")
SESSION_COOKIE = APIKeyCookie(name=COOKIE, auto_error=False, scheme_name="session",
                              description="The map's session (read scope), set by POST /v1/session.")


def authorize(request: Request,
              bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
              cookie: Annotated[str | None, Security(SESSION_COOKIE)] = None) -> None:
    """The app-wide check (see the module docstring). Leaves who, scope and why in the request
    scope for the audit log, also when it refuses."""
    route = request.scope.get("route")
    path = route_path(request.scope)
    need = requirement(path, request.method, _tiered(route), request.query_params.get("tier"))
    if need == OPEN:
        return
    access: Access = request.app.state.access
    who = access.principal(bearer, cookie)
    why = who.justification or clean_text(request.headers.get("x-justification"))
    request.scope[CONTEXT] = RequestContext(who.name, who.scope, who.via, why,
                                            clean_text(request.headers.get("x-recipient")))
    if not covers(who.scope, need):
        allowed = [f"tier={t}" for t, rule in TIERS.items() if covers(who.scope, rule.scope)]
        hint = f"; ask with {' or '.join(allowed)}" if _tiered(route) and allowed else ""
        raise HTTPException(
            status_code=403,
            detail=f"token {who.name!r} has scope {who.scope!r}; this needs {need!r}{hint}",
            headers={"WWW-Authenticate": f'Bearer realm="hotspots", error="insufficient_scope", '
                                         f'scope="{need}"'})
    if not why and path not in UNAUDITED:
        raise HTTPException(status_code=400, detail=(
            "say why: send an X-Justification header (e.g. a case or tasking reference); it is "
            "recorded with who and when in the audit log (DPA 2018 s.62)"))


AUTHORIZE = [Security(authorize)]


# --- sign-in for the map, and token management ---------------------------------------------

class SignIn(BaseModel):
    token: str = Field(min_length=1, max_length=200)
    justification: str = Field(min_length=1, max_length=2000)


def _session_view(session: Session | None) -> dict[str, Any]:
    if session is None:
        return {"authenticated": False}
    return {"authenticated": True, "name": session.name, "scope": session.scope,
            "justification": session.justification,
            "expires": session.expires.isoformat(timespec="seconds")}


def session_router(access: Access) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/session")
    def get_session(request: Request) -> Any:
        """Who the map is signed in as (``{"authenticated": false}`` when it is not)."""
        return _session_view(access.session(request.cookies.get(COOKIE)))

    @router.post("/v1/session")
    def sign_in(body: SignIn, request: Request, response: Response) -> Any:
        """Exchange a token and a justification for the map's session cookie (HttpOnly,
        SameSite=Strict). The map shows exact counts, so the token needs ``read``."""
        token = access.tokens.verify(body.token.strip())
        why = clean_text(body.justification)
        if token is not None:
            request.scope[CONTEXT] = RequestContext(token.name, token.scope, "session", why, "")
        if token is None:
            raise unauthorized("invalid_token", "that token is unknown or was revoked")
        if not covers(token.scope, "read"):
            raise HTTPException(status_code=403, detail=(
                f"token {token.name!r} has scope {token.scope!r}; the map shows exact counts and "
                "needs 'read'"))
        if not why:
            raise HTTPException(status_code=400, detail="give a justification")
        sid, session = access.sessions.open(token, why)
        response.set_cookie(COOKIE, sid, max_age=int(access.sessions.hours * 3600), path="/",
                            httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return _session_view(session)

    @router.delete("/v1/session")
    def sign_out(request: Request, response: Response) -> Any:
        """End the map's session and clear its cookie."""
        sid = request.cookies.get(COOKIE)
        session = access.session(sid)
        if session is not None:
            request.scope[CONTEXT] = RequestContext(session.name, session.scope, "session",
                                                    session.justification, "")
            access.sessions.close(sid or "")
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return {"authenticated": False}

    return router


def tokens_router(access: Access) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/tokens")
    def list_tokens() -> Any:
        """Every token's name, scope and origin (never the secret or its hash)."""
        return access.tokens.listing()

    @router.post("/v1/tokens")
    def create_token(name: str, scope: str, request: Request) -> Any:
        """A new token; its secret is in this response only."""
        ctx: RequestContext | None = request.scope.get(CONTEXT)
        try:
            raw = access.tokens.create(name, scope, created_by=ctx.who if ctx else "")
        except TokenError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        return {"name": name, "scope": scope, "token": raw}

    @router.delete("/v1/tokens/{name}")
    def revoke_token(name: str) -> Any:
        """Revoke a token; its map sessions end with it."""
        try:
            access.tokens.revoke(name)
        except TokenError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        return {"revoked": name}

    return router


def _document(api: FastAPI) -> None:
    """State each operation's requirement in the OpenAPI document: open ones have no security,
    the others name their scope (x-hotspots-scope) and the justification header."""
    build = api.openapi
    justification = {"name": "X-Justification", "in": "header", "required": True,
                     "description": "Why you are asking (recorded in the audit log; the map's "
                                    "session carries the one given at sign-in).",
                     "schema": {"type": "string", "maxLength": 500}}
    recipient = {"name": "X-Recipient", "in": "header", "required": False,
                 "description": "Who will receive what is disclosed, when not the caller "
                                "(recorded in the audit log).", "schema": {"type": "string"}}

    def openapi() -> dict[str, Any]:
        if api.openapi_schema:
            return api.openapi_schema
        spec = build()
        for path, operations in spec.get("paths", {}).items():
            for method, op in operations.items():
                tiered = any(p.get("name") == "tier" and p.get("in") == "query"
                             for p in op.get("parameters", []))
                need = requirement(path, method.upper(), tiered)
                if need == OPEN:
                    op["security"] = []
                    continue
                op["x-hotspots-scope"] = ({t: r.scope for t, r in TIERS.items()} if tiered
                                          and method.upper() in SAFE_METHODS else need)
                if path not in UNAUDITED:
                    op.setdefault("parameters", []).extend([justification, recipient])
        api.openapi_schema = spec
        return spec

    api.openapi = openapi  # type: ignore[method-assign]


def install_access(api: FastAPI, store: Store | None, access: Access | None = None,
                   audit: AuditLog | None = None) -> None:
    """Sign-in, tokens, the audit log and its middleware, and the documented policy. The app
    must have been made with ``dependencies=AUTHORIZE``. By default the tokens file and the
    retention come from SinkSettings; with no store (the OpenAPI document) nothing is audited."""
    settings = SinkSettings()
    if audit is None and store is not None:
        audit = AuditLog(store, settings.audit_retention_days)
    access = access or Access.from_settings(settings)
    api.state.access = access
    api.state.audit = audit
    api.include_router(session_router(access))
    api.include_router(tokens_router(access))
    api.include_router(audit_router(store, audit))
    if audit is not None:
        api.add_middleware(AuditMiddleware, audit=audit, audited=audited)  # type: ignore[arg-type]
    _document(api)
