"""Every service in deploy/ loads at start what its command reads (settings, config section, API keys, signing keys)
from exactly what its file gives it: the environment compose or the pod sets, the files mounted. A deployment whose
gateway has no API keys, or whose subscriber lacks the distributor's public key, fails here instead of at start."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_kit import (
    COMPOSE_DIR,
    K8S_DIR,
    SERVICE_COMMANDS,
    Started,
    as_args,
    compose_services,
    configmap,
    containers,
    interpolate,
    invocations,
    k8s_kind,
    key_folder,
    service_env,
    start_like,
)

from onceonly.errors import ConfigError
from onceonly.signing import DISTRIBUTOR, authorities_from_departments, generate_api_key, hash_api_key
from services.gateway.config import ENV_KEYS, load_gateway_config

WORKDIR = "/etc/onceonly"
API_KEY = generate_api_key()  # what a department would hold; the deployment gets only its hash
HASHED = hash_api_key(API_KEY)


def authorities() -> list[str]:
    return sorted(set(authorities_from_departments().values()))


def deploy_env_names() -> set[str]:
    """Every variable a compose service or a pod sets."""
    names = {n for s in compose_services().values() for n in service_env(s)}
    return names | {e["name"] for d in k8s_kind("Deployment") for c in containers(d) for e in c.get("env", [])}


def use_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Exactly ``env`` for the platform's variables: nothing from the test run, or from the service checked before,
    leaks into this container's view."""
    for name in list(os.environ):
        if name.startswith("ONCEONLY_") or name in deploy_env_names():
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


# --- compose ----------------------------------------------------------------------------------------------------------


def dotenv(**extra: str) -> dict[str, str]:
    """The .env an operator writes from env.example: every value set; the gateway keys as hashes."""
    names = [
        line.split("=", 1)[0]
        for line in (COMPOSE_DIR / "env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    ]
    values = {name: HASHED if name.startswith("GATEWAY_KEY_") else f"secret-{name.lower()}" for name in names}
    return {**values, **extra}


def compose_mounts(service: dict[str, Any], keys: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """(files, folders) the service mounts, inside path -> what the test reads in its place."""
    files, folders = {}, {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source == "./keys":
            folders[target] = keys
        elif source.startswith("./") and (COMPOSE_DIR / source).is_file():
            files[target] = COMPOSE_DIR / source
    return files, folders


def compose_service_commands() -> list[tuple[str, list[str]]]:
    out = []
    for name, service in compose_services().items():
        for argv in invocations(as_args(service.get("entrypoint")), as_args(service.get("command"))):
            if argv[:1] == ["onceonly"] and tuple(argv[1:3]) in SERVICE_COMMANDS:
                out.append((name, argv))
    return out


def start_compose_service(
    name: str, argv: list[str], env_file: dict[str, str], keys: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> Started:
    service = compose_services()[name]
    files, folders = compose_mounts(service, keys)
    env = {k: interpolate(v, env_file) for k, v in service_env(service).items()}
    for inside, local in folders.items():
        env = {k: str(local) + v[len(inside) :] if v.startswith(inside) else v for k, v in env.items()}
    env["ONCEONLY_STATE_DIR"] = str(tmp / "state")  # /tmp/onceonly in the container
    use_env(monkeypatch, env)
    return start_like(argv, service.get("working_dir", WORKDIR), files)


def test_compose_runs_every_kind_of_service() -> None:
    kinds = {tuple(argv[1:3]) for _, argv in compose_service_commands()}
    assert kinds >= {("gateway", "serve"), ("source", "run"), ("subscriber", "run"), ("distributor", "run")}
    assert kinds >= {("operator", "serve"), ("tracker", "run")}


@pytest.mark.parametrize("signatures", ["off", "require"])
def test_every_compose_service_starts_with_what_compose_gives_it(
    signatures: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = key_folder(tmp_path / "keys", [DISTRIBUTOR, *authorities()])  # `onceonly keys new` on this host
    env_file = dotenv(ONCEONLY_SIGNATURES=signatures) if signatures == "require" else dotenv()
    for name, argv in compose_service_commands():
        started = start_compose_service(name, argv, env_file, keys, tmp_path, monkeypatch)
        assert started.settings.profile == "prod" and started.settings.signatures == signatures, name
        assert started.settings.signing_keys == keys, name
        if started.command == ("gateway", "serve"):
            gateway = load_gateway_config(COMPOSE_DIR / "onceonly.yaml")
            assert gateway.department_of(API_KEY) == "health", "the hash from .env must reach the gateway whole"
        if started.command in (("source", "run"), ("subscriber", "run"), ("gateway", "serve")):
            assert started.configured, f"{name}: its command selects nothing from onceonly.yaml"


def test_the_gateway_key_hash_survives_the_env_file() -> None:
    """compose expands ``$`` in unquoted .env values: a scrypt hash (``scrypt$16384$...``) must be single-quoted."""
    lines = [line for line in (COMPOSE_DIR / "env.example").read_text().splitlines() if line.startswith("GATEWAY_KEY")]
    assert lines
    for line in lines:
        assert re.fullmatch(r"GATEWAY_KEY_[A-Z_]+='[^']*'", line), line
    section = yaml.safe_load((COMPOSE_DIR / "onceonly.yaml").read_text())["gateway"]["api_keys"]
    gateway_env = service_env(compose_services()["gateway"])
    for department, value in section.items():
        (variable,) = re.findall(r"\$\{(\w+)\}", value)
        assert variable == f"GATEWAY_KEY_{department.upper()}" and variable in gateway_env


def test_the_readme_examples_run_on_the_compose_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """README: ``onceonly source run onceonly.yaml`` and ``onceonly gateway serve onceonly.yaml`` on "a full one"."""
    files = {f"{WORKDIR}/onceonly.yaml": COMPOSE_DIR / "onceonly.yaml"}
    use_env(monkeypatch, {"POSTGRES_PASSWORD": "pw", "GATEWAY_KEY_HEALTH": HASHED, "ONCEONLY_STATE_DIR": str(tmp_path)})
    sources = start_like(["onceonly", "source", "run", "onceonly.yaml"], WORKDIR, files)
    assert sources.configured == ["hukou-outbox", "samr-enterprises"]
    assert sources.signs_as == ["market_regulation", "public_security"]
    gateway = start_like(["onceonly", "gateway", "serve", "onceonly.yaml", "--port", "8090"], WORKDIR, files)
    assert gateway.configured == ["health"]
    distributor = start_like(["onceonly", "distributor", "run", "onceonly.yaml"], WORKDIR, files)
    assert distributor.configured == ["gjj-2024-001", "tax-2024-007"]


def test_the_outbox_table_is_created_as_the_source_reads_it() -> None:
    from connectors.sources import outbox_table

    sql = (COMPOSE_DIR / "postgres" / "init.sql").read_text()
    database = yaml.safe_load((COMPOSE_DIR / "onceonly.yaml").read_text())["sources"]["hukou-outbox"]["url"]
    assert f"CREATE DATABASE {database.rsplit('/', 1)[1]};" in sql
    block = sql.split("\\connect hukou", 1)[1]
    created = re.search(r"CREATE TABLE outbox \((.*?)\);", block, re.S)
    assert created is not None
    columns = {line.split()[0] for line in created.group(1).split(",\n") if line.strip()}
    assert columns == {c.name for c in outbox_table().columns}


def test_a_compose_gateway_without_its_key_cannot_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deploy that shipped: no key in the environment, no section in the file."""
    keys = tmp_path / "keys"
    (argv,) = [a for n, a in compose_service_commands() if n == "gateway"]
    with pytest.raises(KeyError, match="GATEWAY_KEY_HEALTH is required"):  # compose refuses to start it
        start_compose_service("gateway", argv, dotenv(GATEWAY_KEY_HEALTH=""), keys, tmp_path, monkeypatch)
    bare = [a for a in argv if a != "onceonly.yaml"]
    with pytest.raises(ConfigError, match="the gateway has no API keys"):
        start_compose_service("gateway", bare, dotenv(), keys, tmp_path, monkeypatch)
    with pytest.raises(ConfigError, match="written in plain"):  # production refuses a key instead of its hash
        start_compose_service("gateway", argv, dotenv(GATEWAY_KEY_HEALTH=API_KEY), keys, tmp_path, monkeypatch)


def test_bad_compose_commands_are_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = key_folder(tmp_path / "keys", [DISTRIBUTOR])
    (argv,) = [a for n, a in compose_service_commands() if n == "source-public_security"]
    wrong = [*argv[: argv.index("--source") + 1], "no-such-source"]
    with pytest.raises(ConfigError, match="no source named 'no-such-source'"):
        start_compose_service("source-public_security", wrong, dotenv(), keys, tmp_path, monkeypatch)
    unmounted = ["onceonly", "distributor", "run", "other.yaml"]
    with pytest.raises(ConfigError, match="nothing is mounted there"):
        start_compose_service("distributor", unmounted, dotenv(), keys, tmp_path, monkeypatch)
    with pytest.raises(ConfigError, match="signing key not found"):  # required, and keys/ lacks public_security's
        env = dotenv(ONCEONLY_SIGNATURES="require")
        start_compose_service("source-public_security", argv, env, keys, tmp_path, monkeypatch)


# --- Kubernetes -------------------------------------------------------------------------------------------------------

SECRET_ENV = {ENV_KEYS: f"health={HASHED}"}  # what the Secret onceonly-gateway-api-keys holds, per deploy/README.md


def pod_env(c: dict[str, Any], overrides: dict[str, str]) -> dict[str, str]:
    env = dict(configmap("onceonly-env"))
    for e in c.get("env", []):
        env[e["name"]] = e["value"] if "value" in e else SECRET_ENV.get(e["name"], f"secret-{e['name'].lower()}")
    return {**env, **overrides}


def signing_volume(deployment: dict[str, Any], secrets: dict[str, dict[str, bytes]], into: Path) -> Path:
    """The pod's signing-keys volume as the kubelet lays it out: each listed Secret key at its path, if it exists."""
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    into.mkdir(parents=True)
    for source in volumes.get("signing-keys", {}).get("projected", {}).get("sources", []):
        secret = source["secret"]
        assert secret.get("optional") is True, "signing is optional: a pod must start without the Secret"
        for item in secret["items"]:
            if item["key"] in secrets.get(secret["name"], {}):
                target = into / item["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(secrets[secret["name"]][item["key"]])
    return into


def signing_secrets(tmp: Path) -> dict[str, dict[str, bytes]]:
    """The onceonly-signing-* Secrets as deploy/README.md has them created from `onceonly keys new` folders."""
    keys = key_folder(tmp / "made", [DISTRIBUTOR, *authorities()])
    public = {f"{d}.pem": next((keys / d).glob("*.pem")).read_bytes() for d in [DISTRIBUTOR, *authorities()]}
    return {
        "onceonly-signing-public": public,
        "onceonly-signing-distributor": {"distributor.key.pem": (keys / "distributor.key.pem").read_bytes()},
        "onceonly-signing-gateway": {"health.key.pem": (keys / "health.key.pem").read_bytes()},
    }


def k8s_service_commands() -> list[tuple[dict[str, Any], dict[str, Any], list[str]]]:
    out = []
    for d in k8s_kind("Deployment"):  # registry.yaml too: optional, but it must start when added
        for c in containers(d):
            argv = [*c.get("command", ["onceonly"]), *c.get("args", [])]
            if tuple(argv[1:3]) in SERVICE_COMMANDS:
                out.append((d, c, argv))
    return out


def start_pod(
    d: dict[str, Any], c: dict[str, Any], argv: list[str], tmp: Path, monkeypatch: pytest.MonkeyPatch, **env: str
) -> Started:
    tmp.mkdir(parents=True, exist_ok=True)
    mounted = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounted.get(WORKDIR) == "config"  # the ConfigMap onceonly-config: kustomize makes it from onceonly.yaml
    keys_inside = configmap("onceonly-env")["ONCEONLY_SIGNING_KEYS"]
    overrides = {"ONCEONLY_STATE_DIR": str(tmp / "state"), "ONCEONLY_SSL_CAFILE": str(tmp / "ca.crt"), **env}
    if mounted.get(keys_inside) == "signing-keys":
        overrides["ONCEONLY_SIGNING_KEYS"] = str(signing_volume(d, signing_secrets(tmp), tmp / "volume"))
    (tmp / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    use_env(monkeypatch, pod_env(c, overrides))
    return start_like(argv, c["workingDir"], {f"{WORKDIR}/onceonly.yaml": K8S_DIR / "onceonly.yaml"})


def test_kubernetes_runs_every_kind_of_platform_service() -> None:
    kinds = {tuple(argv[1:3]) for _, _, argv in k8s_service_commands()}
    assert kinds >= {("gateway", "serve"), ("subscriber", "run"), ("distributor", "run"), ("operator", "serve")}


@pytest.mark.parametrize("signatures", ["off", "require"])
def test_every_pod_starts_with_what_its_manifest_gives_it(
    signatures: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i, (d, c, argv) in enumerate(k8s_service_commands()):
        name = d["metadata"]["name"]
        mounts_keys = any(m["name"] == "signing-keys" for m in c["volumeMounts"])
        started = start_pod(d, c, argv, tmp_path / str(i), monkeypatch, ONCEONLY_SIGNATURES=signatures)
        assert started.settings.signatures == signatures, name
        if started.signs_as or started.verifies:
            assert mounts_keys, f"{name} signs or verifies, and mounts no signing keys"
        if started.command == ("gateway", "serve"):
            assert started.configured == ["health"]


def test_pods_without_their_secrets_cannot_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (gateway,) = [(d, c, a) for d, c, a in k8s_service_commands() if a[1] == "gateway"]
    d, c, argv = gateway
    keyless = {**c, "env": [e for e in c["env"] if e["name"] != ENV_KEYS]}
    with pytest.raises(ConfigError, match="the gateway has no API keys"):
        start_pod(d, keyless, argv, tmp_path / "gw", monkeypatch)
    subscriber = next((d, c, a) for d, c, a in k8s_service_commands() if a[1] == "subscriber")
    d, c, argv = subscriber
    no_keys = {**d, "spec": {**d["spec"], "template": {**d["spec"]["template"]}}}
    no_keys["spec"]["template"]["spec"] = {
        **d["spec"]["template"]["spec"],
        "volumes": [v for v in d["spec"]["template"]["spec"]["volumes"] if v["name"] != "signing-keys"],
    }
    with pytest.raises(ConfigError, match=r"no such key directory|no public key of the distributor"):
        start_pod(no_keys, c, argv, tmp_path / "sub", monkeypatch, ONCEONLY_SIGNATURES="require")


def test_the_signing_secrets_cover_every_authority() -> None:
    """A new authority in departments.yaml needs its public key in the distributor's volume, or its changes are
    dead-lettered once signatures are required."""
    (distributor,) = [d for d, _, a in k8s_service_commands() if a[1] == "distributor"]
    volume = next(v for v in distributor["spec"]["template"]["spec"]["volumes"] if v["name"] == "signing-keys")
    paths = {i["path"] for s in volume["projected"]["sources"] for i in s["secret"]["items"]}
    assert {f"{d}/{d}.pem" for d in authorities()} <= paths
    assert "distributor.key.pem" in paths
    for d, _, _ in k8s_service_commands():
        for v in d["spec"]["template"]["spec"]["volumes"]:
            if v["name"] == "signing-keys":
                assert v["projected"]["defaultMode"] & 0o007 == 0, "private keys must not be world-readable"
