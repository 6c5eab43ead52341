"""Why a change did not reach its topic: the broker refused it or could not be reached."""

from __future__ import annotations

from onceonly.errors import OnceonlyError


class PublishFailed(OnceonlyError):
    """The broker did not acknowledge a change; ``retriable`` says whether sending it again may succeed."""

    def __init__(self, message: str, *, retriable: bool = True, event_id: str | None = None) -> None:
        self.retriable = retriable
        self.event_id = event_id
        super().__init__(message)


class BatchFailed(PublishFailed):
    """Some changes of a batch were not acknowledged; ``results`` holds what each one got (ack or failure)."""

    def __init__(self, results: list[object], failures: list[PublishFailed]) -> None:
        self.results = results
        self.failures = failures
        first = failures[0]
        super().__init__(
            f"{len(failures)} of {len(results)} changes were not acknowledged; first: {first}",
            retriable=all(f.retriable for f in failures),
        )
