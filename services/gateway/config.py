"""The gateway's settings: which API key belongs to which department, and how long idempotency keys live.

In ``onceonly.yaml``::

    gateway:
      api_keys:
        public_security: ${PS_GATEWAY_KEY}
        health: "scrypt$16384$8$1$..."    # stored hashed: `onceonly gateway new-key health`

or in the environment: ``ONCEONLY_GATEWAY_API_KEYS=public_security=...,health=...``. A value is either the key
itself (development) or its scrypt hash (what production stores: the ``prod`` profile refuses plain keys).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from connectors.sinks.config import expand_env
from onceonly.catalog import load_departments
from onceonly.config import load_section
from onceonly.errors import ConfigError
from onceonly.settings import load_settings
from onceonly.signing import verify_api_key

HASHED = "scrypt$"

ENV_KEYS = "ONCEONLY_GATEWAY_API_KEYS"


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_keys: dict[str, str] = Field(default_factory=dict, description="department code -> API key")
    idempotency_ttl: int = Field(86_400, ge=60, description="seconds a finished request is remembered")
    pending_ttl: int = Field(60, ge=5, description="seconds a request in flight holds its idempotency key")
    delivery_timeout: float = Field(10.0, gt=0, description="seconds to wait for the broker before answering 503")
    heartbeat_interval: float = Field(30.0, gt=0, description="the gateway sends a heartbeat this often")
    _verified: dict[bytes, str] = PrivateAttr(default_factory=dict)

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
            if key.startswith(HASHED):
                if len(key.split("$")) != 6:
                    raise ValueError(f"the API key hash of {code} is not scrypt$n$r$p$salt$hash")
            elif len(key) < 16:
                raise ValueError(f"the API key of {code} is shorter than 16 characters")
            out[code] = key
        if len(set(out.values())) != len(out):
            raise ValueError("two departments share an API key")
        return out

    def plain_keys(self) -> list[str]:
        """Departments whose key is written in plain (fine on a laptop, refused in production)."""
        return [code for code, key in self.api_keys.items() if not key.startswith(HASHED)]

    def department_of(self, api_key: str) -> str | None:
        """The department holding ``api_key`` (compared in constant time), or None.

        A hashed key costs one scrypt (tens of ms) per stored hash, so a key that matched once is remembered by
        its SHA-256 for the life of the process: the gateway never keeps a key itself, and a wrong key still
        pays the full price, which is what slows guessing.
        """
        digest = hashlib.sha256(api_key.encode()).digest()
        if (known := self._verified.get(digest)) is not None:
            return known
        found = None
        for code, key in self.api_keys.items():
            if key.startswith(HASHED):
                if verify_api_key(api_key, key):
                    found = code
            elif hmac.compare_digest(key.encode(), api_key.encode()):
                found = code
        if found is not None and self.api_keys[found].startswith(HASHED):
            self._verified[digest] = found
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
    if (plain := config.plain_keys()) and load_settings().profile == "prod":
        raise ConfigError(
            f"the API keys of {', '.join(plain)} are written in plain", hint="store hashes: onceonly gateway new-key"
        )
    return config
