"""The evolution gate: a schema edit that breaks its subject's declared compatibility mode is refused before it
reaches a topic (``onceonly schemas check`` locally and in CI, ``onceonly schemas register`` on deploy).

The declared schemas are checked against a history: what a registry holds (any Confluent-compatible one, over
HTTP) or the same files at a git ref. The check is local and under the *declared* mode, with the same avro-based
checker the embedded registry uses, so the gate and the registry cannot disagree.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import quote

import httpx

from onceonly.errors import OnceonlyError
from onceonly.standard.errors import RegistryError, RegistryUnavailable
from services.registry.compat import InvalidSchema, Parsed, check, normalize_level, parse

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
History = Mapping[str, Sequence[tuple[str, Parsed]]]  # subject -> (label, schema), oldest first


class Declared(Protocol):
    """What the gate needs of ``onceonly.standard.schemas.DeclaredSubject``."""

    @property
    def subject(self) -> str: ...
    @property
    def schema(self) -> dict[str, Any]: ...
    @property
    def compatibility(self) -> str: ...
    @property
    def source(self) -> str: ...


class GateError(OnceonlyError):
    """The gate could not run (bad git ref, not a git checkout, ...)."""


class EvolutionRefused(OnceonlyError):
    """At least one declared schema breaks its compatibility mode or cannot be registered."""


Status = Literal["new", "unchanged", "compatible", "incompatible", "invalid"]


@dataclass
class SubjectResult:
    """The verdict for one subject; ``problems`` are whole sentences naming field, types and rule."""

    subject: str
    compatibility: str
    source: str
    status: Status
    detail: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status in ("incompatible", "invalid")


@dataclass
class GateReport:
    against: str
    results: list[SubjectResult]

    @property
    def failures(self) -> list[SubjectResult]:
        return [r for r in self.results if r.failed]


def _judge(d: Declared, history: Sequence[tuple[str, Parsed]]) -> SubjectResult:
    result = SubjectResult(d.subject, d.compatibility, d.source, "new")
    level = normalize_level(d.compatibility)
    try:
        new = parse(json.dumps(d.schema))
    except InvalidSchema as e:
        result.status, result.problems = "invalid", [f"not a valid Avro schema: {e}"]
        return result
    if level is None:
        result.status, result.problems = "invalid", [f"unknown compatibility mode {d.compatibility!r}"]
        return result
    if not history:
        result.detail = "nothing to compare with"
        return result
    same = [label for label, old in history if old.key == new.key]
    if same:
        result.status, result.detail = "unchanged", f"same as {same[-1]}"
        return result
    result.problems = check(level, new, history)
    result.status = "incompatible" if result.problems else "compatible"
    checked = history if level.endswith("_TRANSITIVE") else history[-1:]
    result.detail = ", ".join(label for label, _ in checked) if level != "NONE" else "nothing (mode NONE)"
    return result


def check_declared(declared: Sequence[Declared], history: History, against: str) -> GateReport:
    """Each declared subject judged under its own declared mode against its history."""
    return GateReport(against, [_judge(d, history.get(d.subject, ())) for d in declared])


# -- the registry as history ---------------------------------------------------------------------------------------
class _Registry:
    """The few Confluent REST calls the gate makes, with one-line errors."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout, headers={"Accept": CONTENT_TYPE})

    def __enter__(self) -> _Registry:
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()

    def call(self, method: str, path: str, body: Any = None, missing: tuple[int, ...] = ()) -> Any:
        """The answer's JSON; None when the answer is one of the ``missing`` Confluent error codes."""
        try:
            headers = {"Content-Type": CONTENT_TYPE} if body is not None else None
            response = self.http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as e:
            raise RegistryUnavailable(f"schema registry at {self.url} is unreachable: {e}") from e
        if response.is_success:
            return response.json()
        try:
            error = response.json()
            code, message = int(error["error_code"]), str(error["message"])
        except (ValueError, KeyError, TypeError):
            code, message = response.status_code, response.text[:200]
        if code in missing:
            return None
        raise RegistryError(response.status_code, code, message)

    def history(self, subject: str) -> list[tuple[str, Parsed]]:
        s = quote(subject, safe="")
        versions = self.call("GET", f"/subjects/{s}/versions", missing=(40401,)) or []
        out = []
        for v in versions:
            answer = self.call("GET", f"/subjects/{s}/versions/{v}")
            out.append((f"registered version {v}", parse(str(answer["schema"]))))
        return out


def check_against_registry(declared: Sequence[Declared], url: str) -> GateReport:
    """Judge each declared schema against every version the registry holds for its subject."""
    with _Registry(url) as registry:
        history = {d.subject: registry.history(d.subject) for d in declared}
    return check_declared(declared, history, url)


@dataclass
class Registration:
    subject: str
    compatibility: str
    action: Literal["registered", "unchanged", "refused"]
    schema_id: int | None = None
    version: int | None = None
    message: str = ""


def register_declared(declared: Sequence[Declared], url: str) -> list[Registration]:
    """Set each subject's declared mode, then register its schema (a schema already there is left as it is).

    The mode is set first so the registry checks the new version under the declared mode, not whatever it had.
    A refused subject does not stop the others; the caller decides what a refusal means.
    """
    out: list[Registration] = []
    with _Registry(url) as registry:
        for d in declared:
            s = quote(d.subject, safe="")
            level = normalize_level(d.compatibility) or d.compatibility
            body = {"schema": json.dumps(d.schema), "schemaType": "AVRO"}
            try:
                current = registry.call("GET", f"/config/{s}", missing=(40401, 40408))
                if not current or current.get("compatibilityLevel") != level:
                    registry.call("PUT", f"/config/{s}", {"compatibility": level})
                found = registry.call("POST", f"/subjects/{s}", body, missing=(40401, 40403))
                if found:
                    out.append(Registration(d.subject, level, "unchanged", found["id"], found.get("version")))
                    continue
                schema_id = registry.call("POST", f"/subjects/{s}/versions", body)["id"]
                found = registry.call("POST", f"/subjects/{s}", body, missing=(40401, 40403)) or {}
                out.append(Registration(d.subject, level, "registered", schema_id, found.get("version")))
            except RegistryError as e:
                if e.status >= 500:
                    raise
                out.append(Registration(d.subject, level, "refused", message=e.message))
    return out


# -- git as history ------------------------------------------------------------------------------------------------
def _git(cwd: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False, timeout=60)
    except FileNotFoundError as e:
        raise GateError("git is not installed", hint="install git or check --against a registry URL") from e
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise GateError(f"git {' '.join(args)}: {reason[-1] if reason else 'failed'}")
    return done.stdout


def export_at_ref(schemas_dir: Path, ref: str, dest: Path) -> Path:
    """Write the files of ``schemas_dir`` as they were at ``ref`` under ``dest``; returns the exported folder."""
    where = schemas_dir.resolve()
    top = Path(_git(where, "rev-parse", "--show-toplevel").decode().strip())
    rel = where.relative_to(top).as_posix()
    try:
        _git(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except GateError:
        raise GateError(f"unknown git ref {ref!r} in {top}", hint="e.g. git:HEAD, git:origin/main") from None
    names = _git(top, "ls-tree", "-r", "--name-only", ref, "--", rel).decode().splitlines()
    if not names:
        raise GateError(f"{rel}/ does not exist at git ref {ref}")
    for name in names:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_git(top, "show", f"{ref}:{name}"))
    return dest / rel


def check_against_git(
    declared: Sequence[Declared], ref: str, schemas_dir: Path, load: Callable[[Path], Sequence[Declared]]
) -> GateReport:
    """Judge each declared schema against the same subject declared at ``ref`` (``load`` reads a schemas folder)."""
    with tempfile.TemporaryDirectory(prefix="onceonly-gate-") as tmp:
        before = load(export_at_ref(schemas_dir, ref, Path(tmp)))
        history: dict[str, list[tuple[str, Parsed]]] = {}
        for old in before:
            try:
                history[old.subject] = [(f"the schema at {ref}", parse(json.dumps(old.schema)))]
            except InvalidSchema:
                continue  # it was broken at the ref: nothing to stay compatible with
    return check_declared(declared, history, f"git:{ref}")
