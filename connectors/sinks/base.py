"""The contract between the subscriber and a holder's store."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from connectors.sinks.change import Change

Outcome = Literal["applied", "skipped_duplicate", "skipped_stale", "dead_lettered"]
OUTCOMES: tuple[Outcome, ...] = ("applied", "skipped_duplicate", "skipped_stale", "dead_lettered")


@dataclass(frozen=True, slots=True)
class Result:
    """What happened to one change at this holder.

    ``dead_lettered`` comes with the ``error`` that rejected the change; the caller writes the dead letter.
    ``repeat`` marks a ``skipped_duplicate`` of a change this store applied earlier (at ``applied_at``, epoch ms,
    when the store keeps the time): the holder has it, and its receipt says so.
    """

    change: Change
    outcome: Outcome
    reason: str | None = None
    error: BaseException | None = None
    repeat: bool = False
    applied_at: int | None = None


class Sink(Protocol):
    """A holder's store. ``apply`` takes changes in the order they must be applied and returns one result each.

    It raises ``TransientSinkError`` (with the results already made durable) when the store is unavailable, or
    when ``stop`` is set before it is done (so a stopping worker is not held up by a slow store); a change the
    store can never take comes back as ``dead_lettered`` and the others still apply.
    """

    def open(self) -> None:
        """Connect and check the mapping against the store; raise ``ConfigError`` when they do not fit."""

    def apply(self, changes: Sequence[Change], stop: threading.Event | None = None) -> list[Result]: ...

    def close(self) -> None: ...


def rejected(change: Change, error: BaseException) -> Result:
    return Result(change, "dead_lettered", f"{type(error).__name__}: {error}", error)
