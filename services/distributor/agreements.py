"""Sharing agreements: who may receive which fields of which entity types, for what purpose, and when.

The law lets a department receive what its agreement grants and nothing more, so an agreement that cannot be
applied exactly (a field the entity does not have, two agreements in force at once that say different things)
is refused when it is loaded, never interpreted at run time.

    agreements:
      - id: gjj-2024-001
        holder: housing_fund
        purpose: keep provident fund accounts up to date
        legal_basis: Regulations on the Administration of Housing Provident Fund, art. 13
        valid_from: 2024-01-01          # dates are whole days in UTC; valid_to is the last day in force
        valid_to: 2028-12-31
        interest: interest              # all | interest (only entities the holder registered interest in)
        grants: {person: [id_number, name, address, status]}     # or person: "*"
        condition: {field: district_code, in: ["110105"]}          # optional; also prefix: ["1101"]
        overrides: [address_secret]     # citizen restriction flags this agreement may override
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from onceonly.catalog import load_departments
from onceonly.config import load_yaml_file, parse_model
from onceonly.errors import ConfigError
from onceonly.standard import entity_schema, entity_types

Flag = Literal["address_secret", "identity_protected", "no_commercial_use"]


def _moment(value: object) -> object:
    """``2025-12-31`` is a day (in force to its end); anything with a time is an instant."""
    if isinstance(value, str) and len(value.strip()) == 10:
        return date.fromisoformat(value.strip())
    return value


Moment = Annotated[datetime | date, BeforeValidator(_moment)]

FOREVER = datetime.max.replace(tzinfo=UTC)


class Condition(BaseModel):
    """Deliver only entities whose ``field`` is one of ``in`` or starts with one of ``prefix``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    field: str
    values: tuple[str, ...] = Field((), alias="in")
    prefixes: tuple[str, ...] = Field((), alias="prefix")

    @model_validator(mode="after")
    def _something_to_match(self) -> Condition:
        if not self.values and not self.prefixes:
            raise ValueError("a condition needs 'in' or 'prefix' values")
        return self

    def matches(self, entity: Mapping[str, Any] | None) -> bool:
        if entity is None:
            return False
        value = entity.get(self.field)
        if value is None:
            return False
        text = str(value)
        return text in self.values or any(text.startswith(p) for p in self.prefixes)

    def describe(self) -> str:
        parts = [f"{self.field} in {list(self.values)}"] if self.values else []
        parts += [f"{self.field} starts with {list(self.prefixes)}"] if self.prefixes else []
        return " or ".join(parts)


def _start(value: Moment) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.combine(value, time.min, UTC)


def _end(value: Moment | None) -> datetime:
    """Exclusive end: a date is in force until the end of that day."""
    if value is None:
        return FOREVER
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.combine(value + timedelta(days=1), time.min, UTC)


class Agreement(BaseModel):
    """One holder's right to receive fields of some entity types."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    holder: str
    purpose: str = Field(min_length=3)
    legal_basis: str = Field(min_length=3)
    grants: dict[str, list[str] | Literal["*"]] = Field(min_length=1)
    interest: Literal["all", "interest"] = "all"
    condition: Condition | None = None
    overrides: tuple[Flag, ...] = ()
    commercial_use: bool = False
    valid_from: Moment
    valid_to: Moment | None = None

    @field_validator("grants")
    @classmethod
    def _no_empty_grant(cls, grants: dict[str, list[str] | str]) -> dict[str, list[str] | str]:
        for entity_type, fields in grants.items():
            if isinstance(fields, list) and not fields:
                raise ValueError(f"{entity_type}: grants no fields (list them, or '*' for all)")
        return grants

    @model_validator(mode="after")
    def _ends_after_it_starts(self) -> Agreement:
        if self.ends <= self.starts:
            raise ValueError(f"valid_to {self.valid_to} is before valid_from {self.valid_from}")
        return self

    @cached_property
    def starts(self) -> datetime:
        return _start(self.valid_from)

    @cached_property
    def ends(self) -> datetime:
        return _end(self.valid_to)

    def in_force(self, now: datetime) -> bool:
        return self.starts <= now < self.ends

    def why_not_in_force(self, now: datetime) -> str | None:
        """None when in force at ``now``; else the reason in words (for the ledger)."""
        if now < self.starts:
            return f"agreement {self.id} is not in force until {self.valid_from}"
        if now >= self.ends:
            return f"agreement {self.id} expired (valid to {self.valid_to})"
        return None

    def fields(self, entity_type: str, root: Path | None = None) -> tuple[str, ...]:
        """Granted fields of ``entity_type`` in the entity schema's order."""
        grant = self.grants[entity_type]
        names = [f["name"] for f in entity_schema(entity_type, root)["fields"]]
        return tuple(names if grant == "*" else [n for n in names if n in grant])

    def terms(self, entity_type: str, root: Path | None = None) -> dict[str, Any]:
        """What a holder gets for one entity type: two agreements with equal terms are duplicates."""
        return {
            "fields": self.fields(entity_type, root),
            "interest": self.interest,
            "condition": self.condition.describe() if self.condition else None,
            "overrides": tuple(sorted(self.overrides)),
            "commercial_use": self.commercial_use,
        }


class Agreements:
    """The checked set of agreements, indexed by entity type."""

    def __init__(self, items: Iterable[Agreement], source: str = "agreements", root: Path | None = None) -> None:
        self.items = list(items)
        self.source = source
        self.root = root
        self._by_entity: dict[str, list[Agreement]] = {}
        for a in self.items:
            for entity_type in a.grants:
                self._by_entity.setdefault(entity_type, []).append(a)

    def __iter__(self) -> Iterator[Agreement]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def get(self, agreement_id: str) -> Agreement:
        for a in self.items:
            if a.id == agreement_id:
                return a
        raise ConfigError(f"no agreement {agreement_id!r} in {self.source}")

    def for_entity(self, entity_type: str) -> list[Agreement]:
        return self._by_entity.get(entity_type, [])

    def for_holder(self, holder: str, entity_type: str) -> list[Agreement]:
        return [a for a in self.for_entity(entity_type) if a.holder == holder]

    def governing(self, holder: str, entity_type: str, now: datetime) -> Agreement | None:
        """The agreement in force for this holder and entity type, else the one that ended last (to say why)."""
        candidates = self.for_holder(holder, entity_type)
        for a in candidates:
            if a.in_force(now):
                return a
        return max(candidates, key=lambda a: a.ends, default=None)

    @property
    def holders(self) -> list[str]:
        return sorted({a.holder for a in self.items})


def check(agreements: list[Agreement], source: str, *, root: Path | None = None, departments: list[str]) -> None:
    """Refuse what cannot be applied exactly: unknown holders, entity types, fields; contradictory overlaps."""
    known_types = entity_types(root)
    seen: dict[str, int] = {}
    for i, a in enumerate(agreements):
        where = f"{source}: agreement {a.id}"
        if a.id in seen:
            raise ConfigError(f"{where}: the id is used twice (entries {seen[a.id] + 1} and {i + 1})")
        seen[a.id] = i
        if a.holder not in departments:
            raise ConfigError(
                f"{where}: holder {a.holder!r} is not a department", hint=f"known: {', '.join(departments)}"
            )
        for entity_type, grant in a.grants.items():
            if entity_type not in known_types:
                raise ConfigError(
                    f"{where}: grants entity type {entity_type!r}, which does not exist",
                    hint=f"known: {', '.join(known_types)}",
                )
            names = [f["name"] for f in entity_schema(entity_type, root)["fields"]]
            if grant != "*" and (unknown := [f for f in grant if f not in names]):
                raise ConfigError(
                    f"{where}: grants {', '.join(f'{entity_type}.{f}' for f in unknown)}, "
                    f"which {entity_type} does not have",
                    hint=f"{entity_type} fields: {', '.join(names)}",
                )
            if a.condition and a.condition.field not in names:
                raise ConfigError(
                    f"{where}: its condition is on {a.condition.field}, which {entity_type} does not have",
                    hint=f"{entity_type} fields: {', '.join(names)}",
                )
    _check_overlaps(agreements, source, root)


def _check_overlaps(agreements: list[Agreement], source: str, root: Path | None) -> None:
    """At most one agreement per holder and entity type may be in force at any moment."""
    for i, a in enumerate(agreements):
        for b in agreements[i + 1 :]:
            if a.holder != b.holder or not (a.starts < b.ends and b.starts < a.ends):
                continue
            for entity_type in sorted(set(a.grants) & set(b.grants)):
                ta, tb = a.terms(entity_type, root), b.terms(entity_type, root)
                period = f"from {max(a.starts, b.starts).date()} to {_last_day(min(a.ends, b.ends))}"
                differ = [f"{k}: {_words(ta[k])} vs {_words(tb[k])}" for k in ta if ta[k] != tb[k]]
                what = f"contradictory overlap ({'; '.join(differ)})" if differ else "duplicate grant"
                raise ConfigError(
                    f"{source}: agreements {a.id} and {b.id} both grant {a.holder} {entity_type} {period}: {what}",
                    hint="end one agreement before the other starts",
                )


def _words(value: Any) -> str:
    return "[" + ", ".join(value) + "]" if isinstance(value, tuple) else str(value)


def _last_day(end: datetime) -> str:
    return "open end" if end == FOREVER else str((end - timedelta(microseconds=1)).date())


class _Section(BaseModel):
    """``agreements:`` as a list, or ``{include: [files or folders], items: [...]}``."""

    model_config = ConfigDict(extra="forbid")

    include: list[str] = []
    items: list[Agreement] = []


def _section(data: object, source: str) -> _Section:
    if isinstance(data, list):
        data = {"items": data}
    return parse_model(_Section, data, source)


def _included(base: Path, entry: str) -> list[Path]:
    path = (base / entry).resolve()
    if path.is_dir():
        return sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
    if path.is_file():
        return [path]
    raise ConfigError(f"{base}: included agreements {entry!r} do not exist ({path})")


def load_agreements(
    path: Path, *, root: Path | None = None, departments_file: Path | None = None, departments: list[str] | None = None
) -> Agreements:
    """Read the ``agreements`` section of ``path`` (and the files it includes) and check every agreement."""
    data = load_yaml_file(path)
    if "agreements" not in data:
        raise ConfigError(f"{path}: no 'agreements' section")
    section = _section(data["agreements"], f"{path}: agreements")
    items = list(section.items)
    for entry in section.include:
        for file in _included(path.parent, entry):
            included = load_yaml_file(file).get("agreements", [])
            items += _section(included, f"{file}: agreements").items
    codes = departments if departments is not None else load_departments(departments_file).codes()
    check(items, str(path), root=root, departments=codes)
    if not items:
        raise ConfigError(f"{path}: the 'agreements' section holds no agreement")
    return Agreements(items, str(path), root)


def utc_now() -> datetime:
    return datetime.now(UTC)
