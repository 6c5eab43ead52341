"""Dead letters as Kafka Connect writes them, so Connect tooling and our operator read the same headers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Header = tuple[str, bytes]
Stage = Literal["VALUE_CONVERTER", "TASK_PUT"]

_OWN_HEADERS = (
    "__connect.errors.connector.name",
    "__connect.errors.stage",
    "__connect.errors.topic",
    "__connect.errors.partition",
    "__connect.errors.offset",
    "__connect.errors.exception.class.name",
    "__connect.errors.exception.message",
    "onceonly.event_id",
    "onceonly.schema_id",
    "onceonly.holder",
)


def exception_class_name(error: BaseException) -> str:
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def dead_letter_headers(
    *,
    topic: str,
    partition: int,
    offset: int,
    error: BaseException,
    holder: str,
    event_id: str | None,
    schema_id: int | None,
    stage: Stage,
    original: Sequence[tuple[str, bytes | None]] = (),
) -> list[Header]:
    """The original record's headers (minus stale error headers from an earlier round) plus where and why it failed.

    ``stage`` uses Connect's names: VALUE_CONVERTER when the bytes did not decode, TASK_PUT when the sink refused.
    """
    kept = [(k, v or b"") for k, v in original if k not in _OWN_HEADERS]
    return [
        *kept,
        ("__connect.errors.connector.name", f"subscriber.{holder}".encode()),
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


def framed_schema_id(value: bytes | None) -> int | None:
    """The schema id of a Confluent-framed value, if the bytes are framed at all (for the header only)."""
    if value is None or len(value) < 5 or value[0] != 0:
        return None
    return int.from_bytes(value[1:5], "big")
