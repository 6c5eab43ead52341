"""The gateway's settings: which API key belongs to which department, and how long idempotency keys live.

In ``onceonly.yaml``::

    gateway:
      api_keys:
        public_security: ${PS_GATEWAY_KEY}
        health: ${HEALTH_GATEWAY_KEY}

or in the environment: ``ONCEONLY_GATEWAY_API_KEYS=public_security=...,health=...``.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.sinks.config import expand_env
from onceonly.catalog import load_departments
from onceonly.config import load_section
from onceonly.errors import ConfigError

ENV_KEYS = "ONCEONLY_GATEWAY_API_KEYS"


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_keys: dict[str, str] = Field(default_factory=dict, description="department code -> API key")
    idempotency_ttl: int = Field(86_400, ge=60, description="seconds a finished request is remembered")
    pending_ttl: int = Field(60, ge=5, description="seconds a request in flight holds its idempotency key")
    delivery_timeout: float = Field(10.0, gt=0, description="seconds to wait for the broker before answering 503")
    heartbeat_interval: float = Field(30.0, gt=0, description="a quiet gateway sends a heartbeat this often")

    @field_validator("api_keys")
    @classmethod
    def _keys(cls, v: dict[str, str]) -> dict[str, str]:
        departments = load_departments()
        out = {}
        for code, key in v.items():
            try:
                departments.get(code)
            except ConfigError as e:
                raise ValueError(str(e)) from None
            key = expand_env(key)
            if len(key) < 16:
                raise ValueError(f"the API key of {code} is shorter than 16 characters")
            out[code] = key
        if len(set(out.values())) != len(out):
            raise ValueError("two departments share an API key")
        return out

    def department_of(self, api_key: str) -> str | None:
        """The department holding ``api_key`` (compared in constant time), or None."""
        found = None
        for code, key in self.api_keys.items():
            if hmac.compare_digest(key.encode(), api_key.encode()):
                found = code
        return found


def load_gateway_config(path: Path | None) -> GatewayConfig:
    """The ``gateway`` section of ``path`` (when given) plus keys from ``ONCEONLY_GATEWAY_API_KEYS``."""
    config = load_section(path, "gateway", GatewayConfig, required=False) if path else GatewayConfig()
    env = os.environ.get(ENV_KEYS, "")
    extra = dict(item.split("=", 1) for item in env.split(",") if "=" in item)
    if extra:
        config = GatewayConfig(**{**config.model_dump(), "api_keys": {**config.api_keys, **extra}})
    if not config.api_keys:
        raise ConfigError("the gateway has no API keys", hint=f"add gateway.api_keys to the config or set {ENV_KEYS}")
    return config
