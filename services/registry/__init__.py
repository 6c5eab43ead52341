"""The embedded schema registry: the Confluent REST API, its state in a Kafka topic, Avro compatibility checks.

Modules: ``compat`` (schema identity and the seven modes, shared with the evolution gate), ``store`` (the Kafka topic
or memory), ``state`` (what the records say), ``registry`` (the operations), ``app`` (the HTTP routes), ``server``
(``onceonly registry serve``). Imports are lazy here so ``compat`` can be used without FastAPI or uvicorn loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from services.registry.registry import Registry


def create_app(registry: Registry | None = None) -> FastAPI:
    from services.registry.app import create_app as create

    return create(registry)


def serve(host: str, port: int, store: str = "auto") -> None:
    from services.registry.server import serve as run

    run(host, port, store)
