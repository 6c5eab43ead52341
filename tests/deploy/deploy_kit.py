"""Reading deploy/ the way compose and kubectl would, and checking commands against the real CLI.

Nothing here runs a container: the files are checked statically (DESIGN.md: they cannot run here).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import typer
import typer.main
import yaml

from onceonly.cli import app
from onceonly.errors import ConfigError
from onceonly.settings import Settings, load_settings
from onceonly.signing import (
    DISTRIBUTOR,
    authorities_from_departments,
    authority_verifier,
    inbox_verifier,
    signer_for,
    write_keypair,
)
from services.gateway.config import ENV_KEYS

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
K8S_DIR = DEPLOY / "kubernetes"

# Every image the deployment may reference, with the tags that were chosen on purpose (no floating `latest`).
SUPPORTED_IMAGES: dict[str, set[str]] = {
    "apache/kafka": {"3.9.0"},
    "confluentinc/cp-schema-registry": {"7.9.0"},
    "redis": {"7.4-alpine"},
    "postgres": {"17-alpine"},
    "python": {"3.11-slim"},
    "onceonly": {"local", "0.1.0"},  # the platform image (deploy/Dockerfile)
}

# Commands being written alongside this work; their options are checked once they exist.
# Python modules run as services (python -m ...).
SERVICE_MODULES = {"services.tracker"}
# Environment names the platform reads besides Settings fields.
OTHER_ONCEONLY_ENV = {"ONCEONLY_SCHEMA_DIR", "ONCEONLY_IMAGE", ENV_KEYS}  # ENV_KEYS: the gateway's API keys


def split_image(image: str) -> tuple[str, str]:
    """``name:tag`` with compose's ``${VAR:-default}`` resolved to its default."""
    image = re.sub(r"\$\{[A-Z_]+:-([^}]+)\}", r"\1", image)
    name, _, tag = image.rpartition(":")
    return name, tag


def settings_env_names() -> set[str]:
    return {f"ONCEONLY_{name.upper()}" for name in Settings.model_fields}


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def compose_services() -> dict[str, dict[str, Any]]:
    services = compose()["services"]
    assert isinstance(services, dict)
    return services


def service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def as_args(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def invocations(entrypoint: list[str], command: list[str]) -> list[list[str]]:
    """The program invocations a container runs: ``onceonly`` with args, ``sh -c`` scripts split at ``&&``."""
    argv = (entrypoint or ["onceonly"]) + command
    if argv[:2] == ["sh", "-c"]:
        script = " ".join(argv[2:])
        return [shlex.split(part) for part in re.split(r"&&|;", script) if part.strip()]
    return [argv]


@cache
def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    """(file name, document) for every manifest (not the kustomization); parsed once, do not modify."""
    out = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        if path.name in ("kustomization.yaml", "onceonly.yaml"):
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path.name, doc))
    return out


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in k8s_documents() if d["kind"] == kind]


def configmap(name: str) -> dict[str, str]:
    for cm in k8s_kind("ConfigMap"):
        if cm["metadata"]["name"] == name:
            data = cm["data"]
            assert isinstance(data, dict)
            return data
    raise AssertionError(f"no ConfigMap {name}")


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    result = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(result, list)
    return result


def literal_secrets(text: str) -> list[str]:
    """Password values written into a file instead of referenced (``${VAR}``, ``${env:VAR}``)."""
    values = [
        *re.findall(r'(?:password|user_\w+)="([^"]*)"', text),  # JAAS
        *re.findall(r"^\s*[A-Z_]*PASSWORD[A-Z_]*:\s*(\S+)", text, re.M),  # environment entries
        *re.findall(r"://[^/\s:@]*:([^@\s/]+)@", text),  # URLs with credentials
    ]
    return [v for v in values if not v.startswith("${")]


# --- the CLI --------------------------------------------------------------------------------------------------------


def _is_group(cmd: Any) -> bool:
    return hasattr(cmd, "get_command")  # typer vendors click: duck-type rather than isinstance(click.Group)


def _resolve(args: list[str]) -> tuple[Any, list[str], list[str]]:
    """Walk the real command tree: (command or None, the path found, the remaining args)."""
    cmd: Any = typer.main.get_command(app)
    path: list[str] = []
    rest = list(args)
    while _is_group(cmd) and rest:
        sub = cmd.get_command(typer.Context(cmd), rest[0])
        if sub is None:
            return None, path, rest
        cmd, path, rest = sub, [*path, rest[0]], rest[1:]
    return cmd, path, rest


def command_problem(argv: list[str]) -> str | None:
    """None when ``argv`` is a command the platform image can run with these arguments, else why not."""
    if argv[:2] == ["python", "-m"]:
        module = argv[2] if len(argv) > 2 else ""
        spec = importlib.util.find_spec(f"{module}.__main__") if module in SERVICE_MODULES else None
        return None if spec else f"{module!r} is not a service module"
    if argv[:1] != ["onceonly"]:
        return f"not an onceonly command: {argv}"
    cmd, path, rest = _resolve(argv[1:])
    if cmd is None or _is_group(cmd):
        return f"no such command: onceonly {' '.join(argv[1:3])}"
    try:
        cmd.make_context(" ".join(["onceonly", *path]), rest)  # parses and validates, runs nothing
    except typer.TyperException as e:
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        return f"onceonly {' '.join(path)}: {message}"
    return None


def option_value(argv: list[str], option: str) -> str | None:
    if option in argv:
        return argv[argv.index(option) + 1]
    return None


# --- what a container reads at start, before it connects to anything -------------------------------------------------

# The commands that run as services, and so must find everything they read at start in what their file gives them.
SERVICE_COMMANDS = {
    ("gateway", "serve"),
    ("source", "run"),
    ("subscriber", "run"),
    ("distributor", "run"),
    ("operator", "serve"),
    ("tracker", "run"),
    ("registry", "serve"),
}
_COMPOSE_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:[-?])([^}]*))?\}")


def interpolate(value: str, dotenv: Mapping[str, str]) -> str:
    """compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?message}`` and ``$$`` against the ``.env`` values."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        if dotenv.get(name):
            return dotenv[name]
        if op == ":?":
            raise KeyError(f"{name} is required in .env" + (f" ({arg})" if arg else ""))
        return arg if op == ":-" else ""

    return _COMPOSE_VARIABLE.sub(sub, value)


@dataclass
class Started:
    """What a service command read at start: its settings, the names in its config section, its key material."""

    command: tuple[str, ...]
    settings: Settings
    configured: list[str] = field(default_factory=list)
    signs_as: list[str] = field(default_factory=list)
    verifies: list[str] = field(default_factory=list)


def start_like(argv: list[str], workdir: str, files: Mapping[str, Path]) -> Started:
    """Load what ``argv`` loads before connecting, the way the command does, from the current environment.

    ``files`` maps paths inside the container to the repository files mounted there; a config argument that is not
    mounted is an error, as it would be in the container. Raises the command's own error (ConfigError) when the
    service would exit at start.
    """
    from connectors.sources import load_sources
    from services.distributor.agreements import load_agreements
    from services.gateway import load_gateway_config
    from services.subscriber import load_subscribers

    cmd, path, rest = _resolve(argv[1:])
    assert tuple(path) in SERVICE_COMMANDS, f"not a service command: {argv}"
    params = cmd.make_context(" ".join(["onceonly", *path]), rest).params
    if path == ["distributor", "run"] and params.get("config") is None:
        params["config"] = "onceonly.yaml"  # what the command reads when given none
    config: Path | None = None
    if params.get("config") is not None:
        inside = str(PurePosixPath(workdir) / str(params["config"]))
        if inside not in files:
            raise ConfigError(f"{inside}: file not found (nothing is mounted there)")
        config = files[inside]
    settings = load_settings()
    started = Started(tuple(path), settings)
    signing = settings.signatures == "require"
    if path == ["gateway", "serve"]:
        gateway = load_gateway_config(config)
        started.configured = sorted(gateway.api_keys)
        started.signs_as = started.configured
    elif path == ["source", "run"]:
        assert config is not None
        sources = load_sources(config).select(params.get("source"))
        started.configured = [s.name for s in sources]
        started.signs_as = sorted({s.department for s in sources})
    elif path == ["subscriber", "run"]:
        assert config is not None
        started.configured = [s.department for s in load_subscribers(config).select(params.get("department"))]
        started.verifies = [DISTRIBUTOR]
    elif path == ["distributor", "run"]:
        assert config is not None
        agreements = load_agreements(config)
        started.configured = [a.id for a in agreements]
        started.signs_as = [DISTRIBUTOR]
        started.verifies = sorted(set(authorities_from_departments().values()))
    elif path == ["operator", "serve"]:
        started.signs_as = [DISTRIBUTOR]  # re-drives and replays into inboxes
    if signing:
        for department in started.signs_as:
            assert signer_for(settings, department) is not None
        if started.command == ("subscriber", "run"):
            assert inbox_verifier(settings) is not None
        if started.command == ("distributor", "run"):
            verifier = authority_verifier(settings)
            assert verifier is not None
            missing = {d for d in started.verifies if not any(k.startswith(f"{d}:") for k in verifier.key_ids)}
            if missing:
                raise ConfigError(f"no public key of {', '.join(sorted(missing))} in {settings.signing_keys}")
    return started


def key_folder(folder: Path, departments: list[str]) -> Path:
    """A key folder as ``onceonly keys new <dept> --dir`` makes it, for each of ``departments``."""
    for department in departments:
        write_keypair(folder, department)
    return folder
