"""The HTTP gateway: departments publish changes over HTTPS with an API key (FastAPI, OpenAPI at /docs)."""

from __future__ import annotations

from services.gateway.app import create_app
from services.gateway.config import GatewayConfig, load_gateway_config

__all__ = ["GatewayConfig", "create_app", "load_gateway_config", "serve"]


def serve(config: GatewayConfig, host: str = "127.0.0.1", port: int = 8090) -> None:
    import uvicorn

    # log_config=None: uvicorn's lines go through the service's own (JSON) logging, see start_service
    uvicorn.run(create_app(config), host=host, port=port, log_level="info", log_config=None)
