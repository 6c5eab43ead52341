"""``onceonly registry serve``: open the store, replay it, then listen (so a ready port means a loaded state)."""

from __future__ import annotations

import logging
from typing import Literal

from onceonly.errors import ConfigError
from onceonly.logs import configure_service_logging
from onceonly.settings import Settings, load_settings
from services.registry.store import KafkaStore, MemoryStore, Store

log = logging.getLogger("onceonly.registry")
StoreKind = Literal["auto", "kafka", "memory"]


def open_store(settings: Settings, kind: str = "auto") -> Store:
    """Kafka when a broker is configured (or asked for), memory otherwise, saying so in the log."""
    if kind not in ("auto", "kafka", "memory"):
        raise ConfigError(f"unknown registry store {kind!r}", hint="use auto, kafka or memory")
    broker_set = "bootstrap_servers" in settings.model_fields_set
    if kind == "kafka" or (kind == "auto" and broker_set):
        return KafkaStore(settings)
    log.warning(
        "no broker configured (ONCEONLY_BOOTSTRAP_SERVERS unset): schemas are kept in memory only and are lost "
        "when the registry stops"
    )
    return MemoryStore()


def serve(host: str, port: int, store: str = "auto") -> None:
    import uvicorn

    from services.registry.app import create_app
    from services.registry.registry import Registry

    settings = load_settings()
    configure_service_logging(settings.log_format, settings.log_level)
    backend = open_store(settings, store)
    try:
        registry = Registry(backend)
        log.info("schema registry listening on http://%s:%d (state in %s)", host, port, backend.description)
        uvicorn.run(create_app(registry), host=host, port=port, log_level="warning", log_config=None)
    finally:
        backend.close()
