"""`python -m hotspots.compose_check FILE`: check a compose file without a Docker engine.

Two layers: the Compose Specification JSON schema (vendored, see ``schemas/README.md``),
then this project's deployment rules: every image pinned, every published port on
127.0.0.1 only, a healthcheck on every long-running service, volumes named and declared,
``depends_on`` with conditions. And for the product's settings: a file setting
(HOTSPOTS_BOUNDARIES) points into a read-only mount of its service, a webhook URL comes with
its signing secret, and secrets are taken from the environment, not written in the file.
Exits 1 listing every problem, 0 when the file is clean.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError, best_match

LOOPBACK = "127.0.0.1"
ONE_SHOT = "service_completed_successfully"
# Settings that name a file the service reads: it must be in a read-only mount.
FILE_SETTINGS = ("HOTSPOTS_BOUNDARIES",)
# Secrets: only ever ${VAR}, ${VAR:-} or ${VAR:?message}, never a value or default in the file.
SECRETS = ("HOTSPOTS_WEBHOOK_SECRET", "HOTSPOTS_SASL_PASSWORD")
_FROM_ENV = re.compile(r"\$\{\w+(?::?-|:?\?[^}]*)?\}|\$\w+")

# $$ | ${VAR} | ${VAR:-default} and the other ${VAR<op>arg} forms | $VAR
_VAR = re.compile(r"\$(?:(\$)|\{(\w+)(?:(:?)([-?+])([^}]*))?\}|(\w+))")


class ComposeError(ValueError):
    pass


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, as Compose does (PyYAML keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ComposeError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable substitution on every string value, so the rules see final values."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(6)
        colon, op, arg = m.group(3), m.group(4), m.group(5) or ""
        current = env.get(name)
        if current is None or (colon and current == ""):  # unset (or empty, with a colon)
            if op == "?":
                raise ComposeError(f"required variable {name} is not set: {arg}")
            return arg if op == "-" else ""
        return arg if op == "+" else current

    return _VAR.sub(sub, value)


@cache
def _validator() -> Draft7Validator:
    text = (resources.files("hotspots") / "schemas" / "compose-spec.json").read_text()
    return Draft7Validator(json.loads(text))


def _path(parts: Any) -> str:
    return ".".join(str(p) for p in parts) or "(top level)"


def _message(error: ValidationError) -> str:
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        # jsonschema words this as "does not match any of the regexes: '^x-'".
        known, patterns = error.schema.get("properties", {}), error.schema.get("patternProperties", {})
        unknown = [k for k in error.instance
                   if k not in known and not any(re.search(p, k) for p in patterns)]
        return "unknown key " + ", ".join(repr(k) for k in unknown)
    return error.message


def schema_problems(doc: Any) -> list[str]:
    problems = []
    for error in sorted(_validator().iter_errors(doc), key=lambda e: _path(e.absolute_path)):
        best = best_match([error])  # the innermost reason behind a oneOf/anyOf failure
        problems.append(f"schema: {_path(best.absolute_path)}: {_message(best)}")
    return problems


def _image(where: str, svc: dict[str, Any]) -> list[str]:
    image = svc.get("image")
    if image is None:
        return [] if "build" in svc else [f"{where}: neither image nor build"]
    if "@sha256:" in image:
        return []
    name, _, tag = image.rpartition(":")
    if not name or not tag or "/" in tag:  # no colon, or it was a registry's port
        return [f"{where}: image {image!r} is not pinned: add a version tag or a digest"]
    if tag == "latest":
        return [f"{where}: image {image!r} uses 'latest': pin a version tag or a digest"]
    return []


def _host_ip(port: Any) -> str | None:
    """The host address a ports entry binds; None when it binds every interface."""
    if isinstance(port, dict):
        return port.get("host_ip")
    spec = str(port).split("/")[0]
    if spec.startswith("["):
        return spec[1:spec.index("]")]
    parts = spec.split(":")
    return parts[0] if len(parts) == 3 else None


def _ports(where: str, svc: dict[str, Any]) -> list[str]:
    return [f"{where}: port {port!r} is published on every interface: bind it to {LOOPBACK} "
            f"(e.g. '{LOOPBACK}:8080:8080')"
            for port in svc.get("ports", []) if _host_ip(port) != LOOPBACK]


def _volumes(where: str, svc: dict[str, Any], declared: set[str]) -> list[str]:
    problems = []
    for vol in svc.get("volumes", []):
        if isinstance(vol, dict):
            kind, source = vol.get("type"), vol.get("source")
            if kind != "volume":
                continue  # bind mounts, tmpfs, npipe, cluster
            target = vol.get("target")
        else:
            parts = vol.split(":")
            source, target = (parts[0], parts[1]) if len(parts) > 1 else (None, parts[0])
            if source and source[0] in "./~$":
                continue  # a bind mount of a file or folder
        if not source:
            problems.append(f"{where}: anonymous volume at {target}: name it and declare it "
                            "under the top-level volumes")
        elif source not in declared:
            problems.append(f"{where}: volume {source!r} is not declared under the top-level volumes")
    return problems


def _healthy(svc: dict[str, Any]) -> bool:
    check = svc.get("healthcheck") or {}
    test = check.get("test")
    return bool(test) and check.get("disable") not in (True, "true") and test != ["NONE"]


def _depends(where: str, svc: dict[str, Any], services: dict[str, Any]) -> list[str]:
    deps = svc.get("depends_on")
    if deps is None:
        return []
    if isinstance(deps, list):
        return [f"{where}: depends_on is a list, which only waits for the containers to start: "
                "use the mapping form with a condition (service_healthy, ...)"]
    problems = []
    for dep, spec in deps.items():
        if dep not in services:
            problems.append(f"{where}: depends_on names an unknown service {dep!r}")
        elif spec["condition"] == "service_healthy" and not _healthy(services[dep]):
            problems.append(f"{where}: waits for {dep} to be healthy but {dep} has no healthcheck")
    return problems


def environment(svc: dict[str, Any]) -> dict[str, str | None]:
    """A service's environment, from either form (mapping, or list of NAME=value)."""
    env = svc.get("environment") or {}
    if isinstance(env, list):  # NAME alone passes the host's value through
        return {k: v if sep else None for k, sep, v in (str(e).partition("=") for e in env)}
    return {str(k): None if v is None else str(v) for k, v in env.items()}


def _read_only_targets(svc: dict[str, Any]) -> list[str]:
    targets = []
    for vol in svc.get("volumes", []):
        if isinstance(vol, dict):
            if vol.get("read_only") in (True, "true") and vol.get("target"):
                targets.append(str(vol["target"]))
        else:
            parts = str(vol).split(":")
            if len(parts) > 2 and "ro" in parts[2].split(","):
                targets.append(parts[1])
    return targets


def _settings(where: str, svc: dict[str, Any]) -> list[str]:
    env, problems = environment(svc), []
    mounts = [t.rstrip("/") for t in _read_only_targets(svc)]
    for name in FILE_SETTINGS:
        path = env.get(name)
        if path and not any(path.startswith(m + "/") for m in mounts):
            problems.append(f"{where}: {name} {path!r} is not in a read-only mount of the service: "
                            "mount its folder (e.g. './outlines:/etc/hotspots/boundaries:ro')")
    url = env.get("HOTSPOTS_WEBHOOK_URL")
    if url:
        if not url.startswith(("https://", "http://")):
            problems.append(f"{where}: HOTSPOTS_WEBHOOK_URL {url!r} is not an http(s) URL")
        if not env.get("HOTSPOTS_WEBHOOK_SECRET"):
            problems.append(f"{where}: HOTSPOTS_WEBHOOK_URL is set without HOTSPOTS_WEBHOOK_SECRET: "
                            "every alert is signed, and the sink refuses to start without it")
    return problems


def secret_problems(raw: dict[str, Any]) -> list[str]:
    """Secrets written in the file (before substitution): a value, or a default, is committed."""
    problems = []
    for name, svc in (raw.get("services") or {}).items():
        for var, value in environment(svc).items():
            if var in SECRETS and value and not _FROM_ENV.fullmatch(value):
                problems.append(f"services.{name}: {var} is written in the file: take it from the "
                                f"environment, e.g. ${{{var}:-}}, with no default")
    return problems


def rule_problems(doc: dict[str, Any]) -> list[str]:
    """The project's rules; expects a document the schema accepted."""
    services: dict[str, Any] = doc.get("services") or {}
    declared = set(doc.get("volumes") or {})
    # One-shot services exit by design: on-demand tools (profiles) and init steps that
    # others wait for with service_completed_successfully (as `up --wait` also treats them).
    one_shot = {dep for svc in services.values() if isinstance(svc.get("depends_on"), dict)
                for dep, spec in svc["depends_on"].items() if spec.get("condition") == ONE_SHOT}
    problems = []
    for name, svc in services.items():
        where = f"services.{name}"
        problems += _image(where, svc) + _ports(where, svc) + _volumes(where, svc, declared)
        problems += _depends(where, svc, services) + _settings(where, svc)
        if name not in one_shot and not svc.get("profiles") and not _healthy(svc):
            problems.append(f"{where}: long-running service has no healthcheck (add one, or make "
                            f"it one-shot: a profile, or a dependency with condition {ONE_SHOT})")
    return problems


def check_text(text: str, env: Mapping[str, str] | None = None) -> list[str]:
    """Every problem in a compose file's text; an empty list when it is clean."""
    try:
        raw = yaml.load(text, Loader=_Loader)  # a SafeLoader: no arbitrary objects
        doc = interpolate(raw, os.environ if env is None else env)
    except yaml.YAMLError as exc:
        return [f"not valid YAML: {exc}"]
    except ComposeError as exc:
        return [str(exc)]
    if not isinstance(doc, dict):
        return ["not a compose file: the top level must be a mapping"]
    return schema_problems(doc) or rule_problems(doc) + secret_problems(raw)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m hotspots.compose_check COMPOSE_FILE", file=sys.stderr)
        return 2
    path = Path(argv[0])
    if not path.is_file():
        print(f"{path}: no such file", file=sys.stderr)
        return 2
    problems = check_text(path.read_text())
    if problems:
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"{path}: OK (Compose Specification schema and project rules)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
