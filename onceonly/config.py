"""``onceonly.yaml``: one file, one section per part (agreements, sources, subscribers, ...).

Each part validates its own section with its own pydantic model, so a mistake is reported with the
file, the section and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from onceonly.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: Path) -> object:
    """A YAML file's content; a broken file is one line naming where it broke, not PyYAML's multi-line dump."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: file not found") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(e)}") from e


def _yaml_problem(e: yaml.YAMLError) -> str:
    problem = getattr(e, "problem", None) or str(e).strip().splitlines()[0]
    mark = getattr(e, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(problem)


def load_yaml_file(path: Path) -> dict[str, Any]:
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def validation_error_line(source: str, err: ValidationError) -> str:
    """The first pydantic error as one line: ``file: section.field: message``."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top)"
    extra = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {where}: {first['msg']}{extra}"


def parse_model(model: type[M], data: object, source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(validation_error_line(source, e)) from e


def load_section(path: Path, section: str, model: type[M], *, required: bool = True) -> M:
    """Validate one top-level section of a config file against ``model``."""
    data = load_yaml_file(path)
    if section not in data:
        if required:
            raise ConfigError(f"{path}: no '{section}' section")
        data[section] = {}
    return parse_model(model, data[section], f"{path}: {section}")
