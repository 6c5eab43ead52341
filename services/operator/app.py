"""The operator service: dead letters (list, show, re-drive), the scorecard, a live page, health and metrics, plus
replay, bootstrap, status, trace and lag (``routes_replay``).

It holds no state of its own: everything comes from Kafka (receipts, dead-letter topics, the operators' ledger,
committed offsets) through one ``OperatorView`` refreshed incrementally, so a restart loses nothing and several
instances agree. It has no login of its own: bind it to localhost or put it behind the deployment's
authenticating proxy; re-drives record the operator name they are given in the audit ledger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from prometheus_client import Gauge, generate_latest
from pydantic import BaseModel, Field

from onceonly import metrics
from onceonly.config import load_yaml_file
from onceonly.errors import BrokerUnavailable, ConfigError, OnceonlyError
from onceonly.settings import Settings, load_settings
from onceonly.standard import RegistryClient, RegistryUnavailable, Serde
from services.operator.dead_letters import DeadLetterId, UnknownDeadLetter, all_sources, check_source
from services.operator.dlq_view import letter_detail
from services.operator.holder_lag import subscriber_group
from services.operator.record_edit import edit_letter
from services.operator.redrive import AlreadyRedriven, NotRedrivable, Redriven, Redriver
from services.operator.routes_replay import router as replay_router
from services.operator.scorecard import parse_duration_ms
from services.operator.scorecard_render import html_page
from services.operator.view import OperatorView

if TYPE_CHECKING:
    from services.distributor.agreements import Agreements
    from services.subscriber.config import SubscribersConfig

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("live_page.html")
DEAD_LETTERS_OPEN = Gauge("onceonly_dead_letters_open", "Dead letters not re-driven yet", ["source"])
_STATUS: dict[type[OnceonlyError], int] = {
    UnknownDeadLetter: 404,
    AlreadyRedriven: 409,
    NotRedrivable: 409,
    BrokerUnavailable: 503,
}


class RedriveRequest(BaseModel):
    """Re-drive the listed dead letters, or every open one of ``holder`` (all sources without it) with ``all``."""

    ids: list[str] = Field(default_factory=list, description="dead-letter ids, e.g. housing_fund:0:12")
    all: bool = Field(False, description="every open dead letter of holder (or of every source)")
    holder: str | None = Field(None, description="with all: only this holder's (or 'distributor')")
    operator: str = Field(min_length=1, description="who re-drives (kept in the audit ledger)")
    reason: str = Field(min_length=1, description="why, e.g. the ticket and the fix (kept in the audit ledger)")
    set: list[str] = Field(default_factory=list, description="edits as field=value, with exactly one id")


def create_app(
    settings: Settings | None = None, *, refresh_interval: float = 1.0, config: Path | None = None
) -> FastAPI:
    """The service; ``config`` (``onceonly.yaml``, as the CLI's replay and bootstrap read it) is read now, so a
    mistake in it stops the start: its agreements serve replay and bootstrap, its subscribers (if any) lag."""
    settings = settings or load_settings()
    agreements, subscribers = _from_config(config) if config is not None else (None, None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        serde = Serde(RegistryClient(settings.registry_url))
        app.state.settings = settings
        app.state.serde = serde
        app.state.view = OperatorView(settings, serde, min_interval=refresh_interval, subscribers=subscribers)
        yield

    app = FastAPI(
        title="onceonly operator",
        version="1",
        summary="Dead letters, scorecard and live propagation for the people who run onceonly.",
        lifespan=lifespan,
    )
    app.exception_handler(OnceonlyError)(_user_error)
    app.exception_handler(RegistryUnavailable)(_registry_down)
    app.get("/", response_class=HTMLResponse, include_in_schema=False)(page)
    app.get("/healthz")(healthz)
    app.get("/metrics", response_class=PlainTextResponse, include_in_schema=False)(prometheus)
    app.get("/api/live")(live)
    app.get("/api/dlq")(dlq_list)
    app.get("/api/dlq/{letter_id}")(dlq_show)
    app.post("/api/dlq/redrive")(dlq_redrive)
    app.get("/api/scorecard", response_model=None)(scorecard)
    app.include_router(replay_router)  # replay, bootstrap, status, trace, lag
    app.state.agreements = agreements  # None: routes_replay falls back to ONCEONLY_AGREEMENTS
    app.state.subscribers = subscribers
    return app


def _from_config(path: Path) -> tuple[Agreements, SubscribersConfig | None]:
    """The agreements of ``path`` (required) and its subscribers (when it has that section)."""
    from services.distributor import load_agreements
    from services.subscriber.config import load_subscribers

    agreements = load_agreements(path)
    return agreements, load_subscribers(path) if "subscribers" in load_yaml_file(path) else None


async def _user_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, OnceonlyError)
    status = next((code for cls, code in _STATUS.items() if isinstance(error, cls)), 422)
    return JSONResponse({"detail": str(error)}, status_code=status)


async def _registry_down(_request: Request, error: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": f"schema registry unavailable: {error}"}, status_code=503, headers={"Retry-After": "5"}
    )


def _view(request: Request) -> OperatorView:
    view: OperatorView = request.app.state.view
    view.refresh()
    DEAD_LETTERS_OPEN.clear()
    for source, n in view.book.open_counts().items():
        DEAD_LETTERS_OPEN.labels(source=source).set(n)
    for holder, n in view.lag.waiting.items():
        group = view.lag.groups.get(holder) or subscriber_group(view.settings, holder)
        metrics.LAG.labels(group=group, topic=view.settings.topic(f"inbox.{holder}")).set(n)
    return view


def _sources(holder: str | None) -> list[str]:
    return [check_source(holder)] if holder else all_sources()


async def page() -> str:
    """The live page: per holder, recent changes with their propagation time, lag and open dead letters."""
    return PAGE.read_text(encoding="utf-8")


async def healthz() -> dict[str, str]:
    """Liveness for load balancers and operators."""
    return {"status": "ok"}


def prometheus(request: Request) -> bytes:
    """Prometheus metrics, with open dead letters and holder lag refreshed from Kafka."""
    _view(request)
    return generate_latest()


def live(request: Request) -> dict[str, Any]:
    """What the live page polls: per holder, last hour's counts, lag, open dead letters and the latest changes."""
    return _view(request).live()


def dlq_list(
    request: Request,
    holder: Annotated[str | None, Query(description="a department code or 'distributor'")] = None,
    include_closed: Annotated[bool, Query(alias="all", description="also dead letters already re-driven")] = False,
) -> dict[str, Any]:
    """Dead letters with their reasons; only the open ones unless ``all=true``."""
    sources = _sources(holder)
    statuses = _view(request).book.statuses(include_closed=include_closed, sources=sources)
    return {"sources": sources, "dead_letters": [s.as_json() for s in statuses]}


def dlq_show(request: Request, letter_id: str) -> dict[str, Any]:
    """One dead letter: reason, headers, and its record decoded (or why it does not decode)."""
    app = request.app
    return letter_detail(app.state.settings, DeadLetterId.parse(letter_id), app.state.serde, app.state.view.ledger)


def dlq_redrive(request: Request, body: RedriveRequest) -> dict[str, Any]:
    """Re-drive dead letters after a fix (each one recorded in the audit ledger with operator and reason)."""
    app = request.app
    redriver = Redriver(app.state.settings, app.state.serde)
    redriver.ledger = app.state.view.ledger
    if body.all == bool(body.ids):
        raise ConfigError("give either ids or all=true")
    if body.set and len(body.ids) != 1:
        raise ConfigError("edits (set) need exactly one id")
    done: list[Redriven] = []
    skipped: list[dict[str, str]] = []
    if body.all:
        outcome = redriver.all_open(_sources(body.holder), operator=body.operator, reason=body.reason)
        done, skipped = outcome.redriven, [{"id": str(d.id), "why": why} for d, why in outcome.skipped]
    else:
        ids = [DeadLetterId.parse(i) for i in body.ids]
        editor = None
        if body.set:
            serde, assignments = app.state.serde, body.set

            def editor(letter: Any) -> tuple[bytes, list[str]]:
                edited = edit_letter(serde, letter, assignments=assignments, interactive=False)
                return edited.value, edited.edits

        done = [redriver.one(i, operator=body.operator, reason=body.reason, editor=editor) for i in ids]
    app.state.view.refresh(force=True)
    return {
        "redriven": [
            {
                "id": str(r.letter.id),
                "target": r.target_topic,
                "partition": r.partition,
                "offset": r.offset,
                "seq": r.seq,
                "edits": r.edits,
            }
            for r in done
        ],
        "skipped": skipped,
    }


def scorecard(
    request: Request,
    since: Annotated[str, Query(description="window, e.g. 7d, 12h, 30m")] = "7d",
    target: Annotated[str, Query(description="target propagation time, e.g. 60s")] = "60s",
    format: Annotated[Literal["json", "html"], Query(description="json or a static html page")] = "json",
    holder: Annotated[str | None, Query(description="only this department")] = None,
) -> Any:
    """Per holder: changes received, applied within the target, p50/p99 propagation, dead letters open, lag now."""
    since_ms = int(time.time() * 1000) - parse_duration_ms(since, "since")
    target_ms = parse_duration_ms(target, "target")
    if holder == "distributor":
        raise ConfigError("the scorecard is per holder; 'distributor' is not one")
    holders = [check_source(holder)] if holder else None
    card = _view(request).scorecard(since_ms=since_ms, target_ms=target_ms, holders=holders)
    if format == "html":
        return HTMLResponse(html_page(card))
    return card.as_json()
