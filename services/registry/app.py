"""The Confluent Schema Registry REST API over a ``Registry``: the routes and bodies Python clients rely on.

Handlers are plain functions (run in a thread pool) because a write waits for the broker; bodies are read as JSON
whatever the content type (``application/vnd.schemaregistry.v1+json``, ``application/json`` or none), and every error
is Confluent's ``{"error_code", "message"}``.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from onceonly.metrics import CountRequests
from services.registry.errors import RegistryHTTPError, bad_request
from services.registry.registry import Registry
from services.registry.store import MemoryStore

log = logging.getLogger("onceonly.registry")
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class SRResponse(JSONResponse):
    media_type = CONTENT_TYPE


def error_response(status: int, error_code: int, message: str) -> SRResponse:
    return SRResponse({"error_code": error_code, "message": message}, status_code=status)


async def json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except ValueError as e:
        raise bad_request(f"the request body is not JSON: {e}") from e


JsonBody = Annotated[Any, Depends(json_body)]


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RegistryHTTPError)
    async def registry_error(_: Request, e: RegistryHTTPError) -> SRResponse:
        return error_response(e.status, e.error_code, e.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> SRResponse:
        return error_response(e.status_code, e.status_code, f"HTTP {e.status_code} {e.detail}")

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, e: RequestValidationError) -> SRResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, 422, f"invalid request: {where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, e: Exception) -> SRResponse:
        log.exception("unexpected error")
        return error_response(500, 50001, f"internal error: {type(e).__name__}: {e}")


def create_app(registry: Registry | None = None) -> FastAPI:
    """The API over ``registry`` (default: a fresh in-memory one)."""
    reg = registry or Registry(MemoryStore())
    app = FastAPI(title="onceonly schema registry", default_response_class=SRResponse, redirect_slashes=False)
    _install_error_handlers(app)
    app.add_middleware(CountRequests, service="registry")

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        """Prometheus metrics: requests by route and status (``onceonly_http_requests``)."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/")
    def root() -> dict[str, Any]:
        return {}

    @app.get("/schemas/types")
    def schema_types() -> list[str]:
        return ["AVRO"]

    @app.get("/schemas/ids/{schema_id}")
    def schema_by_id(schema_id: str) -> dict[str, Any]:
        return {"schema": reg.schema_by_id(schema_id)}

    @app.get("/schemas/ids/{schema_id}/schema")
    def raw_schema_by_id(schema_id: str) -> Response:
        return Response(reg.schema_by_id(schema_id), media_type=CONTENT_TYPE)

    @app.get("/schemas/ids/{schema_id}/versions")
    def schema_versions(schema_id: str, deleted: bool = False) -> list[dict[str, Any]]:
        return reg.id_versions(schema_id, deleted=deleted)

    @app.get("/schemas/ids/{schema_id}/subjects")
    def schema_subjects(schema_id: str, deleted: bool = False) -> list[str]:
        return sorted({str(v["subject"]) for v in reg.id_versions(schema_id, deleted=deleted)})

    @app.get("/subjects")
    def subjects(deleted: bool = False, deleted_only: bool = False, subjectPrefix: str = "") -> list[str]:
        return reg.subjects(deleted=deleted, deleted_only=deleted_only, prefix=subjectPrefix)

    @app.post("/subjects/{subject}")
    def lookup(subject: str, body: JsonBody, deleted: bool = False) -> dict[str, Any]:
        return reg.lookup(subject, body, deleted=deleted)

    @app.delete("/subjects/{subject}")
    def delete_subject(subject: str, permanent: bool = False) -> list[int]:
        return reg.delete_subject(subject, permanent=permanent)

    @app.get("/subjects/{subject}/versions")
    def versions(subject: str, deleted: bool = False, deleted_only: bool = False) -> list[int]:
        return reg.versions(subject, deleted=deleted, deleted_only=deleted_only)

    @app.post("/subjects/{subject}/versions")
    def register(subject: str, body: JsonBody) -> dict[str, Any]:
        return reg.register(subject, body)

    @app.get("/subjects/{subject}/versions/{version}")
    def get_version(subject: str, version: str, deleted: bool = False) -> dict[str, Any]:
        return reg.get_version(subject, version, deleted=deleted)

    @app.get("/subjects/{subject}/versions/{version}/schema")
    def get_version_schema(subject: str, version: str, deleted: bool = False) -> Response:
        text = str(reg.get_version(subject, version, deleted=deleted)["schema"])
        return Response(text, media_type=CONTENT_TYPE)

    @app.get("/subjects/{subject}/versions/{version}/referencedby")
    def referenced_by(subject: str, version: str) -> list[int]:
        reg.get_version(subject, version)
        return []  # references are not supported, so nothing refers to anything

    @app.delete("/subjects/{subject}/versions/{version}")
    def delete_version(subject: str, version: str, permanent: bool = False) -> int:
        return reg.delete_version(subject, version, permanent=permanent)

    @app.post("/compatibility/subjects/{subject}/versions/{version}")
    def compatibility(subject: str, version: str, body: JsonBody, verbose: bool = False) -> dict[str, Any]:
        return reg.test_compatibility(subject, version, body, verbose=verbose)

    @app.post("/compatibility/subjects/{subject}/versions")
    def compatibility_all(subject: str, body: JsonBody, verbose: bool = False) -> dict[str, Any]:
        return reg.test_compatibility(subject, None, body, verbose=verbose)

    def get_global_config() -> dict[str, str]:
        return reg.get_config(None)

    def set_global_config(body: JsonBody) -> dict[str, str]:
        return reg.set_config(None, body)

    def delete_global_config() -> dict[str, str]:
        return reg.delete_config(None)

    for path in ("/config", "/config/"):  # python-schema-registry-client asks "config/" for the global level
        app.get(path)(get_global_config)
        app.put(path)(set_global_config)
        app.delete(path)(delete_global_config)

    @app.get("/config/{subject}")
    def get_config(subject: str, defaultToGlobal: bool = False) -> dict[str, str]:
        return reg.get_config(subject, default_to_global=defaultToGlobal)

    @app.put("/config/{subject}")
    def set_config(subject: str, body: JsonBody) -> dict[str, str]:
        return reg.set_config(subject, body)

    @app.delete("/config/{subject}")
    def delete_config(subject: str) -> dict[str, str]:
        return reg.delete_config(subject)

    @app.get("/mode")
    def mode() -> dict[str, str]:
        return {"mode": "READWRITE"}

    @app.get("/mode/{subject}")
    def subject_mode(subject: str) -> dict[str, str]:
        return {"mode": "READWRITE"}

    return app
