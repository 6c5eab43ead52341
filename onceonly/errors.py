"""Errors a user can cause, each carrying what they need to fix it.

The CLI turns any ``OnceonlyError`` into one line on stderr and a non-zero exit code;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class OnceonlyError(Exception):
    """A problem the user can fix; ``str(error)`` is the one line they see."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


class ConfigError(OnceonlyError):
    """A configuration file or setting is invalid."""

    exit_code = 2


class StackError(OnceonlyError):
    """The embedded stack could not be started, found or stopped."""


class BrokerUnavailable(OnceonlyError):
    """The Kafka cluster did not answer."""


class TopicMismatch(OnceonlyError):
    """An existing topic differs from the catalog in a way that cannot be fixed in place."""
