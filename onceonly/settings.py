"""Connection settings, read from ``ONCEONLY_*`` environment variables and ``.onceonly/stack.env``.

Two profiles: ``dev`` suits the embedded broker (short consumer-group timeouts, because Tansu holds a
join for half the session timeout), ``prod`` suits Apache Kafka (client defaults). Every broker-specific
workaround is keyed on one setting, ``broker_quirks``, so production never depends on a Tansu behaviour.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_STATE_DIR = Path(".onceonly")
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)[^@\s]+@")


def _stack_env_file() -> Path:
    return Path(os.environ.get("ONCEONLY_STATE_DIR", str(DEFAULT_STATE_DIR))) / "stack.env"


class Settings(BaseSettings):
    """Where the platform's parts live and how clients talk to them."""

    # hide_input_in_errors: a validation error must not echo the values it was given (they include passwords).
    model_config = SettingsConfigDict(env_prefix="ONCEONLY_", extra="ignore", hide_input_in_errors=True)

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    registry_url: str = Field("http://127.0.0.1:8081", description="Confluent-compatible schema registry")
    redis_url: str | None = Field(None, description="Redis for receipts tracking and idempotency keys")
    profile: Literal["dev", "prod"] = "dev"
    broker_quirks: Literal["none", "tansu"] = Field(
        "none", description="'tansu' enables the embedded broker's workarounds; Apache Kafka needs 'none'"
    )
    topic_prefix: str = Field("", description="prepended to every topic name (test isolation, shared clusters)")
    state_dir: Path = DEFAULT_STATE_DIR
    client_id: str = "onceonly"
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="service logs: JSON lines, text, or auto (text on a terminal, JSON lines otherwise)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: SecretStr | None = Field(None, description="passphrase of an encrypted ssl_keyfile")
    ssl_check_hostname: bool = Field(True, description="verify the broker's certificate names its host")

    signatures: Literal["off", "require"] = Field(
        "off",
        description="'require': authorities sign changes, the distributor verifies them and signs inboxes, "
        "holders verify before applying; a bad or missing signature is dead-lettered",
    )
    signing_keys: Path | None = Field(
        None, description="folder of Ed25519 keys: <dept>.key.pem (this host's signers), <dept>/*.pem (public keys)"
    )
    signing_key_passphrase: SecretStr | None = Field(None, description="passphrase of the *.key.pem files")

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """repr() masks passwords inside URLs (redis://:pw@host), as SecretStr masks the password fields."""
        for name, value in super().__repr_args__():
            yield name, _URL_PASSWORD.sub(r"\1***@", value) if isinstance(value, str) else value

    @property
    def session_timeout_ms(self) -> int:
        return 6000 if self.profile == "dev" else 45000

    @property
    def heartbeat_interval_ms(self) -> int:
        return 1000 if self.profile == "dev" else 3000

    def topic(self, name: str) -> str:
        """The physical name of a catalog topic under this deployment's prefix."""
        return f"{self.topic_prefix}{name}"


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, then the stack's env file, then defaults."""
    env_file = _stack_env_file()
    files = (str(env_file),) if env_file.is_file() else ()
    return Settings(_env_file=files or None, **overrides)


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings (read once)."""
    return load_settings()
