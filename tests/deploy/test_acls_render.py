"""`onceonly acls render`: least privilege per department, derived from the catalog, departments and agreements."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from onceonly.catalog import load_catalog, load_departments, schema_dir
from onceonly.cli import app
from onceonly.errors import ConfigError
from onceonly.render.acls import PLATFORM_PRINCIPALS, Acl, Holders, password_variable, render_acls
from onceonly.settings import Settings
from onceonly.topics import desired_topics
from services.distributor.agreements import load_agreements

runner = CliRunner()
DEPARTMENTS = load_departments()
CATALOG = load_catalog()


def reference_holders() -> Holders:
    path = schema_dir() / "agreements.yaml"
    return Holders.from_agreements(load_agreements(path, departments=DEPARTMENTS.codes()), str(path))


def rules(acls: list[Acl], principal: str, operation: str, resource_type: str = "topic") -> set[tuple[str, str]]:
    return {
        (a.resource, a.pattern)
        for a in acls
        if a.principal == principal and a.resource_type == resource_type and operation in a.operations
    }


def literal(names: set[str]) -> set[tuple[str, str]]:
    return {(n, "literal") for n in names}


@pytest.fixture(scope="module")
def acls() -> list[Acl]:
    return render_acls(Settings(), CATALOG, DEPARTMENTS, reference_holders())


@pytest.mark.parametrize("code", DEPARTMENTS.codes())
def test_a_department_writes_only_its_authoritys_change_topics(acls: list[Acl], code: str) -> None:
    dept = DEPARTMENTS.get(code)
    changes = {CATALOG.change_topic(e) for e in dept.authority_for}
    writes = rules(acls, code, "Write")
    assert {t for t, _ in writes if t.startswith("change.")} == changes
    platform = {"receipts", f"dlq.{code}", "interest"} | ({"source.heartbeats"} if changes else set())
    assert writes - literal(changes) <= literal(platform)
    assert all(pattern == "literal" for _, pattern in writes)  # never a prefix: no topic created later is covered


@pytest.mark.parametrize("code", DEPARTMENTS.codes())
def test_a_department_reads_only_its_own_inbox_with_its_own_group(acls: list[Acl], code: str) -> None:
    assert rules(acls, code, "Read") == literal({f"inbox.{code}"})
    assert rules(acls, code, "Read", "group") == literal({f"subscriber.{code}"})


def test_every_holder_of_an_agreement_reads_its_inbox(acls: list[Acl]) -> None:
    holders = reference_holders()
    assert holders.departments == {
        a.holder for a in load_agreements(Path(holders.source), departments=DEPARTMENTS.codes())
    }
    for code in holders.departments:
        assert ("inbox." + code, "literal") in rules(acls, code, "Read")


def test_a_department_without_an_agreement_gets_no_inbox_rights(tmp_path: Path) -> None:
    path = tmp_path / "onceonly.yaml"
    reference = yaml.safe_load((schema_dir() / "agreements.yaml").read_text())["agreements"]
    path.write_text(yaml.safe_dump({"agreements": [a for a in reference if a["holder"] in ("tax", "housing_fund")]}))
    result = runner.invoke(app, ["acls", "render", "--format", "strimzi", "--agreements", str(path)])
    assert result.exit_code == 0, result.output
    users = {u["metadata"]["name"]: u for u in yaml.safe_load_all(result.stdout) if u}
    resources = {name: {r["resource"]["name"] for r in u["spec"]["authorization"]["acls"]} for name, u in users.items()}
    assert "inbox.tax" in resources["tax"] and "inbox.housing_fund" in resources["housing-fund"]
    assert resources["hrss"] == {"change.pension", "source.heartbeats"}  # an authority, holding nothing here
    assert "interest" in resources["housing-fund"] and "interest" not in resources["tax"]  # interest-mode only


def test_without_agreements_every_department_may_hold_and_the_output_says_so() -> None:
    result = runner.invoke(app, ["acls", "render", "--no-agreements"])
    assert result.exit_code == 0, result.output
    assert "# holders from departments.yaml (no agreements given" in result.stdout
    for code in DEPARTMENTS.codes():
        assert (
            f"--allow-principal User:{code} --operation Read --operation Describe --topic inbox.{code} "
            in result.stdout
        )


def test_no_department_reads_a_change_topic_or_another_inbox(acls: list[Acl]) -> None:
    for code in DEPARTMENTS.codes():
        for resource, _ in rules(acls, code, "Read"):
            assert not resource.startswith("change.")
            assert resource == f"inbox.{code}"


def test_every_literal_topic_exists_in_the_catalog_and_every_prefix_covers_one(acls: list[Acl]) -> None:
    names = {t.name for t in desired_topics(Settings(), CATALOG, DEPARTMENTS.codes())}
    for a in acls:
        if a.resource_type != "topic":
            continue
        if a.pattern == "literal":
            assert a.resource in names, a
        else:
            assert any(n.startswith(a.resource) for n in names), a


def test_platform_principals_do_their_jobs(acls: list[Acl]) -> None:
    assert rules(acls, "distributor", "Read") >= {("change.", "prefixed"), ("interest", "literal")}
    assert rules(acls, "distributor", "Write") >= {
        ("inbox.", "prefixed"),
        ("audit.deliveries", "literal"),
        ("dlq.distributor", "literal"),
    }
    assert ("distributor", "prefixed") in rules(acls, "distributor", "Read", "group")
    assert rules(acls, "registry", "Write") == literal({"_schemas"})
    assert rules(acls, "tracker", "Read") == literal({"receipts"})
    assert rules(acls, "gateway", "Read") == set()  # it only publishes
    assert {a.principal for a in acls} == set(DEPARTMENTS.codes()) | set(PLATFORM_PRINCIPALS)


def test_the_deployments_topic_prefix_applies_to_topics_and_groups() -> None:
    acls = render_acls(Settings(topic_prefix="t1."), CATALOG, DEPARTMENTS)
    for a in acls:
        if a.resource_type == "topic" or a.resource.startswith(("subscriber.", "distributor", "tracker", "operator")):
            assert a.resource.startswith("t1."), a
    assert ("t1.inbox.tax", "literal") in rules(acls, "tax", "Read")


def test_the_kafka_acls_script_is_valid_shell_and_holds_no_secret(acls: list[Acl]) -> None:
    result = runner.invoke(app, ["acls", "render", "--with-users"])
    assert result.exit_code == 0, result.output
    lines = [shlex.split(line) for line in result.stdout.splitlines() if line.startswith('"$KAFKA_BIN"')]
    acl_lines = [line for line in lines if line[0].endswith("kafka-acls.sh")]
    user_lines = [line for line in lines if line[0].endswith("kafka-configs.sh")]
    assert len(acl_lines) == len(acls)
    principals = {a.principal for a in acls}
    assert {line[line.index("--entity-name") + 1] for line in user_lines} == principals
    for line in user_lines:
        user = line[line.index("--entity-name") + 1]
        assert line[line.index("--add-config") + 1] == f"SCRAM-SHA-512=[password=${{{password_variable(user)}:?}}]"
    for line in acl_lines:
        assert line[line.index("--allow-principal") + 1].startswith("User:")
        assert line[line.index("--resource-pattern-type") + 1] in ("literal", "prefixed")
    assert not re.search(r"password=(?!\$\{)", result.stdout)


def test_strimzi_acls_use_strimzi_names() -> None:
    result = runner.invoke(app, ["acls", "render", "--format", "strimzi", "--auth", "tls", "--cluster", "gov"])
    assert result.exit_code == 0, result.output
    users = [u for u in yaml.safe_load_all(result.stdout) if u]
    assert {u["kind"] for u in users} == {"KafkaUser"}
    assert all(u["metadata"]["labels"]["strimzi.io/cluster"] == "gov" for u in users)
    patterns = {r["resource"]["patternType"] for u in users for r in u["spec"]["authorization"]["acls"]}
    assert patterns == {"literal", "prefix"}


def test_a_broken_agreements_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("agreements:\n  - id: x\n    holder: nobody\n")
    result = runner.invoke(app, ["acls", "render", "--agreements", str(path)])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)  # main() prints it as one line, no traceback
    assert str(path) in str(result.exception)
