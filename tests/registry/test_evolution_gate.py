"""The evolution gate: an incompatible edit (a new field without default under BACKWARD) is refused, a compatible one
(the same field with a default) passes, against a registry and against a git ref, as a library and as the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from registry_helpers import RegistryProcess

from onceonly.catalog import schema_dir
from onceonly.standard.gate import check_against_registry, register_declared
from onceonly.standard.schemas import DeclaredSubject

REQUIRED = {"name": "nationality", "type": "string", "doc": "added without a default"}
OPTIONAL = {"name": "nationality", "type": ["null", "string"], "default": None, "doc": "added with a default"}


def person(ns: str, *extra: dict[str, Any]) -> dict[str, Any]:
    fields = [{"name": "id_number", "type": "string"}, {"name": "name", "type": "string"}, *extra]
    return {"type": "record", "name": "Person", "namespace": ns, "fields": fields}


def declared(subject: str, schema: dict[str, Any], mode: str = "BACKWARD") -> DeclaredSubject:
    return DeclaredSubject(subject, schema, mode, "test")


@pytest.mark.broker
def test_gate_against_a_registry(registry: RegistryProcess) -> None:
    ns = f"g{uuid.uuid4().hex[:8]}"
    subject = f"{ns}.change.person-value"
    first = register_declared([declared(subject, person(ns))], registry.url)
    assert [(r.action, r.version) for r in first] == [("registered", 1)]
    assert register_declared([declared(subject, person(ns))], registry.url)[0].action == "unchanged"

    report = check_against_registry([declared(subject, person(ns, REQUIRED))], registry.url)
    [result] = report.failures
    assert result.status == "incompatible"
    [problem] = result.problems
    assert f"{ns}.Person.nationality" in problem and "no default" in problem
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in problem and "registered version 1" in problem
    refused = register_declared([declared(subject, person(ns, REQUIRED))], registry.url)
    assert refused[0].action == "refused" and "nationality" in refused[0].message

    # the declared mode decides, not the registry's: under NONE the same edit passes the gate
    assert not check_against_registry([declared(subject, person(ns, REQUIRED), "NONE")], registry.url).failures

    good = check_against_registry([declared(subject, person(ns, OPTIONAL))], registry.url)
    assert [r.status for r in good.results] == ["compatible"]
    assert [r.action for r in register_declared([declared(subject, person(ns, OPTIONAL))], registry.url)] == [
        "registered"
    ]
    with registry.client() as http:
        assert http.get(f"/config/{subject}").json() == {"compatibilityLevel": "BACKWARD"}
        assert http.get(f"/subjects/{subject}/versions").json() == [1, 2]


@pytest.mark.broker
def test_gate_reports_bad_declarations(registry: RegistryProcess) -> None:
    subject = f"g{uuid.uuid4().hex[:8]}-value"
    bad = [
        declared(subject, {"type": "record", "name": "X", "fields": [{"name": "a", "type": "no.such.Type"}]}),
        declared(subject + "2", person("x"), "SIDEWAYS"),
    ]
    report = check_against_registry(bad, registry.url)
    assert [r.status for r in report.results] == ["invalid", "invalid"]
    assert "SIDEWAYS" in report.results[1].problems[0]


# -- the CLI on a copy of the real schemas/ in a git repository -----------------------------------------------------
def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=repo, check=True)


@pytest.fixture
def schemas_repo(tmp_path: Path) -> Path:
    """A git repository whose HEAD has the project's schemas as they are now."""
    repo = tmp_path / "repo"
    shutil.copytree(schema_dir(), repo / "schemas", ignore=shutil.ignore_patterns("__pycache__"))
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "schemas")
    return repo / "schemas"


def edit_person(schemas: Path, field: dict[str, Any]) -> None:
    path = schemas / "avro" / "entities" / "person.avsc"
    schema = json.loads(path.read_text())
    schema["fields"] = [f for f in schema["fields"] if f["name"] != field["name"]] + [field]
    path.write_text(json.dumps(schema, indent=2))


def cli(*args: str, prefix: str = "", tmp: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    env = {**base, "ONCEONLY_TOPIC_PREFIX": prefix, "ONCEONLY_STATE_DIR": str(tmp / "state"), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "onceonly", "schemas", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_check_against_git(schemas_repo: Path, tmp_path: Path) -> None:
    against = ["check", "--against", "git:HEAD", "--schemas-dir", str(schemas_repo)]
    unchanged = cli(*against, tmp=tmp_path)
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr

    edit_person(schemas_repo, REQUIRED)
    refused = cli(*against, tmp=tmp_path)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "PersonChange.before.nationality" in refused.stdout and "PersonChange.after.nationality" in refused.stdout
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in refused.stdout and "INCOMPATIBLE" in refused.stdout
    [line] = refused.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith("error: 1 of") and "git:HEAD" in line

    edit_person(schemas_repo, OPTIONAL)
    passed = cli(*against, tmp=tmp_path)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "compatible" in passed.stdout

    unknown = cli("check", "--against", "git:no-such-ref", "--schemas-dir", str(schemas_repo), tmp=tmp_path)
    assert unknown.returncode == 1 and "unknown git ref" in unknown.stderr and "Traceback" not in unknown.stderr


@pytest.mark.broker
def test_cli_register_then_check_against_the_registry(
    registry: RegistryProcess, schemas_repo: Path, tmp_path: Path
) -> None:
    prefix = f"c{uuid.uuid4().hex[:8]}."
    where = ["--schemas-dir", str(schemas_repo)]
    first = cli("register", "--registry", registry.url, *where, prefix=prefix, tmp=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"{prefix}change.person-value" in first.stdout and "registered" in first.stdout
    again = cli("register", "--registry", registry.url, *where, prefix=prefix, tmp=tmp_path)
    assert again.returncode == 0 and "registered " not in again.stdout.replace("registered or", "")

    edit_person(schemas_repo, REQUIRED)
    check = cli("check", "--against", registry.url, *where, prefix=prefix, tmp=tmp_path)
    assert check.returncode == 1 and "PersonChange.before.nationality" in check.stdout
    refused = cli("register", "--registry", registry.url, *where, prefix=prefix, tmp=tmp_path)
    assert refused.returncode == 1 and "REFUSED" in refused.stdout and "nationality" in refused.stdout

    edit_person(schemas_repo, OPTIONAL)
    assert cli("check", "--against", registry.url, *where, prefix=prefix, tmp=tmp_path).returncode == 0
    assert cli("register", "--registry", registry.url, *where, prefix=prefix, tmp=tmp_path).returncode == 0
    with registry.client() as http:
        assert http.get(f"/subjects/{prefix}change.person-value/versions").json() == [1, 2]
