"""deploy/compose: three KRaft brokers, registry, Redis, PostgreSQL and the services, consistent with the code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from deploy_kit import (
    COMPOSE_DIR,
    DEPLOY,
    OTHER_ONCEONLY_ENV,
    SUPPORTED_IMAGES,
    as_args,
    command_problem,
    compose,
    compose_services,
    interpolate,
    invocations,
    literal_secrets,
    option_value,
    service_env,
    settings_env_names,
    split_image,
)

from onceonly.catalog import load_catalog, load_departments
from onceonly.kafka import confluent_config
from onceonly.render.acls import Holders, password_variable, principals, render_acls
from onceonly.settings import Settings
from services.distributor.agreements import load_agreements
from services.subscriber import load_subscribers

CONFIG = COMPOSE_DIR / "onceonly.yaml"
BROKERS = ("kafka-1", "kafka-2", "kafka-3")
ONE_SHOT = {"setup-render", "kafka-setup"}


def platform_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose_services().items() if "ONCEONLY_SASL_USERNAME" in service_env(s)}


def argv(service: dict[str, Any]) -> list[list[str]]:
    return invocations(as_args(service.get("entrypoint")), as_args(service.get("command")))


def listeners(broker: dict[str, Any]) -> dict[str, str]:
    """Listener name -> host:port as advertised."""
    advertised = service_env(broker)["KAFKA_ADVERTISED_LISTENERS"]
    return dict(item.split("://", 1) for item in advertised.split(","))


def test_the_expected_services_are_there() -> None:
    names = set(compose_services())
    assert {*BROKERS, "schema-registry", "redis", "postgres", "gateway", "distributor", "operator", "registry"} <= names
    assert {n for n in names if n.startswith("subscriber-")} == {"subscriber-housing_fund", "subscriber-tax"}
    assert compose_services()["registry"]["profiles"] == ["onceonly-registry"]  # the optional embedded registry


def test_kafka_runs_in_kraft_mode_with_three_voting_brokers() -> None:
    voters = None
    for i, name in enumerate(BROKERS, start=1):
        env = service_env(compose_services()[name])
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_NODE_ID"] == str(i)
        voters = voters or env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == voters
        assert f"{i}@{name}:9093" in voters.split(",")
        assert "CONTROLLER://:9093" in env["KAFKA_LISTENERS"]
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2" and env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # topics come from the catalog only
        assert "StandardAuthorizer" in env["KAFKA_AUTHORIZER_CLASS_NAME"]


def test_every_image_is_a_supported_pinned_one() -> None:
    for name, service in compose_services().items():
        image, tag = split_image(service["image"])
        assert image in SUPPORTED_IMAGES, f"{name}: unsupported image {image}"
        assert tag in SUPPORTED_IMAGES[image], f"{name}: {image}:{tag} is not a chosen tag"
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for image in re.findall(r"^FROM (\S+)", dockerfile, re.M):
        name, tag = split_image(image)
        assert tag in SUPPORTED_IMAGES[name]


def test_the_platform_image_installs_the_package_and_runs_onceonly() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert '".[postgres]"' in dockerfile and '"onceonly[postgres]"' in dockerfile
    assert 'ENTRYPOINT ["onceonly"]' in dockerfile
    assert re.search(r"^USER 10001$", dockerfile, re.M)  # not root
    assert "/var/lib/onceonly/setup" in dockerfile  # the setup volume is writable by that user
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text()
    for path in ("onceonly", "services", "connectors", "schemas", "pyproject.toml", "setup.py"):
        assert f"!{path}" in ignore


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, service in compose_services().items():
        if name in ONE_SHOT:
            assert service["restart"] == "no"
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"


def test_dependencies_exist_and_their_conditions_can_be_met() -> None:
    services = compose_services()
    for name, service in services.items():
        for dep, rule in service.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; it has no check"
            if rule["condition"] == "service_completed_successfully":
                assert dep in ONE_SHOT


def test_every_command_is_a_real_onceonly_command() -> None:
    for name, service in compose_services().items():
        if split_image(service["image"])[0] != "onceonly":
            continue
        for command in argv(service):
            assert command_problem(command) is None, f"{name}: {command_problem(command)}"


def test_health_checks_probe_the_ports_the_commands_listen_on() -> None:
    for name, service in platform_services().items():
        (command,) = argv(service)
        port = option_value(command, "--metrics-port") or option_value(command, "--port")
        check = " ".join(service["healthcheck"]["test"])
        if port:
            assert re.search(rf"\b{port}\b", check), f"{name} listens on {port}, its check probes: {check}"
        published = [p.split(":")[1] for p in service.get("ports", [])]
        assert all(p == option_value(command, "--port") for p in published), name


def test_platform_environment_names_are_settings() -> None:
    known = settings_env_names() | OTHER_ONCEONLY_ENV
    for name, service in compose_services().items():
        for key in service_env(service):
            if key.startswith("ONCEONLY_"):
                assert key in known, f"{name}: {key} is not a setting"


def service_settings(service: dict[str, Any]) -> Settings:
    env: dict[str, Any] = {
        k[len("ONCEONLY_") :].lower(): v for k, v in service_env(service).items() if k.startswith("ONCEONLY_")
    }
    env = {k: interpolate(v, {name: "placeholder" for name in re.findall(r"\$\{(\w+):\?", v)}) for k, v in env.items()}
    return Settings(**env)


def test_connection_settings_point_at_the_listeners_that_serve_them() -> None:
    services = compose_services()
    client_listeners = {listeners(services[b])["CLIENT"] for b in BROKERS}
    protocol_map = dict(
        p.split(":") for p in service_env(services["kafka-1"])["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    mechanisms = service_env(services["kafka-1"])["KAFKA_LISTENER_NAME_CLIENT_SASL_ENABLED_MECHANISMS"].split(",")
    registry_port = service_env(services["schema-registry"])["SCHEMA_REGISTRY_LISTENERS"].rsplit(":", 1)[1]
    for name, service in platform_services().items():
        s = service_settings(service)
        assert set(s.bootstrap_servers.split(",")) == client_listeners, name
        assert s.security_protocol == protocol_map["CLIENT"] and s.sasl_mechanism in mechanisms, name
        assert s.registry_url == f"http://schema-registry:{registry_port}", name
        assert s.redis_url is not None and re.fullmatch(r"redis://:placeholder@redis:6379/0", s.redis_url), name
        assert s.profile == "prod" and s.broker_quirks == "none"
        conf = confluent_config(s)  # complete enough for librdkafka: no half-configured SASL
        assert conf["sasl.username"] == service_env(service)["ONCEONLY_SASL_USERNAME"]


def compose_holders() -> Holders:
    departments = load_departments()
    return Holders.from_agreements(load_agreements(CONFIG, departments=departments.codes()), str(CONFIG))


def test_every_principal_has_a_scram_user_a_password_and_acls() -> None:
    acls = render_acls(Settings(), load_catalog(), load_departments(), compose_holders())
    setup_env = service_env(compose_services()["kafka-setup"])
    for principal in principals(acls):
        assert password_variable(principal) in setup_env, f"no SCRAM password for {principal}"
        assert f"${{{password_variable(principal)}:?}}" == setup_env[password_variable(principal)]
    for name, service in platform_services().items():
        env = service_env(service)
        user = env["ONCEONLY_SASL_USERNAME"]
        assert user in principals(acls), f"{name} authenticates as {user}, which has no ACLs"
        assert env["ONCEONLY_SASL_PASSWORD"] == f"${{{password_variable(user)}:?}}", name


def test_the_setup_job_renders_from_this_deployments_agreements() -> None:
    (render,) = [argv(compose_services()["setup-render"])]
    commands = [" ".join(c) for c in render]
    assert any("topics render --format kafka-topics --replicas 3 --min-insync-replicas 2" in c for c in commands)
    assert any("acls render --format kafka-acls --with-users --agreements onceonly.yaml" in c for c in commands)
    setup = " ".join(as_args(compose_services()["kafka-setup"]["command"]))
    for script in ("topics.sh", "acls.sh"):
        assert any(script in c for c in commands) and f"/setup/{script}" in setup


@pytest.fixture
def db_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_PASSWORD", "placeholder")


@pytest.mark.usefixtures("db_password")
def test_subscribers_match_the_configuration_and_the_agreements() -> None:
    configured = {c.department for c in load_subscribers(CONFIG).select(None)}
    running = {}
    for name, service in compose_services().items():
        if name.startswith("subscriber-"):
            (command,) = argv(service)
            running[name] = option_value(command, "--department")
            assert service_env(service)["ONCEONLY_SASL_USERNAME"] == running[name]
            assert "POSTGRES_PASSWORD" in service_env(service)  # the sink URL's ${POSTGRES_PASSWORD}
            assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert set(running.values()) == configured
    assert configured <= compose_holders().departments
    assert all(name == f"subscriber-{dept}" for name, dept in running.items())


def sql_tables(sql: str) -> dict[str, dict[str, set[str]]]:
    """database -> table -> columns, from init.sql."""
    out: dict[str, dict[str, set[str]]] = {}
    db = "onceonly"
    for statement in re.split(r";\s*\n|\n(?=\\connect)", sql):
        statement = re.sub(r"--[^\n]*", "", statement).strip()
        if m := re.match(r"\\connect (\w+)", statement):
            db = m.group(1)
            statement = statement[m.end() :].strip()
        if m := re.match(r"CREATE DATABASE (\w+)", statement):
            out.setdefault(m.group(1), {})
        if m := re.match(r"CREATE TABLE (\w+) \((.*)\)", statement, re.S):
            columns = {line.split()[0] for line in m.group(2).split(",") if line.strip()}
            out.setdefault(db, {})[m.group(1)] = columns
    return out


@pytest.mark.usefixtures("db_password")
def test_the_department_databases_have_the_tables_the_sinks_map() -> None:
    tables = sql_tables((COMPOSE_DIR / "postgres" / "init.sql").read_text())
    for sub in load_subscribers(CONFIG).select(None):
        sink: Any = sub.sink
        db = sink.url.rsplit("/", 1)[1]
        assert db in tables, f"{sub.department}: database {db} is not created"
        for entity, mapping in sink.table_mappings().items():
            assert mapping.table in tables[db], f"{sub.department}: {entity} table {mapping.table} missing"
            assert set(mapping.all_columns()) <= tables[db][mapping.table]


def test_every_required_variable_is_in_env_example() -> None:
    text = (COMPOSE_DIR / "compose.yaml").read_text()
    required = set(re.findall(r"\$\{([A-Z_]+)(?::\?[^}]*)?\}", text))
    example = dict(
        line.split("=", 1)
        for line in (COMPOSE_DIR / "env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert required <= set(example), f"missing from env.example: {sorted(required - set(example))}"


def test_no_secret_is_written_into_the_files() -> None:
    for path in [COMPOSE_DIR / "compose.yaml", COMPOSE_DIR / "onceonly.yaml", *COMPOSE_DIR.glob("kafka/*")]:
        assert literal_secrets(path.read_text()) == [], path.name
    assert literal_secrets('password="s3cret" REDIS_PASSWORD: hunter2 redis://:pw@r') == ["s3cret", "pw"]
    assert literal_secrets("  REDIS_PASSWORD: hunter2") == ["hunter2"]


def test_compose_file_is_self_consistent_yaml() -> None:
    data = compose()
    assert data["name"] == "onceonly"
    used_volumes = {
        v.split(":")[0]
        for s in compose_services().values()
        for v in s.get("volumes", [])
        if not v.startswith((".", "/"))
    }
    assert used_volumes <= set(data["volumes"])
    for s in compose_services().values():
        for v in s.get("volumes", []):
            if v.startswith("."):
                assert (COMPOSE_DIR / v.split(":")[0]).exists(), v
        assert s.get("networks", ["onceonly"]) == ["onceonly"]


def test_the_mounted_configuration_is_found_by_the_commands() -> None:
    for name, service in platform_services().items():
        if service.get("working_dir") is None:
            continue
        mounted = {v.split(":")[1] for v in service.get("volumes", [])}
        for command in argv(service):
            for arg in command:
                if arg.endswith(".yaml"):
                    assert str(Path(service["working_dir"]) / arg) in mounted, f"{name}: {arg} is not mounted"


def test_the_command_check_catches_mistakes() -> None:
    assert command_problem(["onceonly", "subscriber", "run", "onceonly.yaml", "--bogus"]) is not None
    assert command_problem(["onceonly", "subscriber", "run", "onceonly.yaml", "--metrics-port", "x"]) is not None
    assert command_problem(["onceonly", "nosuch", "run"]) is not None
    assert command_problem(["python", "-m", "services.nosuch"]) is not None
    assert command_problem(["onceonly", "topics", "render", "--format", "strimzi", "--replicas", "3"]) is None
    assert command_problem(["onceonly", "topics", "render", "--format", "bogus"]) is not None
