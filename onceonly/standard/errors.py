"""Typed errors of the data standard: each names what is wrong with the bytes, the record or the registry.

Consumers decide on the type: ``RegistryUnavailable`` is transient (retry, never dead-letter); every other
``SerdeError`` is permanent for that record (dead-letter it with the message as the reason).
"""

from __future__ import annotations

from onceonly.errors import OnceonlyError


class SerdeError(OnceonlyError):
    """A record could not be encoded or decoded."""


class EmptyPayload(SerdeError):
    """The value has no bytes (a tombstone or a producer bug)."""


class BadMagicByte(SerdeError):
    """The value does not start with the Confluent magic byte 0: not written by a registry-aware serializer."""


class TruncatedPayload(SerdeError):
    """The value ends before its schema id or its Avro body does."""


class CorruptPayload(SerdeError):
    """The Avro body does not decode with its writer schema."""


class UnknownSchemaId(SerdeError):
    """The value names a schema id the registry does not know."""

    def __init__(self, schema_id: int) -> None:
        self.schema_id = schema_id
        super().__init__(f"schema id {schema_id} is not known to the registry")


class RecordInvalid(SerdeError):
    """A record does not match its schema or the data standard; ``field`` names where."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


class RegistryError(OnceonlyError):
    """The registry answered with an error (Confluent error code kept)."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        self.status = status
        self.error_code = error_code
        super().__init__(f"schema registry error {error_code} (HTTP {status}): {message}")


class RegistryUnavailable(OnceonlyError):
    """The registry could not be reached: transient, retry."""
