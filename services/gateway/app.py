"""``POST /v1/changes``: departments whose systems speak HTTP publish here, with an API key each.

The gateway adds nothing to the rules: the same ``Preparer`` checks (schema, ID numbers, authority) as every other
path, so a change accepted here is the change the SDK would have sent. It answers only after the broker
acknowledged, so 202 means "recorded, on its way to the holders".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import APIKeyHeader
from prometheus_client import generate_latest

from onceonly.catalog import load_departments
from onceonly.errors import ConfigError
from onceonly.logs import change_fields
from onceonly.metrics import PUBLISH_REJECTED, CountRequests
from onceonly.publisher import AsyncPublisher, Heartbeat, PublishFailed
from onceonly.settings import Settings, load_settings
from onceonly.standard import RecordInvalid, RegistryUnavailable
from services.gateway.config import GatewayConfig
from services.gateway.idempotency import IdempotencyStore
from services.gateway.models import ChangeAccepted, ChangeIn, Problem

log = logging.getLogger(__name__)
_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="the calling department's API key")
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no or unknown API key"},
    403: {"model": Problem, "description": "the department is not the authority for this entity type"},
    409: {"model": Problem, "description": "a request with this Idempotency-Key is still in flight"},
    503: {"model": Problem, "description": "the broker or the schema registry is unreachable: retry later"},
}


def _field_errors(error: RecordInvalid) -> RequestValidationError:
    """A data-standard refusal in FastAPI's own 422 format, so clients parse one error shape."""
    loc = ("body", *error.field.split(".")) if error.field else ("body",)
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": error.reason, "input": None}])


def create_app(config: GatewayConfig, settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    if not settings.redis_url:
        raise ConfigError("the gateway needs Redis for Idempotency-Key", hint="set ONCEONLY_REDIS_URL")
    redis_url = settings.redis_url

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = aioredis.from_url(redis_url)
        publisher = AsyncPublisher(settings, connector="gateway", delivery_timeout=config.delivery_timeout)
        app.state.config = config
        app.state.publisher = publisher
        app.state.idempotency = IdempotencyStore(
            client, settings.topic_prefix, ttl=config.idempotency_ttl, pending_ttl=config.pending_ttl
        )
        app.state.heartbeat = Heartbeat(publisher.sync, "gateway", "gateway", "platform", config.heartbeat_interval)
        beating = asyncio.create_task(_beat(app.state.heartbeat))
        try:
            yield
        finally:
            beating.cancel()
            await publisher.close()
            await client.aclose()

    app = FastAPI(
        title="onceonly gateway",
        version="1",
        summary="Publish changes to the facts your department is the authority for.",
        lifespan=lifespan,
    )
    app.add_middleware(CountRequests, service="gateway")
    app.post("/v1/changes", status_code=202, response_model=ChangeAccepted, responses=_ERRORS)(post_change)
    app.get("/healthz", response_model=dict[str, str])(healthz)
    app.get("/metrics", response_class=PlainTextResponse, include_in_schema=False)(metrics)
    return app


def department(request: Request, api_key: Annotated[str | None, Depends(_API_KEY)]) -> str:
    """The calling department, from its API key (401 without a known one)."""
    if not api_key:
        raise HTTPException(401, "send your department's API key in the X-API-Key header")
    code = request.app.state.config.department_of(api_key)
    if code is None:
        raise HTTPException(401, "unknown API key")
    return str(code)


async def post_change(
    body: ChangeIn,
    request: Request,
    caller: Annotated[str, Depends(department)],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    """Publish one change; answers once the broker acknowledged it.

    Send ``Idempotency-Key`` to make retries safe: the same key and body return the first answer
    (``Idempotent-Replayed: true``) and publish nothing more.
    """
    try:
        authority = load_departments().authority_of(body.entity_type).code
    except ConfigError as e:
        raise _field_errors(RecordInvalid("entity_type", e.message)) from None
    if authority != caller:
        PUBLISH_REJECTED.labels("gateway", "not_authority").inc()
        log.info(
            "refused: %s is not the authority for %s",
            caller,
            body.entity_type,
            extra=change_fields(body.event_id, department=caller),
        )
        raise HTTPException(403, f"{caller} is not the authority for {body.entity_type} ({authority} is)")
    store: IdempotencyStore = request.app.state.idempotency
    print_ = body.model_dump_json()
    if idempotency_key:
        earlier = await store.claim(caller, idempotency_key, print_)
        if earlier is not None:
            if earlier.fingerprint != print_:
                raise HTTPException(422, "this Idempotency-Key was used with a different body")
            if earlier.status is None:
                raise HTTPException(409, "a request with this Idempotency-Key is still in flight")
            replayed = earlier.body.get("event_id") if isinstance(earlier.body, dict) else None
            log.info("answered from Idempotency-Key", extra=change_fields(replayed, department=caller))
            return JSONResponse(earlier.body, earlier.status, headers={"Idempotent-Replayed": "true"})
    try:
        accepted = await _publish(request.app.state.publisher, body, caller, idempotency_key)
    except BaseException:
        if idempotency_key:
            await store.release(caller, idempotency_key)
        raise
    if idempotency_key:
        await store.finish(caller, idempotency_key, print_, 202, accepted)
    request.app.state.heartbeat.alive(published=1)
    log.info(
        "accepted %s v%d",
        body.entity_type,
        body.authority_version,
        extra=change_fields(
            accepted["event_id"], None, accepted["topic"], accepted["partition"], accepted["offset"], department=caller
        ),
    )
    return accepted


async def _beat(heartbeat: Heartbeat) -> None:
    """Prove the gateway is alive, posts or not (the heartbeat waits for its ack in a thread)."""
    while True:
        await asyncio.sleep(min(heartbeat.interval, 1.0))
        heartbeat.alive()
        try:
            await asyncio.to_thread(heartbeat.beat_if_due)
        except PublishFailed as e:
            log.warning("gateway heartbeat not sent: %s", e)


async def healthz() -> dict[str, str]:
    """Liveness for load balancers and operators."""
    return {"status": "ok"}


async def metrics() -> bytes:
    return generate_latest()


async def _publish(publisher: AsyncPublisher, body: ChangeIn, department: str, request_key: str | None) -> Any:
    """Validate and send; data-standard refusals answer 422 with the field, an unreachable broker 503."""
    source = {"system": "gateway", "position": request_key}
    try:
        result = await publisher.publish(body.change(department), source=source)
    except RecordInvalid as e:
        log.info("refused: %s", e, extra=change_fields(body.event_id, department=department))
        raise _field_errors(e) from None
    except (RegistryUnavailable, PublishFailed) as e:
        log.warning("not published: %s", e, extra=change_fields(body.event_id, department=department))
        raise HTTPException(503, f"not published, retry later: {e}", headers={"Retry-After": "5"}) from None
    return ChangeAccepted(
        event_id=result.event_id, topic=result.topic, partition=result.partition, offset=result.offset
    ).model_dump()
