"""The data standard's serde as the subscriber and tracker use it, and how to tell "the registry is down"
from "these bytes are bad": the first waits, the second is a dead letter.
"""

from __future__ import annotations

from typing import Any, Protocol

from onceonly.settings import Settings
from onceonly.standard import RegistryClient, RegistryError, RegistryUnavailable, Serde


class Decoded(Protocol):
    @property
    def schema_id(self) -> int: ...

    @property
    def record(self) -> Any: ...


class Codec(Protocol):
    """What the subscriber needs from ``onceonly.standard.Serde``."""

    def encode(self, schema: dict[str, Any], subject: str, record: dict[str, Any]) -> bytes: ...

    def decode(self, data: bytes | None) -> Decoded: ...


def standard_codec(settings: Settings) -> Codec:
    """``onceonly.standard.Serde`` on the deployment's schema registry."""
    return Serde(RegistryClient(settings.registry_url))


def registry_unavailable(error: BaseException) -> bool:
    """True when the registry could not answer (down, or refusing us): retry later, the record may be fine.

    An unknown schema id is a 404 the client turns into ``UnknownSchemaId``, a ``SerdeError``: a dead letter.
    """
    return isinstance(error, RegistryUnavailable | RegistryError)
