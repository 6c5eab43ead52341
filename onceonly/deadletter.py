"""Dead letters as Kafka Connect writes them: the original key, value and headers, plus where and why it failed.

The distributor and every subscriber write these same headers (``docs/architecture.md``), so Connect tooling
and the operator read every dead-letter topic the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from onceonly.standard import SerdeError, unframe

Header = tuple[str, bytes]
Stage = Literal["VALUE_CONVERTER", "TRANSFORMATION", "TASK_PUT"]
"""Connect's stage names: the bytes did not decode; the record could not be routed/projected; the sink refused."""

_OURS = ("__connect.errors.", "onceonly.event_id", "onceonly.schema_id", "onceonly.holder")


def exception_class_name(error: BaseException) -> str:
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def dead_letter_headers(
    *,
    connector: str,
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
    """The original record's headers (minus error headers from an earlier round) plus where and why it failed."""
    kept = [(k, v or b"") for k, v in original if not k.startswith(_OURS)]
    return [
        *kept,
        ("__connect.errors.connector.name", connector.encode()),
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
    """The schema id of a Confluent-framed value, or None when the bytes are not framed (for the header only)."""
    try:
        return unframe(value)[0]
    except SerdeError:
        return None
