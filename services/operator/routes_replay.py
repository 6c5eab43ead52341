"""HTTP for the operator's precise tools: replay, bootstrap, status, trace, lag (``router``, included by the app).

    POST /api/replay                      {"holder", "from"|"by_duration"|"from_offset", "to", "keys", "dry_run", ...}
    POST /api/holders/{holder}/bootstrap  {"reason", "operator", "dry_run"}
    GET  /api/status/{event_id}           ?ledger=false to skip the ledgers
    GET  /api/trace?key=...&type=person
    GET  /api/lag?holder=...

Settings come from ``app.state.settings`` (the operator app sets it), else the environment; the agreements from
``app.state.agreements`` (``onceonly operator serve -c CONFIG``, read at start), else the file named by
``ONCEONLY_AGREEMENTS``, else ``./onceonly.yaml`` as the CLI's replay reads it, read per request. A replay or
bootstrap runs in the request (FastAPI's thread pool) and answers when it has finished; a second one for the same
holder is refused with 409 naming the first. An operator mistake is a 400 with the same one line as the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from onceonly.errors import BrokerUnavailable, ConfigError, OnceonlyError
from onceonly.settings import Settings, load_settings
from services.distributor.agreements import Agreements
from services.operator.replay_errors import HolderBusy, UnknownEvent

router = APIRouter(tags=["replay"])
T = TypeVar("T")


class ReplayRequest(BaseModel):
    holder: str
    start: str | None = Field(None, alias="from", description="ISO 8601 start time")
    by_duration: str | None = Field(None, description="start this long ago: 2h, 90m")
    from_offset: int | None = Field(None, ge=0)
    to: str | None = Field(None, description="ISO 8601 end time (exclusive)")
    keys: list[str] = Field(default_factory=list)
    entity_types: list[str] = Field(default_factory=list)
    reason: str | None = None
    operator: str | None = Field(None, description="who (kept in the replay ledger); default: the service's user")
    rate: float | None = Field(None, gt=0)
    dry_run: bool = False


class BootstrapRequest(BaseModel):
    reason: str | None = None
    operator: str | None = None
    rate: float | None = Field(None, gt=0)
    dry_run: bool = False


def _settings(request: Request) -> Settings:
    found = getattr(request.app.state, "settings", None)
    return found if isinstance(found, Settings) else load_settings()


def _agreements(request: Request) -> Agreements:
    found = getattr(request.app.state, "agreements", None)
    if isinstance(found, Agreements):
        return found
    from services.distributor import load_agreements

    named = os.environ.get("ONCEONLY_AGREEMENTS")
    path = Path(named or "onceonly.yaml")
    if not path.is_file():
        where = f"ONCEONLY_AGREEMENTS names {path}, which is not a file" if named else f"no --config, and no {path}"
        raise ConfigError(
            f"no agreements to replay or bootstrap with: {where}",
            hint="start the service with: onceonly operator serve --config onceonly.yaml (or set ONCEONLY_AGREEMENTS)",
        )
    return load_agreements(path)


def _answer(call: Callable[[], T]) -> T:
    """Operator mistakes as 4xx with the CLI's one line; an unreachable broker or Redis as 503."""
    try:
        return call()
    except HolderBusy as e:
        raise HTTPException(409, str(e)) from e
    except UnknownEvent as e:
        raise HTTPException(404, str(e)) from e
    except BrokerUnavailable as e:
        raise HTTPException(503, str(e)) from e
    except OnceonlyError as e:
        raise HTTPException(400, str(e)) from e


@router.post("/api/replay")
def replay(body: ReplayRequest, request: Request) -> dict[str, Any]:
    from services.operator.replay import plan_replay, run_replay
    from services.operator.time_window import Window

    settings = _settings(request)

    def go() -> dict[str, Any]:
        window = Window.of(start=body.start, by_duration=body.by_duration, from_offset=body.from_offset, end=body.to)
        plan = plan_replay(
            settings, _agreements(request), body.holder, window, keys=body.keys, entity_types=body.entity_types or None
        )
        if body.dry_run:
            return {"dry_run": True, "plan": plan.to_json()}
        result = run_replay(settings, plan, reason=body.reason, operator=body.operator, rate=body.rate)
        return {"dry_run": False, "plan": plan.to_json(), "result": result.to_json()}

    return _answer(go)


@router.post("/api/holders/{holder}/bootstrap")
def bootstrap(holder: str, body: BootstrapRequest, request: Request) -> dict[str, Any]:
    from services.operator.bootstrap import plan_bootstrap, run_bootstrap

    settings = _settings(request)

    def go() -> dict[str, Any]:
        agreements = _agreements(request)
        if body.dry_run:
            plan, _, _ = plan_bootstrap(settings, agreements, holder)
            return {"dry_run": True, "plan": plan.to_json()}
        result = run_bootstrap(settings, agreements, holder, reason=body.reason, operator=body.operator, rate=body.rate)
        return {"dry_run": False, "plan": result.plan.to_json(), "result": result.to_json()}

    return _answer(go)


@router.get("/api/status/{event_id}")
def status(event_id: str, request: Request, ledger: bool = True) -> list[dict[str, Any]]:
    from services.operator.propagation import status as change_status

    settings = _settings(request)
    return _answer(lambda: [line.to_json() for line in change_status(settings, event_id, ledger=ledger)])


@router.get("/api/trace")
def trace(
    request: Request,
    key: Annotated[str, Query(min_length=1)],
    entity_type: Annotated[str, Query(alias="type")] = "person",
    ledger: bool = True,
) -> list[dict[str, Any]]:
    from services.operator.propagation import trace as entity_trace

    settings = _settings(request)
    return _answer(lambda: [line.to_json() for line in entity_trace(settings, key, entity_type, ledger=ledger)])


@router.get("/api/lag")
def lag(request: Request, holder: str | None = None) -> list[dict[str, Any]]:
    from services.operator.lag_report import measure

    settings = _settings(request)
    subscribers = getattr(request.app.state, "subscribers", None)  # the config's subscribers, when it has them
    return _answer(lambda: [row.to_json() for row in measure(settings, holder, subscribers=subscribers)])
