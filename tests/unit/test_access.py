"""Access control: tokens and their file, the scope ladder on every route (401 v 403), map
sessions, the OpenAPI security scheme, and the CLI against a real HTTP server in this process.
Queries look at 2092, which holds no data."""

from __future__ import annotations

import json
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from click.testing import CliRunner

from hotspots import cli, stack
from hotspots.tokens import SCOPES, TokenError, TokenFile, covers, ensure_operator_token
from sinks.api import build_api
from sinks.auth import OPEN, Access, Sessions, requirement

SUMMARY = {"from": "2092-01-01", "to": "2092-01-31"}


# --- tokens ------------------------------------------------------------------------------

def test_the_file_keeps_hashes_only_readable_by_its_owner(tmp_path) -> None:
    file = TokenFile(tmp_path / "run" / "api-tokens.json")
    secret = file.create("alice", "read", "test")
    assert secret.startswith("hst_") and len(secret) > 40
    text = file.path.read_text()
    assert secret not in text and secret[4:] not in text
    assert stat.S_IMODE(file.path.stat().st_mode) == 0o600
    assert file.verify(secret).name == "alice"  # type: ignore[union-attr]
    assert file.verify(secret + "x") is None and file.verify("") is None
    assert file.listing() == [{"name": "alice", "scope": "read", "created_at": file.listing()[0][
        "created_at"], "created_by": "test"}]


def test_create_and_revoke_are_checked(tmp_path) -> None:
    file = TokenFile(tmp_path / "api-tokens.json")
    file.create("bob", "admin", "test")
    for name, scope, message in [("bob", "read", "exists"), ("no spaces", "read", "token name"),
                                 ("", "read", "token name"), ("carol", "root", "scope")]:
        with pytest.raises(TokenError, match=message):
            file.create(name, scope, "test")
    with pytest.raises(TokenError, match="no token named"):
        file.revoke("nobody")
    file.revoke("bob")
    assert file.listing() == []


def test_the_server_sees_changes_made_by_another_process(tmp_path) -> None:
    path = tmp_path / "api-tokens.json"
    server, cli_side = TokenFile(path), TokenFile(path)
    assert server.verify("hst_nothing") is None
    secret = cli_side.create("dave", "partner", "test")
    assert server.verify(secret).scope == "partner"  # type: ignore[union-attr]
    cli_side.revoke("dave")
    assert server.verify(secret) is None


def test_the_operator_token_is_made_once(tmp_path) -> None:
    file = TokenFile(tmp_path / "run" / "api-tokens.json")
    path = ensure_operator_token(file, tmp_path / "run", "analyst one")
    assert path is not None and stat.S_IMODE(path.stat().st_mode) == 0o600
    token = file.verify(path.read_text().strip())
    assert token is not None and (token.name, token.scope) == ("operator-analyst_one", "admin")
    assert ensure_operator_token(file, tmp_path / "run", "analyst one") is None
    file.revoke(token.name)  # a revoked operator token is not brought back
    assert ensure_operator_token(file, tmp_path / "run", "analyst one") is None
    assert file.listing() == []


def test_the_scope_ladder() -> None:
    assert SCOPES == ("public", "partner", "read", "admin")
    assert covers("admin", "read") and covers("read", "partner") and covers("partner", "public")
    assert not covers("read", "admin") and not covers("partner", "read")


# --- the policy on every route -------------------------------------------------------------

def routes() -> list[tuple[str, str]]:
    """Every operation: the documented ones, and the two kept out of the document."""
    spec = build_api(None, lambda: {"ok": True}).openapi()  # type: ignore[arg-type]
    documented = [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops]
    return [("GET", "/"), ("GET", "/metrics"), *documented]


def test_the_policy_names_every_route() -> None:
    found = {(m, p): requirement(p, m) for m, p in routes()}
    assert {k for k, v in found.items() if v == OPEN} == {
        ("GET", "/"), ("GET", "/health"), ("GET", "/metrics"), ("GET", "/v1/session"),
        ("POST", "/v1/session"), ("DELETE", "/v1/session")}
    for admin in [("GET", "/v1/dlq"), ("GET", "/v1/audit"), ("GET", "/v1/tokens"),
                  ("POST", "/v1/tokens"), ("DELETE", "/v1/tokens/{name}"),
                  ("POST", "/v1/ehsa/update")]:
        assert found[admin] == "admin", admin
    assert {v for v in found.values()} == {OPEN, "read", "admin"}
    # Tiered routes: the tier asked for decides.
    assert [requirement("/v1/cells", "GET", True, t) for t in (None, "analyst", "partner", "public")
            ] == ["read", "read", "partner", "public"]


def _path(template: str) -> str:
    return template.replace("{name}", "x").replace("{cell}", "88194e1415fffff")


def test_every_protected_route_refuses_no_token_401_and_a_low_scope_403(api_client) -> None:
    anonymous = api_client()
    anonymous.headers.pop("Authorization")
    public = api_client(token="public")
    for method, path in routes():
        need = requirement(path, method)
        if need == OPEN:
            continue
        got = anonymous.request(method, _path(path))
        assert got.status_code == 401, (method, path, got.text)
        assert got.headers["www-authenticate"].startswith("Bearer"), (method, path)
        got = public.request(method, _path(path))
        assert got.status_code == 403, (method, path, got.text)
        assert 'error="insufficient_scope"' in got.headers["www-authenticate"]
    bad = api_client()
    bad.headers["Authorization"] = "Bearer hst_not-a-token"
    got = bad.get("/v1/summary", params=SUMMARY)
    assert got.status_code == 401 and 'error="invalid_token"' in got.headers["www-authenticate"]


def test_scopes_and_justification(api_client) -> None:
    read, admin = api_client(token="read"), api_client(token="admin")
    assert read.get("/v1/summary", params=SUMMARY).status_code == 200
    assert read.get("/v1/dlq").status_code == 403 and admin.get("/v1/dlq").status_code == 200
    assert read.get("/v1/tokens").status_code == 403
    assert read.post("/v1/ehsa/update", params={"week": "2092-W05", "kind": "arrest"}
                     ).status_code == 403
    assert api_client(token="partner").get("/v1/summary", params=SUMMARY).status_code == 403
    silent = api_client(token="read")
    silent.headers.pop("X-Justification")
    got = silent.get("/v1/summary", params=SUMMARY)
    assert got.status_code == 400 and "X-Justification" in got.json()["detail"]
    silent.headers["X-Justification"] = "   "
    assert silent.get("/v1/summary", params=SUMMARY).status_code == 400
    open_ = api_client()
    open_.headers.clear()
    assert [open_.get(p).status_code for p in ("/health", "/metrics", "/", "/static/style.css",
                                               "/openapi.json")] == [200] * 5


def test_a_route_added_later_is_protected_too(store, tokens, audit_log) -> None:
    from fastapi.testclient import TestClient

    app = build_api(store, lambda: {"ok": True}, access=Access(TokenFile(Path(tokens["file"]))),
                    audit=audit_log)

    @app.get("/v1/newly-added")
    def newly_added() -> dict[str, bool]:
        return {"ok": True}

    client = TestClient(app)
    assert client.get("/v1/newly-added").status_code == 401
    assert client.get("/v1/newly-added", headers={"Authorization": f"Bearer {tokens['read']}",
                                                  "X-Justification": "t"}).json() == {"ok": True}


# --- map sessions ----------------------------------------------------------------------------

def test_sign_in_sets_a_strict_http_only_cookie(api_client, tokens) -> None:
    browser = api_client()
    browser.headers.clear()
    assert browser.get("/v1/session").json() == {"authenticated": False}
    got = browser.post("/v1/session", json={"token": tokens["admin"], "justification": "op X"})
    assert got.status_code == 200, got.text
    cookie = got.headers["set-cookie"]
    for attribute in ("hotspots_session=", "HttpOnly", "SameSite=strict", "Path=/", "Max-Age="):
        assert attribute in cookie, cookie
    assert "Secure" not in cookie  # plain http here; set behind https
    who = browser.get("/v1/session").json()
    assert (who["name"], who["scope"], who["justification"]) == ("unit-admin", "read", "op X")
    # The session carries the justification, and at most read scope: the map only reads.
    assert browser.get("/v1/summary", params=SUMMARY).status_code == 200
    assert browser.get("/v1/dlq").status_code == 403
    assert browser.post("/v1/ehsa/update", params={"week": "2092-W05", "kind": "arrest"}
                        ).status_code == 403
    browser.delete("/v1/session")
    assert browser.get("/v1/summary", params=SUMMARY).status_code == 401


def test_sign_in_refusals(api_client, tokens) -> None:
    browser = api_client()
    browser.headers.clear()
    assert browser.post("/v1/session", json={"token": "hst_x", "justification": "y"}
                        ).status_code == 401
    got = browser.post("/v1/session", json={"token": tokens["partner"], "justification": "y"})
    assert got.status_code == 403 and "read" in got.json()["detail"]
    assert browser.post("/v1/session", json={"token": tokens["read"], "justification": ""}
                        ).status_code == 422
    assert browser.post("/v1/session", json={"token": tokens["read"], "justification": "\x00"}
                        ).status_code == 400
    assert browser.get("/v1/summary", params=SUMMARY).status_code == 401


def test_revoking_a_token_ends_its_sessions(store, tmp_path, audit_log) -> None:
    from fastapi.testclient import TestClient

    file = TokenFile(tmp_path / "api-tokens.json")
    secret = file.create("temp", "read", "test")
    browser = TestClient(build_api(store, lambda: {"ok": True}, access=Access(file),
                                   audit=audit_log))
    browser.post("/v1/session", json={"token": secret, "justification": "z"})
    assert browser.get("/v1/summary", params=SUMMARY).status_code == 200
    file.revoke("temp")
    assert browser.get("/v1/summary", params=SUMMARY).status_code == 401
    assert browser.get("/v1/session").json() == {"authenticated": False}


def test_sessions_expire() -> None:
    from hotspots.tokens import Token

    sessions = Sessions(hours=1 / 3_600_000)  # a millisecond
    sid, session = sessions.open(Token("t", "admin", "0" * 64, "", ""), "why")
    assert session.scope == "read"
    time.sleep(0.01)
    assert sessions.get(sid) is None
    small = Sessions(hours=1, limit=2)
    ids = [small.open(Token("t", "read", "0" * 64, "", ""), "w")[0] for _ in range(3)]
    assert small.get(ids[0]) is None and small.get(ids[2]) is not None


# --- OpenAPI ---------------------------------------------------------------------------------

def test_openapi_shows_the_scheme_and_each_requirement() -> None:
    spec = build_api(None, lambda: {"ok": True}).openapi()  # type: ignore[arg-type]
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["session"] == {**schemes["session"], "type": "apiKey", "in": "cookie",
                                  "name": "hotspots_session"}
    paths = spec["paths"]
    assert paths["/health"]["get"]["security"] == []
    summary = paths["/v1/summary"]["get"]
    assert {"bearer": []} in summary["security"] and summary["x-hotspots-scope"] == "read"
    assert any(p["name"] == "X-Justification" and p["required"] for p in summary["parameters"])
    assert paths["/v1/dlq"]["get"]["x-hotspots-scope"] == "admin"
    assert paths["/v1/cells"]["get"]["x-hotspots-scope"] == {
        "analyst": "read", "partner": "partner", "public": "public"}


# --- the CLI against a real server -------------------------------------------------------------

_free_port = stack.free_port


@pytest.fixture(scope="module")
def server(store, tokens, audit_log, tmp_path_factory) -> Iterator[Path]:
    """The real API over HTTP in a thread; yields a data dir whose stack.json points at it."""
    port = _free_port()
    app = build_api(store, lambda: {"ok": True}, access=Access(TokenFile(Path(tokens["file"]))),
                    audit=audit_log)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.05)
    data_dir = tmp_path_factory.mktemp("cli-stack")
    stack.StackConfig(str(data_dir), 1, 1, port, "unit", 1).save()
    yield data_dir
    srv.should_exit = True
    thread.join(timeout=30)


def hotspots(data_dir: Path, *args: str, env: dict[str, str | None] | None = None) -> tuple[int, str]:
    base = {"HOTSPOTS_API_TOKEN": None, "HOTSPOTS_JUSTIFICATION": None}
    got = CliRunner().invoke(cli.main, [*args, "--data-dir", str(data_dir)],
                             env={**base, **(env or {})})
    return got.exit_code, got.output


def summary(data_dir: Path, *extra: str, env: dict[str, str | None] | None = None) -> tuple[int, str]:
    return hotspots(data_dir, "query", "summary", "--from", SUMMARY["from"], "--to", SUMMARY["to"],
                    "--format", "json", *extra, env=env)


def test_the_cli_sends_its_token_and_reason(server, tokens, api_client) -> None:
    code, out = summary(server, "--justification", "opération Æ-12 (case 7)",
                        env={"HOTSPOTS_API_TOKEN": tokens["read"]})
    assert code == 0, out
    assert json.loads(out)["arrests"] == 0
    code, out = summary(server, env={"HOTSPOTS_API_TOKEN": tokens["read"],
                                     "HOTSPOTS_JUSTIFICATION": "from the environment"})
    assert code == 0, out
    wanted = {"opération Æ-12 (case 7)", "from the environment"}
    for _ in range(50):  # the server records an entry just after its response has gone
        entries = api_client().get("/v1/audit", params={"who": "unit-read", "limit": 50}).json()
        if wanted <= {e["justification"] for e in entries if e["action"] == "GET /v1/summary"}:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"not in the audit log: {wanted}")


def test_the_cli_refuses_without_a_reason_or_a_token(server, tokens) -> None:
    code, out = summary(server, env={"HOTSPOTS_API_TOKEN": tokens["read"]})
    assert code == 2 and "--justification" in out and "HOTSPOTS_JUSTIFICATION" in out
    code, out = summary(server, "--justification", "x")
    assert code == 1 and "HOTSPOTS_API_TOKEN" in out and "operator-token" in out
    code, out = summary(server, "--justification", "x", env={"HOTSPOTS_API_TOKEN": tokens["partner"]})
    assert code == 1 and "'partner'" in out and "needs 'read'" in out


def test_the_cli_reads_the_operator_token_file(server, tokens) -> None:
    path = server / "run" / "operator-token"
    path.write_text(tokens["read"] + "\n")
    try:
        code, out = summary(server, "--justification", "operator")
    finally:
        path.unlink()
    assert code == 0, out


def test_token_commands_through_the_api(server, tokens) -> None:
    admin = {"HOTSPOTS_API_TOKEN": tokens["admin"], "HOTSPOTS_JUSTIFICATION": "onboarding"}
    code, out = hotspots(server, "token", "create", "--name", "council-csp", "--scope", "partner",
                         env=admin)
    assert code == 0, out
    secret = out.splitlines()[0]
    assert secret.startswith("hst_") and "shown only now" in out
    code, out = hotspots(server, "token", "list", "--format", "json", env=admin)
    listed = {t["name"]: t for t in json.loads(out)}
    assert listed["council-csp"]["scope"] == "partner"
    assert listed["council-csp"]["created_by"] == "unit-admin"
    assert all("sha256" not in t for t in listed.values())
    code, out = summary(server, "--justification", "x", env={"HOTSPOTS_API_TOKEN": secret})
    assert code == 1 and "needs 'read'" in out  # a partner token: tiers only
    code, out = hotspots(server, "token", "create", "--name", "council-csp", env=admin)
    assert code == 1 and "exists" in out
    code, out = hotspots(server, "token", "revoke", "council-csp", env=admin)
    assert code == 0 and "revoked" in out
    code, out = summary(server, "--justification", "x", env={"HOTSPOTS_API_TOKEN": secret})
    assert code == 1 and "unknown or was revoked" in out
    code, out = hotspots(server, "token", "list", env={**admin, "HOTSPOTS_API_TOKEN": tokens["read"]})
    assert code == 1 and "needs 'admin'" in out
