"""The inbox-side interest API: a holder's own systems register and end interest over HTTP.

    POST   /interest/{holder}/{entity_type}/{entity_key}?reason=...   register (a fill message follows in the inbox)
    DELETE /interest/{holder}/{entity_type}/{entity_key}              end
    GET    /interest/{holder}                                         what the holder is registered for

Authentication belongs in front of it (the deployment's gateway): this service trusts the holder in the path.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException

from onceonly.errors import BrokerUnavailable, ConfigError
from onceonly.settings import Settings
from onceonly.standard import RegistryClient, Serde
from services.distributor.interest import InterestClient, current_interest


def create_app(settings: Settings) -> FastAPI:
    serde = Serde(RegistryClient(settings.registry_url))
    client = InterestClient(settings, serde)
    app = FastAPI(title="onceonly interest registrations")

    def call(action: str, holder: str, entity_type: str, entity_key: str, reason: str | None) -> dict[str, Any]:
        try:
            getattr(client, action)(holder, entity_type, entity_key, reason=reason)
        except ConfigError as e:
            raise HTTPException(400, str(e)) from e
        except BrokerUnavailable as e:
            raise HTTPException(503, str(e)) from e
        return {"holder": holder, "entity_type": entity_type, "entity_key": entity_key, "action": action}

    @app.post("/interest/{holder}/{entity_type}/{entity_key}", status_code=202)
    def register(holder: str, entity_type: str, entity_key: str, reason: str | None = None) -> dict[str, Any]:
        return call("register", holder, entity_type, entity_key, reason)

    @app.delete("/interest/{holder}/{entity_type}/{entity_key}", status_code=202)
    def end(holder: str, entity_type: str, entity_key: str, reason: str | None = None) -> dict[str, Any]:
        return call("end", holder, entity_type, entity_key, reason)

    @app.get("/interest/{holder}")
    def listing(holder: str) -> list[dict[str, str]]:
        try:
            entries = current_interest(settings, serde)
        except BrokerUnavailable as e:
            raise HTTPException(503, str(e)) from e
        return [{"entity_type": t, "entity_key": k} for h, t, k in entries if h == holder]

    return app
