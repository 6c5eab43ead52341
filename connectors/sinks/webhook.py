"""The HTTP webhook sink: one POST per change to the department's own API.

The department's API owns its store; the sink keeps its own version watermarks beside it (``webhook_marks``), so a
change the API already took (a duplicate) or an older version arriving late (a replay) is skipped, not sent. The
API gets the event id as ``Idempotency-Key`` and the authority version in the body, and answers with what it did.
The contract:

- 2xx: applied. An API that keeps versions may say ``X-Onceonly-Outcome: skipped_duplicate`` or ``skipped_stale``
  (or ``applied``). Any other value is the API breaking this contract: the change is dead-lettered naming the
  header and the value, because counting it as applied could hide a change the store never took.
- 409: skipped as stale (the API holds something newer).
- 408, 425, 429, 5xx, or no answer: the API is unavailable; retried, and the subscriber pauses.
- any other 4xx: the API refuses this record; it is dead-lettered with the status and the body's first line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import httpx

from connectors.sinks.base import Outcome, Result, rejected
from connectors.sinks.change import Change
from connectors.sinks.config import HttpSinkConfig
from connectors.sinks.errors import RecordRejected, TransientSinkError
from connectors.sinks.payload import to_json, webhook_body
from connectors.sinks.plan import DeletePolicy
from connectors.sinks.webhook_marks import WatermarkUnavailable, WebhookWatermarks, watermark_url
from onceonly.errors import ConfigError

log = logging.getLogger(__name__)

OUTCOME_HEADER = "X-Onceonly-Outcome"
ANSWERED_OUTCOMES: tuple[Outcome, ...] = ("applied", "skipped_duplicate", "skipped_stale")
_TRANSIENT_STATUS = frozenset({408, 425, 429})


class _Unavailable(Exception):
    pass


class HttpSink:
    """Posts changes in order; stops at the first one the API cannot take right now."""

    def __init__(
        self,
        config: HttpSinkConfig,
        *,
        delete_policy: DeletePolicy = "mark",
        holder: str = "",
        state_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.delete_policy = delete_policy
        self._client: httpx.Client | None = None
        marks_url = watermark_url(config, holder, state_dir)
        self._marks = WebhookWatermarks(marks_url, config.watermark_table, config.timeout)

    def __repr__(self) -> str:
        return f"HttpSink({self.config.url})"

    def open(self) -> None:
        try:
            self._marks.open()
        except WatermarkUnavailable as e:
            raise TransientSinkError(str(e)) from e
        self._client = httpx.Client(
            timeout=self.config.timeout,
            headers={"Content-Type": "application/json", **self.config.headers},
        )

    def probe(self) -> None:
        """Ask the API once whether it is there (``subscriber check``): HEAD on the URL up to ``{entity_type}``.

        ``open`` contacts nothing, so without this a check would pass for an API nobody serves. Any HTTP answer,
        even 404 or 405, means reachable; no connection, TLS failure or no answer within ``timeout`` means not
        (``TransientSinkError``); a URL that is not http(s) is a ``ConfigError``.
        """
        if self._client is None:
            raise RuntimeError("HttpSink.open() was not called")
        base = self.config.url.split("{entity_type}", 1)[0]
        try:
            self._client.head(base)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as e:
            raise ConfigError(f"http sink url {self.config.url!r}: {e}") from None
        except httpx.TransportError as e:
            raise TransientSinkError(f"HEAD {base}: {type(e).__name__}: {e}") from e

    def close(self) -> None:
        self._marks.close()
        if self._client is not None:
            self._client.close()
            self._client = None

    def apply(self, changes: Sequence[Change], stop: threading.Event | None = None) -> list[Result]:
        """POST one change after the other; stop at the first the API cannot take, or when asked to stop."""
        stop = stop or threading.Event()
        results: list[Result] = []
        for change in changes:
            try:
                if stop.is_set():
                    raise _Unavailable("stopping")
                results.append(self._marks.deliver(change, lambda c: self._deliver(c, stop)))
            except (_Unavailable, WatermarkUnavailable) as e:
                raise TransientSinkError(str(e), completed=results) from e
        return results

    def _deliver(self, change: Change, stop: threading.Event) -> Result:
        """POST with quick retries; after them the subscriber's own backoff takes over."""
        if self._client is None:
            raise RuntimeError("HttpSink.open() was not called")
        url = self.config.url.replace("{entity_type}", change.entity_type)
        body = to_json(webhook_body(change, self.delete_policy, self.config.fields.get(change.entity_type)))
        headers = {"Idempotency-Key": change.event_id}
        delay = self.config.backoff
        problem = ""
        for attempt in range(self.config.retries + 1):
            if attempt:
                if stop.wait(delay):
                    raise _Unavailable(f"stopping; {problem}")
                delay *= 2
            try:
                response = self._client.post(url, content=body.encode("utf-8"), headers=headers)
            except httpx.TransportError as e:
                problem = f"POST {url}: {type(e).__name__}: {e}"
                continue
            if response.status_code >= 500 or response.status_code in _TRANSIENT_STATUS:
                problem = f"POST {url}: HTTP {response.status_code}"
                continue
            return _result(change, response)
        raise _Unavailable(problem)


def _result(change: Change, response: httpx.Response) -> Result:
    status = response.status_code
    if 200 <= status < 300:
        said = response.headers.get(OUTCOME_HEADER, "applied")
        if said not in ANSWERED_OUTCOMES:
            return rejected(
                change,
                RecordRejected(
                    f"HTTP {status} with {OUTCOME_HEADER}: {said!r}, not one of {', '.join(ANSWERED_OUTCOMES)} "
                    "(the API broke the webhook contract; whether it applied the change is unknown)"
                ),
            )
        return Result(change, cast(Outcome, said), _first_line(response) if said != "applied" else None)
    if status == 409:
        return Result(change, "skipped_stale", f"HTTP 409: {_first_line(response)}")
    return rejected(change, RecordRejected(f"HTTP {status}: {_first_line(response)}"))


def _first_line(response: httpx.Response) -> str:
    text = response.text.strip()
    return text.splitlines()[0][:200] if text else response.reason_phrase
