"""What can go wrong when applying changes, split by what the subscriber must do about it.

An error about the *store* (down, locked, overloaded) is transient: pause and retry, never skip.
An error about the *record* (constraint, mapping, bad data) is permanent: dead-letter it and go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connectors.sinks.base import Result


class SinkError(Exception):
    """Base of every sink error."""


class TransientSinkError(SinkError):
    """The store cannot take changes right now; ``completed`` are the results already made durable, in order."""

    def __init__(self, message: str, completed: Sequence[Result] = ()) -> None:
        super().__init__(message)
        self.completed: list[Result] = list(completed)


class RecordRejected(SinkError):
    """This one change can never be applied to this store as it is; retrying will not help."""


class MalformedChange(RecordRejected):
    """The decoded record is not a usable change envelope (missing fields, unknown op)."""


class MappingError(RecordRejected):
    """The department's mapping has no place for this change (entity type or field not mapped)."""
