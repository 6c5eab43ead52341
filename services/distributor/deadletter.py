"""The distributor's dead letters: the original bytes and key, with Kafka Connect's error headers.

Same header names as the subscriber's (``docs/architecture.md``), so Connect tooling and the operator read both;
kept here so the two services can evolve their stages and connector names on their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Header = tuple[str, bytes]
Stage = Literal["VALUE_CONVERTER", "TRANSFORMATION"]

CONNECTOR = "distributor"
_PREFIXES = ("__connect.errors.", "onceonly.event_id", "onceonly.schema_id", "onceonly.holder")


def exception_class_name(error: BaseException) -> str:
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def dead_letter_headers(
    *,
    topic: str,
    partition: int,
    offset: int,
    error: BaseException,
    stage: Stage,
    holder: str = "",
    event_id: str | None = None,
    schema_id: int | None = None,
    original: Sequence[tuple[str, bytes | None]] = (),
) -> list[Header]:
    """Where the record was read and why it could not be distributed (VALUE_CONVERTER: it did not decode;
    TRANSFORMATION: it decoded but could not be routed or projected for ``holder``)."""
    kept = [(k, v or b"") for k, v in original if not k.startswith(_PREFIXES)]
    return [
        *kept,
        ("__connect.errors.connector.name", CONNECTOR.encode()),
        ("__connect.errors.stage", stage.encode()),
        ("__connect.errors.topic", topic.encode()),
        ("__connect.errors.partition", str(partition).encode()),
        ("__connect.errors.offset", str(offset).encode()),
        ("__connect.errors.exception.class.name", exception_class_name(error).encode()),
        ("__connect.errors.exception.message", str(error).encode("utf-8", "replace")),
        ("onceonly.event_id", (event_id or "").encode()),
        ("onceonly.schema_id", (str(schema_id) if schema_id is not None else "").encode()),
        ("onceonly.holder", holder.encode()),
    ]
