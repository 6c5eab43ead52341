"""Schema registry speaking the Confluent REST API (placeholder until the data-standard issue lands)."""

from __future__ import annotations

from fastapi import FastAPI


def create_app() -> FastAPI:
    app = FastAPI(title="onceonly schema registry (stub)")

    @app.get("/subjects")
    def subjects() -> list[str]:
        return []

    return app


def serve(host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(create_app(), host=host, port=port, log_level="warning")
