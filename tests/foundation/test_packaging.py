"""The wheel the platform image installs: built from what deploy/Dockerfile copies, run from outside the checkout.

An editable install finds ``schemas/`` in the checkout, so only a real wheel shows whether the catalog, the
departments and the Avro schemas ship (they once did not, and every command in the image failed at start).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def dockerfile_sources() -> list[str]:
    """The repository paths the image's build stage copies (``COPY a b ./`` lines without ``--from``)."""
    sources = []
    for line in (REPO / "deploy" / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            sources += line.split()[1:-1]
    return sources


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built (no isolation: the venv's setuptools) from a copy of exactly what the Dockerfile copies."""
    src = tmp_path_factory.mktemp("context")
    for name in dockerfile_sources():
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("wheels")
    build = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)]
    result = subprocess.run(build, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = out.glob("onceonly-*.whl")
    return built


def installed(wheel: Path, target: Path) -> Path:
    """The wheel unpacked as pip lays it into site-packages."""
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
    return target


def run_from(site: Path, cwd: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Python with ``site`` first on the path (ahead of the checkout's editable install), outside the checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    env["PYTHONPATH"] = str(site)
    command = [sys.executable, "-c", code, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=cwd, env=env)


def test_the_build_copies_the_packaging_files() -> None:
    sources = dockerfile_sources()
    assert {"pyproject.toml", "setup.py", "onceonly", "services", "connectors", "schemas"} <= set(sources)
    ignore = (REPO / "deploy" / "Dockerfile.dockerignore").read_text()
    assert all(f"!{name}" in ignore for name in sources), "the build context leaves out a copied path"


def test_the_wheel_holds_every_module_and_every_schema_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for top in ("onceonly", "services", "connectors"):
        for module in (REPO / top).rglob("*.py"):
            name = module.relative_to(REPO).as_posix()
            assert name in names or "__pycache__" in name, f"{name} is not in the wheel"
    schema_files = [p for p in (REPO / "schemas").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert any(p.suffix == ".avsc" and p.parent.name == "entities" for p in schema_files)
    for path in schema_files:
        name = f"onceonly/schemas/{path.relative_to(REPO / 'schemas').as_posix()}"
        assert name in names, f"{name} is not in the wheel"
    assert "onceonly/schemas/topics.yaml" in names and "onceonly/schemas/avro/entities/person.avsc" in names
    assert not [n for n in names if n.startswith("schemas/")], "schemas/ must ship inside onceonly, not at the top"


CHECK = """
import sys
from pathlib import Path
import onceonly
from onceonly.catalog import load_catalog, load_departments, schema_dir
from onceonly.standard.schemas import change_schema
site = Path(sys.argv[1]).resolve()
assert Path(onceonly.__file__).resolve().is_relative_to(site), onceonly.__file__
assert schema_dir().resolve() == site / "onceonly" / "schemas", schema_dir()
assert load_catalog().topics and load_departments().departments
print(change_schema("person")["name"])
"""


def test_the_installed_wheel_finds_its_schemas(wheel: Path, tmp_path: Path) -> None:
    site = installed(wheel, tmp_path / "site")
    result = run_from(site, tmp_path, CHECK, str(site))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip(), "no change schema derived"
    cli = run_from(site, tmp_path, "from onceonly.cli import main; main()", "topics", "render", "--format", "yaml")
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert re.search(r"change\.person", cli.stdout)


def test_a_wheel_without_schemas_is_one_clear_error(wheel: Path, tmp_path: Path) -> None:
    site = installed(wheel, tmp_path / "site")
    shutil.rmtree(site / "onceonly" / "schemas")
    cli = run_from(site, tmp_path, "from onceonly.cli import main; main()", "topics", "render", "--format", "yaml")
    assert cli.returncode != 0
    assert "cannot find the schemas folder" in cli.stderr and "Traceback" not in cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1
